"""``recsys``: one command in front of the job entry points, for people and schedulers."""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "nightly": ("jobs.nightly", "run the whole pipeline for a night (--ds) or a backfill (--start/--end)"),
    "check-input": ("jobs.check_input", "exit 0 when a night's recsys.events partition is there, 75 when not yet"),
    "generate-events": ("jobs.generate_events", "generate synthetic events into recsys.events"),
    "import-events": ("jobs.import_events", "import a public dataset file into recsys.events"),
    "build-sequences": ("jobs.build_sequences", "build vocabulary, sequences, splits and training examples"),
    "train": ("jobs.train", "train the LSTM recommender for a night and register the model"),
    "tune": ("jobs.tune", "search train settings on a night's validation split; writes a config overlay"),
    "evaluate": ("jobs.evaluate", "offline evaluation of baselines and a model for a night (--ds)"),
    "gate": ("jobs.gate", "promote a candidate model to production if it passes the metric gate"),
    "score": ("jobs.score", "score every user and publish the night's recommendations partition"),
    "similar-items": ("jobs.similar_items", "publish the night's similar_items partition (every item's top-k)"),
    "rollback": ("jobs.rollback", "point production back at an earlier model version"),
    "recommend": ("jobs.recommend", "print a user's published recommendations"),
    "similar": ("jobs.similar", "print an item's published similar items"),
    "stream": ("jobs.stream", "live refresh: fold new event files into users' lists (--once: catch up, exit)"),
    "emit-events": ("jobs.emit_events", "write new events (a user's clicks, or synthetic traffic) to the landing dir"),
}

USAGE = "usage: recsys COMMAND [options]   (recsys COMMAND --help for a command's options)\n\ncommands:\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        print(USAGE + "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()))
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"recsys: unknown command '{command}'; known: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
