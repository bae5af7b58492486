"""``recsys tune``: a seeded Optuna search on the validation split that never opens the test split,
writes an overlay the train job takes, records every trial, prunes below-median trials and keeps to
its budget."""
import json
import shutil

import optuna
import pytest
import yaml

from _training_data import DS, build_dataset, train_config
from jobs.train import main as train_main
from jobs.tune import main as tune_main
from recsys_spark.config import TUNABLE, ConfigError, load_config
from recsys_spark.datasets import TEST, dataset_dir
from recsys_spark.registry import load_registry
from training.data import read_eval_split
from training.tune import OVERLAY_FILE, PLOT_FILE, SPACE, TRIALS_FILE, epoch_reporter, trial_config, tuning_dir

TUNED = ["lr", "dropout", "hidden_size"]


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    build_dataset(spark, root)
    return root


def _args(cfg, root, *overrides: str, leave_out: tuple[str, ...] = ()) -> list[str]:
    """Job arguments: small training settings (but ``leave_out``, for an overlay to set) and the tune
    settings, then ``overrides``."""
    args = ["--ds", DS, "--set", f"storage.root={root}"]
    for key, value in train_config(cfg, root, epochs=2).train.__dict__.items():
        if key not in leave_out:
            args += ["--set", f"train.{key}={json.dumps(value)}"]
    for override in (f"tune.params={json.dumps(TUNED)}", "tune.startup_trials=2", "tune.threads=1",
                     "tune.prune_warmup_epochs=1", *overrides):
        args += ["--set", override]
    return args


def _trials(root) -> dict:
    return json.loads((tuning_dir(root, DS) / TRIALS_FILE).read_text())


def test_tune_never_reads_the_test_split_and_its_overlay_drives_the_train_job(cfg, root):
    shutil.rmtree(dataset_dir(root, DS) / TEST)  # anything that opened the test split would fail
    assert tune_main(_args(cfg, root, "tune.trials=3")) == 0

    summary = _trials(root)
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2]
    given = train_config(cfg, root)
    assert summary["trials"][0]["params"] == {name: getattr(given.train, name) for name in TUNED}
    assert summary["best"]["value"] == max(t["value"] for t in summary["trials"] if t["state"] == "COMPLETE")
    assert summary["best"]["value"] >= summary["given"]["value"]
    assert all(t["epoch_values"] and t["seconds"] > 0 for t in summary["trials"])
    assert (tuning_dir(root, DS) / PLOT_FILE).stat().st_size > 0

    overlay = tuning_dir(root, DS) / OVERLAY_FILE
    assert yaml.safe_load(overlay.read_text()) == {"train": {
        k: (round(v, 6) if isinstance(v, float) else v) for k, v in summary["best"]["params"].items()}}
    # Trials leave nothing in the registry or the checkpoints; the overlay's run does.
    assert not (root / "models").exists() and not (root / "checkpoints").exists()
    assert train_main([*_args(cfg, root, leave_out=tuple(TUNED)), "--overlay", str(overlay),
                       "--model-version", "tuned"]) == 0
    trained = yaml.safe_load((root / "models" / "tuned" / "config.yaml").read_text())["train"]
    assert {k: trained[k] for k in TUNED} == yaml.safe_load(overlay.read_text())["train"]
    assert "tuned" in load_registry(root / "models")["versions"]


def test_twin_a_reader_of_the_test_split_fails_once_it_is_gone(spark, tmp_path):
    """What makes the test above able to fail: with the split deleted, reading it raises."""
    build_dataset(spark, tmp_path, users=40)
    read_eval_split(dataset_dir(tmp_path, DS) / TEST)
    shutil.rmtree(dataset_dir(tmp_path, DS) / TEST)
    with pytest.raises(Exception):
        read_eval_split(dataset_dir(tmp_path, DS) / TEST)


def test_the_same_seed_proposes_the_same_trials_and_another_seed_does_not(cfg, root, tmp_path):
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        shutil.copytree(dataset_dir(root, DS), dataset_dir(tmp_path / name, DS))
        assert tune_main(_args(cfg, tmp_path / name, "tune.trials=2", f"tune.seed={seed}",
                               "train.epochs=1")) == 0
        runs[name] = [(t["params"], t["value"]) for t in _trials(tmp_path / name)["trials"]]
    assert runs["a"] == runs["b"]
    assert runs["a"][1][0] != runs["c"][1][0]  # trial 0 is the given settings under any seed


def test_the_time_budget_stops_starting_trials(cfg, root, tmp_path):
    shutil.copytree(dataset_dir(root, DS), dataset_dir(tmp_path, DS))
    # 60 epochs (about 4 s on a quiet machine): the first trial alone outlasts the 1 s budget; 10
    # epochs took 0.6-0.9 s here, so a second trial sometimes started.
    assert tune_main(_args(cfg, tmp_path, "tune.trials=5", "tune.timeout_s=1", "train.epochs=60",
                           "train.patience=60")) == 0
    summary = _trials(tmp_path)
    assert summary["n_trials"] == 1 and summary["budget"] == {"trials": 5, "timeout_s": 1}


def _study_with_two_finished_trials() -> optuna.Study:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(
        n_startup_trials=2, n_warmup_steps=1))
    for value in (0.5, 0.6):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 0.01}, distributions={"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1)},
            value=value, intermediate_values={0: value, 1: value, 2: value}))
    return study


def test_a_trial_below_the_median_after_the_warm_up_is_pruned():
    trial = _study_with_two_finished_trials().ask()
    values = []
    report = epoch_reporter(trial, values)
    report(0, {"ndcg@10": 0.1})  # epoch 1 is the warm-up: never pruned
    with pytest.raises(optuna.TrialPruned, match="below the median"):
        report(1, {"ndcg@10": 0.1})
    assert values == [0.1, 0.1]


def test_twin_a_trial_above_the_median_runs_on():
    trial = _study_with_two_finished_trials().ask()
    report = epoch_reporter(trial, [])
    for epoch in range(3):
        report(epoch, {"ndcg@10": 0.7})


def test_a_trial_runs_the_deployments_global_batch_in_one_process(cfg):
    distributed = load_config("local", ["train.backend=horovod", "train.num_proc=2", "train.batch_size=64",
                                        "tune.threads=2"])
    trial = trial_config(distributed, {"lr": 0.02})
    assert (trial.train.backend, trial.train.num_proc, trial.train.batch_size, trial.train.lr,
            trial.train.threads_per_proc) == ("single", 1, 128, 0.02, 2)
    single = trial_config(load_config("local", ["train.backend=single", "train.batch_size=64"]), {})
    assert single.train.batch_size == 64


def test_every_tunable_setting_has_a_range_and_an_unknown_one_is_refused(cfg, root, capsys):
    assert set(SPACE) == set(TUNABLE)
    assert tune_main(_args(cfg, root, "tune.params=[lr, colour]")) == ConfigError.exit_code
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"recsys tune: error: tune.params: colour; choose among {', '.join(TUNABLE)}")
