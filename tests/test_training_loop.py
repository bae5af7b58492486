"""The single-process training loop: it learns, publishes an artifact, resumes exactly, survives a
corrupt checkpoint and refuses a changed architecture; the train job drives it."""
import json
import logging
import shutil

import pytest
import torch

from _training_data import DS, build_dataset, most_popular_ndcg, train_config
from jobs.train import main as train_main
from recsys_spark.model import BLEND_FEATURES, load_model
from recsys_spark.registry import load_registry
from training.checkpoint import ArchitectureMismatch, CheckpointStore
from training.trainer import LogProgress, train


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    build_dataset(spark, root)
    return root


@pytest.fixture(scope="module")
def shuffled_root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("shuffled")
    build_dataset(spark, root, shuffle_targets=True)
    return root


def _checkpoint_params(root, version, epoch):
    return CheckpointStore(root / "checkpoints" / version).load(epoch)["model"]


def test_learns_the_planted_transitions_and_publishes_artifact(cfg, root):
    result = train(train_config(cfg, root, epochs=4, lr=0.02), DS, model_version="learn")
    popular = most_popular_ndcg(root)
    assert result["validation"]["ndcg@10"] > popular + 0.15, (result["validation"], popular)

    artifact = root / "models" / "learn"
    assert {p.name for p in artifact.iterdir()} == {
        "model.pt", "architecture.json", "config.yaml", "metrics.json", "training_curve.png"}
    metrics = json.loads((artifact / "metrics.json").read_text())
    assert metrics["item_index_version"] == "v-test" and metrics["ds"] == DS
    assert len(metrics["history"]) == 4 and metrics["validation"] == result["validation"]
    model = load_model(artifact)  # model.pt is weights_only-loadable
    assert model.num_items == 41
    assert metrics["last_item_transitions"] == model.uses_transitions  # the resolved setting
    assert metrics["score_blend"] is False and not model.uses_blend and "blend_weights" not in metrics
    entry = load_registry(root / "models")["versions"]["learn"]
    assert entry["ds"] == DS and entry["metrics"]["ndcg@10"] == result["validation"]["ndcg@10"]
    assert load_registry(root / "models")["production"] is None


def test_length_buckets_learn_the_planted_transitions_too(cfg, root):
    """Length-grouped batches, each batch's loss weighted by its share of the targets, learn what
    random batches learn (the twin below shows the bar is not met by chance)."""
    result = train(train_config(cfg, root, epochs=4, lr=0.02, length_buckets=4, feed="arrow"), DS,
                   model_version="buckets")
    assert result["validation"]["ndcg@10"] > most_popular_ndcg(root) + 0.15, result["validation"]


def test_twin_shuffled_targets_do_not_beat_most_popular_clearly(cfg, shuffled_root):
    result = train(train_config(cfg, shuffled_root, epochs=4, lr=0.02), DS, model_version="noise")
    assert result["validation"]["ndcg@10"] < most_popular_ndcg(shuffled_root) + 0.1


def test_blend_is_weighted_on_validation_where_seen_items_are_ranked(cfg, root):
    """evaluate.mask_seen=false (session data): the artifact carries the blend weights chosen on
    validation, and scoring the validation split with it gives the metrics the run reports."""
    from training.data import read_eval_split
    from training.trainer import averaged_metrics, split_ranks
    from training.comm import Comm

    c = train_config(cfg, root, epochs=2, lr=0.02)
    c.evaluate.mask_seen = False
    result = train(c, DS, model_version="blend")
    metrics = json.loads((root / "models" / "blend" / "metrics.json").read_text())
    assert metrics["score_blend"] is True and set(metrics["blend_weights"]) == {
        "is_last", "in_history", "followed", "log1p_count"}
    assert result["validation"]["ndcg@10"] >= metrics["validation_before_blend"]["ndcg@10"]
    model = load_model(root / "models" / "blend")
    assert model.uses_blend and model.blend_weights.tolist() == [metrics["blend_weights"][f] for f in BLEND_FEATURES]
    split = read_eval_split(root / "datasets" / f"ds={DS}" / "validation")
    rescored = averaged_metrics(split_ranks(model, split, 256, mask_seen=False), Comm())
    assert rescored["ndcg@10"] == pytest.approx(result["validation"]["ndcg@10"], abs=1e-9)


def test_resume_matches_a_straight_run_and_survives_a_corrupt_checkpoint(cfg, root):
    c = train_config(cfg, root, epochs=3, loss="sampled_softmax")
    train(c, DS, model_version="straight")
    straight = _checkpoint_params(root, "straight", 2)

    # Interrupted after epoch 2: the resumed run only has epoch 2's checkpoint (index 1), plus a
    # truncated epoch-3 file as a crash mid-write would leave it.
    src, dst = root / "checkpoints" / "straight", root / "checkpoints" / "resumed"
    dst.mkdir(parents=True)
    for name in ("epoch-0001.pt", "epoch-0001.pt.sha256", "epoch-0002.pt.sha256"):
        shutil.copy(src / name, dst / name)
    data = (src / "epoch-0002.pt").read_bytes()
    (dst / "epoch-0002.pt").write_bytes(data[: len(data) // 3])
    result = train(c, DS, resume=True, model_version="resumed")
    assert result["epochs_run"] == 3
    resumed = _checkpoint_params(root, "resumed", 2)
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6)

    # twin: resuming the same checkpoint with another seed does not land on the same parameters
    (dst / "epoch-0002.pt").unlink()
    (dst / "epoch-0002.pt.sha256").unlink()
    c.train.seed = 7
    train(c, DS, resume=True, model_version="resumed")
    other = _checkpoint_params(root, "resumed", 2)
    assert max((other[n] - t).abs().max().item() for n, t in straight.items()) > 1e-3


def test_resume_refuses_a_changed_architecture(cfg, root):
    c = train_config(cfg, root, epochs=1)
    train(c, DS, model_version="arch")
    c.train.hidden_size = 48
    with pytest.raises(ArchitectureMismatch, match="hidden_size: 32 -> 48"):
        train(c, DS, resume=True, model_version="arch")


def test_train_job_single_process(cfg, root):
    args = ["--ds", DS, "--model-version", "job", "--set", f"storage.root={root}"]
    for key, value in train_config(cfg, root, epochs=1, loss="bpr_max").train.__dict__.items():
        args += ["--set", f"train.{key}={json.dumps(value)}"]
    assert train_main(args) == 0
    assert (root / "models" / "job" / "model.pt").exists()
    assert "job" in load_registry(root / "models")["versions"]


def test_progress_without_a_terminal_is_whole_log_lines(caplog):
    """Not a TTY (a log file, a Horovod rank's forwarded stderr): progress arrives as log lines, one per
    interval, never as tqdm carriage-return fragments; the twin with a long interval logs nothing."""
    caplog.set_level(logging.INFO, logger="training.trainer")
    logged = {}
    for interval in (0.0, 3600.0):
        caplog.clear()
        progress = LogProgress(5, "epoch 1/2", interval=interval)
        for _ in range(5):
            progress.step(1.5, 1000.0)
        progress.close()
        logged[interval] = [r.getMessage() for r in caplog.records]
    assert logged[0.0][-1] == "epoch 1/2: step 4/5 (80%), loss 1.5000, 1000 positions/s"
    assert len(logged[0.0]) == 4  # every step but the last (the epoch's summary line follows it)
    assert logged[3600.0] == []
