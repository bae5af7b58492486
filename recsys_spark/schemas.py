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

# item_index
ITEM_IDX = "item_idx"
FIRST_SEEN_DS = "first_seen_ds"
COUNT = "count"
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
])
