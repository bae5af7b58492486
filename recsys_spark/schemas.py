"""Column-name constants and explicit schemas for every table of the table contracts (DESIGN.md)."""
from pyspark.sql import types as T

# events (input contract)
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT_TYPE = "event_type"
TS = "ts"
SESSION_ID = "session_id"
DS = "ds"

# events_rejected
RAW = "raw"
REASON = "reason"
STAGE = "stage"

# item_index
ITEM_IDX = "item_idx"
FIRST_SEEN_DS = "first_seen_ds"
COUNT = "count"
# transitions dataset: how often next_idx directly followed prev_idx in the training sequences
PREV_IDX = "prev_idx"
NEXT_IDX = "next_idx"
VERSION = "version"

# user_sequences
N_EVENTS = "n_events"

# training_examples
INPUT = "input"
TARGET = "target"
NEGATIVES = "negatives"
SEEN = "seen"

EVENT_TYPES = ("view", "click", "cart", "purchase")
PADDING_IDX = 0

EVENTS_SCHEMA = T.StructType([
    T.StructField(USER_ID, T.StringType(), True),
    T.StructField(ITEM_ID, T.StringType(), True),
    T.StructField(EVENT_TYPE, T.StringType(), True),
    T.StructField(TS, T.TimestampType(), True),
    T.StructField(SESSION_ID, T.StringType(), True),
])
"""Events as stored in ``recsys.events`` (without the ``ds`` partition column)."""

EVENTS_TABLE_SCHEMA = T.StructType(EVENTS_SCHEMA.fields + [T.StructField(DS, T.StringType(), False)])

REJECTED_SCHEMA = T.StructType([
    T.StructField(RAW, T.StringType(), True),
    T.StructField(REASON, T.StringType(), False),
    T.StructField(DS, T.StringType(), False),
    T.StructField(STAGE, T.StringType(), False),
])
"""Quarantined input rows; partitioned by (ds, stage) so the import and validation stages of one night
never overwrite each other's rows."""

ITEM_INDEX_SCHEMA = T.StructType([
    T.StructField(ITEM_ID, T.StringType(), False),
    T.StructField(ITEM_IDX, T.IntegerType(), False),
    T.StructField(FIRST_SEEN_DS, T.StringType(), False),
    T.StructField(COUNT, T.LongType(), False),
    T.StructField(VERSION, T.StringType(), False),
])
"""Item vocabulary, one full copy per ``version`` (the ds that built it); indices never change."""

USER_SEQUENCES_SCHEMA = T.StructType([
    T.StructField(USER_ID, T.StringType(), False),
    T.StructField(ITEM_IDX, T.ArrayType(T.IntegerType(), False), False),
    T.StructField(TS, T.ArrayType(T.TimestampType(), False), False),
    T.StructField(N_EVENTS, T.IntegerType(), False),
    T.StructField(DS, T.StringType(), False),
])
