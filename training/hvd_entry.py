"""Rank entry point for ``horovodrun ... python -m training.hvd_entry`` (see training.distributed).

Each rank writes its result to ``<result-dir>/rank-<r>.json`` for the launcher to collect.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys_spark.config import load_config
from training.distributed import train_worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conf", required=True, help="resolved config YAML written by the launcher")
    parser.add_argument("--ds", required=True)
    parser.add_argument("--result-dir", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--model-version")
    args = parser.parse_args(argv)
    cfg = load_config(args.conf)
    result = train_worker(cfg.to_dict(), args.ds, args.resume, args.model_version)
    path = Path(args.result_dir) / f"rank-{result['rank']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
