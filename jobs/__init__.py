"""Thin spark-submit entry points: parse args, load config, get the session, call the library."""
