"""``recsys.user_state``: per night, what the live refresh (:mod:`recsys_spark.live`) starts each user from.

The state of a user is the item history the batch scorer scored that night (the ``user_sequences``
row: the last ``sequences.max_history`` item indices in event-time order), the time of its last event
and the model that scored it. The history, not the LSTM's recurrent state, because the batch scorer
runs the model over the last ``sequences.window_length`` items from a zero state and masks every item
of the history: a carried hidden state would drift from the nightly list, while the history lets the
live list equal exactly what the batch would publish (and the model's last-item transition term
needs the last item anyway). Its cost is one window-length forward pass per refreshed user.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark import schemas as S
from recsys_spark.tables import ensure_table, overwrite_partitions, qualified

USER_STATE = "user_state"
LAST_TS = "last_ts"
MODEL_VERSION = "model_version"

USER_STATE_SCHEMA = T.StructType([
    T.StructField(S.USER_ID, T.StringType(), False),
    T.StructField(S.ITEM_IDX, T.ArrayType(T.IntegerType(), False), False),
    T.StructField(LAST_TS, T.TimestampType(), True),
    T.StructField(MODEL_VERSION, T.StringType(), False),
    T.StructField(S.DS, T.StringType(), False),
])


def user_state_table(database: str) -> str:
    return qualified(database, USER_STATE)


def user_states(sequences: DataFrame, model_version: str) -> DataFrame:
    """A night's ``user_sequences`` rows -> its ``user_state`` rows."""
    return sequences.select(S.USER_ID, S.ITEM_IDX, F.element_at(S.TS, -1).alias(LAST_TS),
                            F.lit(model_version).alias(MODEL_VERSION), S.DS)


def write_user_state(spark: SparkSession, database: str, sequences: DataFrame, model_version: str) -> None:
    """Replace the ``ds`` partition(s) of ``user_state`` with the states of ``sequences``."""
    table = user_state_table(database)
    ensure_table(spark, table, USER_STATE_SCHEMA)
    overwrite_partitions(user_states(sequences, model_version), table)


def read_user_state(spark: SparkSession, database: str, ds: str) -> DataFrame:
    return spark.table(user_state_table(database)).where(F.col(S.DS) == ds)
