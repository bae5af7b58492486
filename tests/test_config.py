import pytest

from recsys_spark.config import ConfigError, load_config, parse_override


def test_local_config_layers_over_base():
    cfg = load_config("local")
    assert cfg.spark.master == "local[*,4]"
    assert cfg.storage.database == "recsys"
    assert cfg.sequences.window_length == 50  # from base.yaml


def test_dotted_overrides_are_typed():
    cfg = load_config("local", ["sequences.window_length=20", "sequences.negative_alpha=0",
                                "spark.hive=false", "sequences.session_gap_minutes=30",
                                "sequences.event_types=[view, cart]"])
    assert cfg.sequences.window_length == 20
    assert cfg.sequences.negative_alpha == 0.0 and isinstance(cfg.sequences.negative_alpha, float)
    assert cfg.spark.hive is False
    assert cfg.sequences.session_gap_minutes == 30
    assert cfg.sequences.event_types == ["view", "cart"]


def test_later_override_wins():
    cfg = load_config("local", ["sequences.stride=3", "sequences.stride=4"])
    assert cfg.sequences.stride == 4


@pytest.mark.parametrize("override, message", [
    ("sequences.windw_length=3", "unknown config key 'sequences.windw_length'"),
    ("nosection.key=1", "unknown config key 'nosection'"),
    ("sequences.window_length=abc", "sequences.window_length: expected an integer"),
    ("spark.hive=maybe", "spark.hive: expected true/false"),
    ("train.last_item_transitions=sometimes", "train.last_item_transitions: expected true/false or one of auto"),
    ("sequences.event_types=view", "sequences.event_types: expected a list"),
    ("sequences=3", "sequences: expected a mapping"),
    ("novalue", "must look like section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config("local", [override])


def test_unknown_key_in_a_file_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("sequences:\n  stride: 2\n  colapse_repeats: true\n")
    with pytest.raises(ConfigError, match="unknown config key 'sequences.colapse_repeats'"):
        load_config(str(path))


def test_missing_config_file_is_a_clear_error():
    with pytest.raises(ConfigError, match="config file 'nope' not found"):
        load_config("nope")


def test_spark_conf_passthrough_and_hash_changes_with_content():
    a = load_config("local", ["spark.conf={spark.executor.memory: 2g}"])
    b = load_config("local")
    assert a.spark.conf == {"spark.executor.memory": "2g"}
    assert a.hash() != b.hash() and len(a.hash()) == 12


def test_parse_override_nests_keys():
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}


def test_saved_config_round_trips(tmp_path):
    cfg = load_config("local", ["sequences.stride=7"])
    cfg.save(tmp_path / "config.yaml")
    again = load_config(str(tmp_path / "config.yaml"))
    assert again.hash() == cfg.hash()


def test_cluster_example_loads():
    cfg = load_config("cluster")
    assert cfg.spark.master == "yarn" and cfg.spark.metastore_dir is None


def test_dataclass_defaults_mirror_base_yaml():
    # Code shipped without conf/ (a --py-files zip) falls back on the dataclass defaults.
    from recsys_spark.config import Config
    assert load_config("base").to_dict() == Config().to_dict()


def test_model_hash_ignores_locations_but_not_training_settings():
    base = load_config("local")
    moved = load_config("local", ["spark.warehouse_dir=/elsewhere", "storage.root=/data", "spark.master=yarn"])
    retrained = load_config("local", ["train.lr=0.1"])
    assert moved.model_hash() == base.model_hash() and moved.hash() != base.hash()
    assert retrained.model_hash() != base.model_hash()


def test_an_overlay_applies_over_the_conf_and_under_the_overrides(tmp_path):
    overlay = tmp_path / "tuned.yaml"
    overlay.write_text("train:\n  lr: 0.02\n  hidden_size: 64\n")
    cfg = load_config("standalone", ["train.hidden_size=96"], overlays=[overlay])
    assert (cfg.train.lr, cfg.train.hidden_size, cfg.spark.metastore) == (0.02, 96, "postgres")
    assert load_config("standalone").train.lr != 0.02


def test_twin_a_bad_overlay_is_refused_with_its_name(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  lrr: 0.02\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.lrr'"):
        load_config("local", overlays=[typo])
    chained = tmp_path / "chained.yaml"
    chained.write_text("extends: local\n")
    with pytest.raises(ConfigError, match="an overlay cannot 'extends'"):
        load_config("local", overlays=[chained])
    with pytest.raises(ConfigError, match="overlay file '.*missing.yaml' not found"):
        load_config("local", overlays=[tmp_path / "missing.yaml"])
