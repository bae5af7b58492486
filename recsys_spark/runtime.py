"""Shared plumbing for the thin job entry points: argument parsing, logging, config resolution, and
turning a user's mistake into one line and an exit status."""
from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import recsys_spark
from recsys_spark.config import Config, load_config
from recsys_spark.errors import UserError

log = logging.getLogger("recsys")
SIGPIPE_EXIT = 128 + 13  # what a shell reports for a command ended by SIGPIPE, as `yes | head` ends


def job_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", default="local",
                        help="config file or name in conf/ layered over conf/base.yaml (default: local)")
    parser.add_argument("--overlay", dest="overlays", action="append", default=[], metavar="FILE",
                        help="YAML file layered over --conf, before --set (repeatable), e.g. the "
                             "settings recsys tune wrote")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override, e.g. --set sequences.window_length=20 (repeatable)")
    parser.add_argument("--log-level", default="INFO")
    return parser


def parse_ds(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date in YYYY-MM-DD form") from None


def _not_py4j_retry(record: logging.LogRecord) -> bool:
    """False for py4j's INFO "Exception while sending command." with its traceback: py4j logs it on the
    *root* logger (``logging.info``, not its ``py4j`` logger) each time it finds a pooled gateway
    connection closed by the JVM (a thread that used it ended, e.g. horovod.spark.run's job thread)
    and transparently retries on a new one. The command succeeds; a failure after the retry is logged
    at ERROR and still shows."""
    return not (record.levelno < logging.WARNING and record.name == "root"
                and Path(record.pathname).parent.name == "py4j")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "matplotlib", "PIL", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root = logging.getLogger()
    if _not_py4j_retry not in root.filters:
        root.addFilter(_not_py4j_retry)


def init_job(args: argparse.Namespace) -> Config:
    """Configure logging and resolve the config (a bad one raises ConfigError: see job_main)."""
    configure_logging(args.log_level)
    log.info("recsys_spark %s loaded from %s", recsys_spark.__version__, recsys_spark.__file__)
    cfg = load_config(args.conf, args.overrides, args.overlays)
    log.info("resolved config (hash %s):\n%s", cfg.hash(), cfg.to_yaml())
    return cfg


def job_main(main: Callable[[Optional[list[str]]], int]) -> Callable[[Optional[list[str]]], int]:
    """Wrap a job's ``main(argv)``: a :class:`~recsys_spark.errors.UserError` becomes one line
    ``recsys <command>: error: <message>`` on stderr and its ``exit_code``, not a traceback. The same
    for ``recsys <command>`` and ``spark-submit jobs/<command>.py``; any other exception is a bug and
    keeps its traceback."""
    module = main.__module__.rsplit(".", 1)[-1]
    command = (Path(sys.argv[0]).stem if module == "__main__" else module).replace("_", "-")

    @functools.wraps(main)
    def run(argv: Optional[list[str]] = None) -> int:
        try:
            return main(argv)
        except UserError as exc:
            print(f"recsys {command}: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
            return exc.exit_code
        except BrokenPipeError:
            # The reader of stdout left (`recsys recommend ... | head`): not an error of the job.
            # Later writes, the interpreter's last flush included, go nowhere instead of raising again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return SIGPIPE_EXIT
    return run
