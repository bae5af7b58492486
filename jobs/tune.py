"""Search the model and training settings on a night's validation split (Optuna) and write them as a
config overlay for train and the nightly (``--overlay``); the test split is never read."""
from __future__ import annotations

import sys

from recsys_spark.lock import run_exclusive
from recsys_spark.runtime import init_job, job_main, job_parser, log, parse_ds
from training.distributed import check_stack
from training.tune import OVERLAY_FILE, tune, tuning_dir


@job_main
def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--ds", type=parse_ds, required=True,
                        help="night whose built dataset to tune on (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    cfg = init_job(args)
    check_stack(cfg.train)
    return run_exclusive(cfg.storage.root, "tune", args.ds.isoformat(), lambda: _tune(cfg, args.ds.isoformat()))


def _tune(cfg, ds: str) -> int:
    tune(cfg, ds)
    log.info("use it with: recsys train --ds %s --overlay %s", ds, tuning_dir(cfg.storage.root, ds) / OVERLAY_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
