"""Spark side of recsys-spark: schemas, config, session, event I/O, sequence building, scoring."""

__version__ = "0.1.0"
