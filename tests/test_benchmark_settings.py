"""The real-data benchmark's recorded settings (``--setups recorded``): each file is a valid config
overlay whose every value reaches the training config, and a dataset without one is refused."""
import pytest
import yaml

from benchmarks import real_data_lstm
from recsys_spark.config import ConfigError, load_config

RECORDED = sorted(real_data_lstm.RECORDED.glob("*.yaml"))


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_settings_are_a_valid_overlay_for_a_benchmark_dataset(path):
    assert path.stem in real_data_lstm.DATASETS
    cfg = load_config("local", overlays=[path])
    written = yaml.safe_load(path.read_text())["train"]
    assert {key: getattr(cfg.train, key) for key in written} == written


def test_twin_a_misspelled_recorded_setting_is_refused(tmp_path):
    typo = tmp_path / "beauty.yaml"
    typo.write_text(real_data_lstm.RECORDED.joinpath("beauty.yaml").read_text().replace("hidden_dropout", "hiden_dropout"))
    with pytest.raises(ConfigError, match="hiden_dropout"):
        load_config("local", overlays=[typo])


def test_only_datasets_without_recorded_settings_are_refused():
    assert real_data_lstm.unrecorded(["beauty", "movielens-100k", "yoochoose"]) == ["movielens-100k", "yoochoose"]
    with pytest.raises(SystemExit):
        real_data_lstm.main(["--datasets", "movielens-100k", "--setups", "recorded", "--tune-trials", "0"])
