"""Shared plumbing for the thin job entry points: argument parsing, logging, config resolution."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

import recsys_spark
from recsys_spark.config import Config, ConfigError, load_config

log = logging.getLogger("recsys")


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", default="local",
                        help="config file or name in conf/ layered over conf/base.yaml (default: local)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override, e.g. --set sequences.window_length=20 (repeatable)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def parse_ds(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in YYYY-MM-DD form") from None


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "matplotlib", "PIL", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def init_job(args: argparse.Namespace) -> Config:
    """Configure logging and resolve the config; a bad config exits with its message, not a trace."""
    configure_logging(args.log_level)
    log.info("recsys_spark %s loaded from %s", recsys_spark.__version__, recsys_spark.__file__)
    try:
        cfg = load_config(args.conf, args.overrides)
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None
    log.info("resolved config (hash %s):\n%s", cfg.hash(), cfg.to_yaml())
    return cfg
