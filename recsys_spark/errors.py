"""The user-error types: mistakes in what a person asked for, and nights whose data cannot be used.

Jobs let these propagate; :func:`recsys_spark.runtime.job_main` turns one into a single line on stderr
and the type's exit status. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user named or asked for is wrong; the message says what and how to fix it."""

    exit_code = 2


class NotFoundError(UserError):
    """A file, table or model version named on the command line does not exist."""


class DataError(UserError):
    """The night's data or models are missing or fail a check; nothing was published (exit 3)."""

    exit_code = 3


class MissingInputError(DataError):
    """A night's input (events, dataset, offline metrics) has not been produced yet."""
