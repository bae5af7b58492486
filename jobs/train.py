"""Train the LSTM recommender on one night's dataset and publish the model artifact + registry entry."""
from __future__ import annotations

import sys

from recsys_spark.datasets import DatasetMetadata, dataset_dir
from recsys_spark.lock import run_exclusive
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from recsys_spark.session import get_spark
from training.distributed import check_stack, launch, needs_spark


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True, help="night to train on (YYYY-MM-DD)")
    parser.add_argument("--resume", action="store_true",
                        help="continue this model version from its latest valid checkpoint")
    parser.add_argument("--model-version",
                        help="artifact/registry name (default: <ds>-<config hash>)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    check_stack(cfg.train)
    return run_exclusive(cfg.storage.root, "train", args.ds.isoformat(), lambda: _train(cfg, args))


def _train(cfg, args) -> int:
    DatasetMetadata.load(dataset_dir(cfg.storage.root, args.ds.isoformat()))  # before the JVM and the ranks
    spark = get_spark(cfg) if needs_spark(cfg) else None
    result = launch(cfg, args.ds.isoformat(), spark, resume=args.resume,
                    model_version=args.model_version)
    log.info("model %s (best epoch %d of %d, validation ndcg@10 %.4f): artifact %s",
             result["model_version"], result["best_epoch"], result["epochs_run"],
             result["validation"]["ndcg@10"], result["artifact"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
