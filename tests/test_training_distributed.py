"""Real multi-process training: Horovod on Spark, horovodrun and torch DDP via TorchDistributor, on
uneven Petastorm shards; every rank must finish with the same parameters, DDP resumes exactly and
learns what Horovod learns, and a hung rank must fail the job within ``train.timeout_s`` (the
watchdog) instead of blocking it. Horovod's tests are ``card_only``; DDP's run on both stacks (on the
current one over the Arrow feed, whose shards are Petastorm's)."""
import logging
import shutil
import time

import pytest

from _nightly import assert_quiet_log
from _stack import BACKEND, FEED
from _stack import CARD as ON_CARD  # CARD below: the card stack's versions
from _training_data import DS, build_dataset, most_popular_ndcg, train_config
from recsys_spark.runtime import configure_logging
from training.checkpoint import CheckpointStore
from training.comm import WATCHDOG_EXIT_CODE
from recsys_spark.config import ConfigError, TrainConfig
from training.arrow_feed import ArrowFeed
from training.distributed import check_stack, installed_version, launch, stack_conflicts
from training.petastorm_feed import shard_row_counts

SIZES = (180, 30, 110, 80)  # no two files sum to 200: the 2 shards differ whatever the file order


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    path = build_dataset(spark, root, file_sizes=SIZES)
    examples = path / "training_examples"
    counts = shard_row_counts(examples, 2) if ON_CARD else ArrowFeed(examples, 32, 0, 2, 0, 64).shard_rows
    assert counts[0] != counts[1]
    return root


def _check(result, root, version):
    assert result["model_version"] == version
    assert len(result["rank_fingerprints"]) == 2
    assert len(set(result["rank_fingerprints"])) == 1  # identical parameters on both ranks
    assert (root / "models" / version / "model.pt").exists()


@pytest.mark.parametrize("backend,launcher", [pytest.param("horovod", "spark", marks=pytest.mark.card_only),
                                              pytest.param("horovod", "horovodrun", marks=pytest.mark.card_only),
                                              ("ddp", "spark")])
def test_two_ranks_on_uneven_shards_end_in_sync(spark, cfg, root, backend, launcher, caplog, capfd):
    configure_logging("INFO")  # what every job does: the py4j retry filter, quiet third-party loggers
    caplog.set_level(logging.INFO)
    c = train_config(cfg, root, epochs=2, backend=backend, launcher=launcher, num_proc=2, timeout_s=60)
    started = time.monotonic()
    result = launch(c, DS, spark, model_version=f"{backend}-{launcher}")
    assert time.monotonic() - started < 120  # uneven shards did not stall an allreduce
    _check(result, root, f"{backend}-{launcher}")
    # the ranks' forwarded output and the driver's log: no py4j retry traceback, no rendezvous chatter,
    # no interleaved progress bars (tests/_nightly.py has the check's twin)
    captured = capfd.readouterr()
    assert_quiet_log(caplog.text + captured.out + captured.err)


BACKEND_NDCG_TOLERANCE = 0.02
"""DDP and Horovod average the same gradients of the same batches from the same start, so their
validation NDCG@10 may differ only by float summation order (measured on this data, Arrow feed, 2
epochs: 0.849889 for both, and the same training losses)."""


def _run_arrow(spark, cfg, root, backend, version, resume=False):
    c = train_config(cfg, root, epochs=2, lr=0.02, backend=backend, launcher="spark", num_proc=2,
                     timeout_s=60, feed="arrow")
    return launch(c, DS, spark, resume=resume, model_version=version)


@pytest.fixture(scope="module")
def ddp_straight(spark, cfg, root):
    """A 2-rank DDP run straight through 2 epochs (its epoch checkpoints stay in ``root``)."""
    straight = _run_arrow(spark, cfg, root, "ddp", "ddp-straight")
    assert len(set(straight["rank_fingerprints"])) == 1
    return straight


def test_ddp_resumes_exactly(spark, cfg, root, ddp_straight):
    # Interrupted after epoch 1: the resumed run has only that checkpoint.
    checkpoints = root / "checkpoints"
    (checkpoints / "ddp-resumed").mkdir()
    for name in ("epoch-0000.pt", "epoch-0000.pt.sha256"):
        shutil.copy(checkpoints / "ddp-straight" / name, checkpoints / "ddp-resumed" / name)
    resumed = _run_arrow(spark, cfg, root, "ddp", "ddp-resumed", resume=True)
    assert resumed["epochs_run"] == 2 and resumed["fingerprint"] == ddp_straight["fingerprint"]
    # twin: resuming from other weights at the same epoch does not end on the same parameters
    state = CheckpointStore(checkpoints / "ddp-straight").load(0)
    state["model"] = {name: t * 0.5 if t.is_floating_point() else t for name, t in state["model"].items()}
    CheckpointStore(checkpoints / "ddp-other").save(0, state)
    other = _run_arrow(spark, cfg, root, "ddp", "ddp-other", resume=True)
    assert other["fingerprint"] != ddp_straight["fingerprint"]


@pytest.mark.card_only
def test_ddp_learns_what_horovod_learns(spark, cfg, root, ddp_straight):
    horovod = _run_arrow(spark, cfg, root, "horovod", "horovod-compare")
    ddp_ndcg, horovod_ndcg = ddp_straight["validation"]["ndcg@10"], horovod["validation"]["ndcg@10"]
    assert abs(ddp_ndcg - horovod_ndcg) <= BACKEND_NDCG_TOLERANCE, (ddp_ndcg, horovod_ndcg)
    # twin: the tolerance is far below the gap to a model that learnt nothing sequential
    assert min(ddp_ndcg, horovod_ndcg) - most_popular_ndcg(root) > 10 * BACKEND_NDCG_TOLERANCE


@pytest.mark.card_only
def test_hung_rank_fails_within_the_timeout(spark, cfg, root):
    import horovod.spark

    cfg_dict = train_config(cfg, root, epochs=1, backend="horovod", num_proc=2, timeout_s=10).to_dict()

    def hang_rank_one():
        import time as _time

        import horovod.torch as hvd

        from training import feed
        from training.distributed import train_worker
        hvd.init()
        if hvd.rank() == 1:
            def stuck_feed(self, epoch):
                _time.sleep(300)  # alive, but its reader never delivers a batch
                yield
            feed.Feed.epoch = stuck_feed
        return train_worker(cfg_dict, DS)

    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"Exit code: {WATCHDOG_EXIT_CODE}"):
        horovod.spark.run(hang_rank_one, num_proc=2, start_timeout=60, verbose=0)
    assert time.monotonic() - started < 90


CARD = {"pyarrow": "14.0.2", "petastorm": "0.12.1", "horovod": "0.28.1"}
CURRENT = {"pyarrow": "26.0.0"}  # no Petastorm, no Horovod


@pytest.mark.parametrize("feed", ["petastorm", "arrow"])
@pytest.mark.parametrize("backend", ["horovod", "ddp", "single"])
def test_every_feed_and_backend_runs_on_the_card_stack(feed, backend):
    assert stack_conflicts(TrainConfig(feed=feed, backend=backend), CARD.get) == []


def test_the_current_stack_refuses_petastorm_and_horovod_naming_the_alternative():
    assert stack_conflicts(TrainConfig(feed="arrow", backend="ddp"), CURRENT.get) == []
    conflicts = stack_conflicts(TrainConfig(feed="petastorm", backend="horovod"), CURRENT.get)
    assert len(conflicts) == 2
    assert "Petastorm is not installed" in conflicts[0] and "train.feed=arrow" in conflicts[0]
    assert "Horovod is not installed" in conflicts[1] and "train.backend=ddp" in conflicts[1]
    # Petastorm present beside a pyarrow it cannot import: the version is the reason given
    newer = {**CARD, "pyarrow": "15.0.0"}
    [conflict] = stack_conflicts(TrainConfig(feed="petastorm", backend="horovod"), newer.get)
    assert "pyarrow 15.0.0 (the current stack)" in conflict and "train.feed=arrow" in conflict


def test_this_environment_runs_its_stacks_feed_and_backend_and_a_job_refuses_before_work():
    # card: the shipped defaults (make install builds Horovod beside Petastorm); current: arrow + ddp
    check_stack(TrainConfig(feed=FEED, backend=BACKEND))
    # the shipped defaults on the current stack: on card a recorded one, on current this environment
    with pytest.raises(ConfigError, match="train.feed=arrow.*train.backend=ddp"):
        check_stack(TrainConfig(), CURRENT.get if ON_CARD else installed_version)
