"""The wire format between the JVM and the Python operators, in one place.

What crosses from the JVM into Python per Kafka record is the *message tuple* (``MSG_TYPE``),
built by the SQL projection ``MSG_SQL`` over a Kafka table's columns; what comes back is the
*feature-row tuple* (``ROW_TYPE``), turned into the sink table's columns by ``ROW_SQL``, and
the *dead-letter row* (``DEAD_TYPE``) on the ``DEAD_LETTERS`` side output.

Tuples, not Rows: PyFlink builds a Python Row object (and a RowKind) per Row crossing, a plain
tuple for a Tuple, and every field costs time (the topic is not sent: it is the source's).
Tuple fields cannot be null, so an absent value travels as a placeholder:

- message: a null record key or value, or no headers, is an empty placeholder with its
  ``ABSENT_*`` bit set in the ``absent`` field; no record timestamp is ``NO_TIMESTAMP``;
- feature row: no record key is ``NO_KEY`` (feature-row keys are JSON, never empty), no
  timestamp is ``NO_TIMESTAMP`` (the producer stamps the record);
- state key: a message that cannot be keyed is routed to ``UNKEYABLE`` (the keyed operator
  dead-letters it without touching that key's state).

Fields are read by name (``MSG_PARTITION``, ``ROW_KEY``, ...), never by a bare index. The
batched operator's byte buffers (``flink_job._batch``) carry these same fields and placeholders.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import OutputTag

from flink_job._core import DeadLetter, FeatureRow, RawMessage

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
KEY_TYPE = Types.STRING()  # the state key
HEADERS_TYPE = Types.MAP(Types.STRING(), BYTES)

# -- placeholders for absent values ----------------------------------------------------------
ABSENT_KEY, ABSENT_VALUE, ABSENT_HEADERS = 1, 2, 4
NO_TIMESTAMP = -1
NO_KEY = b""
# The state key of messages that cannot be keyed (it starts with a NUL character).
UNKEYABLE = "\x00flink-job:unkeyable"

# -- the message tuple: JVM -> Python, one per Kafka record ----------------------------------
MSG_FIELDS = ("key", "value", "partition", "offset", "headers", "absent", "timestamp")
MSG_KEY, MSG_VALUE, MSG_PARTITION, MSG_OFFSET, MSG_HEADERS, MSG_ABSENT, MSG_TIMESTAMP = range(
    len(MSG_FIELDS)
)
_MSG_TYPES = {
    "key": BYTES,
    "value": BYTES,
    "partition": Types.INT(),
    "offset": Types.LONG(),
    "headers": HEADERS_TYPE,
    "absent": Types.INT(),
    "timestamp": Types.LONG(),
}
MSG_TYPE = Types.TUPLE([_MSG_TYPES[f] for f in MSG_FIELDS])

# The Kafka table's record timestamp (TIMESTAMP_LTZ column `ts`) as epoch ms. TIMESTAMP_LTZ has
# no cast to a number: whole minutes since the epoch (an INT, good to year 6000) * 60000 + the
# seconds and milliseconds within the minute.
TS_MS_SQL = (
    "CAST(TIMESTAMPDIFF(MINUTE, TO_TIMESTAMP_LTZ(0, 3), ts) AS BIGINT) * 60000 "
    "+ EXTRACT(SECOND FROM ts) * 1000 + EXTRACT(MILLISECOND FROM ts)"
)


def msg_sql(ts_ms: str = TS_MS_SQL) -> str:
    """The message tuple's fields (MSG_FIELDS order) from a Kafka table's columns ``k, v,
    partition, offset, headers`` whose record timestamp (epoch ms) is the expression
    ``ts_ms``. SQL has no empty-map literal, and Kafka tables give an empty map, never NULL:
    no headers is the map ``{'': X''}`` with ABSENT_HEADERS set."""
    fields = {
        "key": "COALESCE(k, X'')",
        "value": "COALESCE(v, X'')",
        "partition": "COALESCE(`partition`, -1)",
        "offset": "COALESCE(`offset`, -1)",
        "headers": "COALESCE(headers, CAST(MAP['', X''] AS MAP<STRING, BYTES>))",
        "absent": f"CASE WHEN k IS NULL THEN {ABSENT_KEY} ELSE 0 END "
        f"+ CASE WHEN v IS NULL THEN {ABSENT_VALUE} ELSE 0 END "
        f"+ CASE WHEN CARDINALITY(headers) > 0 THEN 0 ELSE {ABSENT_HEADERS} END",
        "timestamp": f"COALESCE({ts_ms}, {NO_TIMESTAMP})",
    }
    return ", ".join(fields[f] for f in MSG_FIELDS)


MSG_SQL = msg_sql()


def raw_message(msg: tuple[Any, ...], topic: str) -> RawMessage:
    """A message tuple (MSG_TYPE) of ``topic`` as a RawMessage (placeholders back to None)."""
    key, value, partition, offset, headers, absent, timestamp = msg
    return message(topic, partition, offset, absent, key, value, timestamp, headers.items())


def message(
    topic: str,
    partition: int,
    offset: int,
    absent: int,
    key: bytes | None,
    value: bytes | None,
    timestamp: int,
    headers: Iterable[tuple[str, bytes]],
) -> RawMessage:
    """The RawMessage of a record's fields as they travel (ABSENT_* bits in ``absent``,
    NO_TIMESTAMP)."""
    return RawMessage(
        value=None if absent & ABSENT_VALUE else value,
        key=None if absent & ABSENT_KEY else key,
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=None if timestamp == NO_TIMESTAMP else timestamp,
        headers=() if absent & ABSENT_HEADERS else tuple(headers),
    )


def record_key(msg: tuple[Any, ...]) -> bytes | None:
    """The Kafka record key of a message tuple (None: the record has none)."""
    return None if msg[MSG_ABSENT] & ABSENT_KEY else msg[MSG_KEY]


# -- the feature-row tuple: Python -> JVM --------------------------------------------------
# The constant `resolver` header is added on the JVM (flink_job.job), not per row in Python.
ROW_FIELDS = ("key", "value", "timestamp")
ROW_KEY, ROW_VALUE, ROW_TIMESTAMP = range(len(ROW_FIELDS))
ROW_TYPE = Types.TUPLE([BYTES, BYTES, Types.LONG()])
# A feature-row tuple (fields f0, f1, ... as Flink names Tuple fields) as the sink table's
# columns k, v, ts: NO_KEY is "no key", NO_TIMESTAMP lets the producer stamp the record.
ROW_SQL = (
    f"NULLIF(f{ROW_KEY}, X'') AS k, f{ROW_VALUE} AS v, "
    f"CASE WHEN f{ROW_TIMESTAMP} <> {NO_TIMESTAMP} THEN TO_TIMESTAMP_LTZ(f{ROW_TIMESTAMP}, 3) END "
    "AS ts"
)


def row_tuple(row: FeatureRow) -> tuple[bytes, bytes, int]:
    """A feature row as the tuple the JVM gets (ROW_FIELDS order, placeholders for None)."""
    return (
        NO_KEY if row.key is None else row.key,
        row.value,
        NO_TIMESTAMP if row.timestamp is None else row.timestamp,
    )


# -- dead letters: Python -> JVM, on the DEAD_LETTERS side output ----------------------------
DEAD_FIELDS = ("k", "v", "headers")
DEAD_TYPE = Types.ROW_NAMED(list(DEAD_FIELDS), [BYTES, BYTES, HEADERS_TYPE])
DEAD_LETTERS = OutputTag("dead-letters", DEAD_TYPE)


def dead_row(d: DeadLetter) -> Row:
    """A dead letter as the DEAD_TYPE row the dead-letter sink writes.

    Bounded (DeadLetter.record): a dead letter the producer or broker refuses would fail the
    task, and the message would be read and refused again after every restart. Kafka headers
    are a list; the table connector takes a map (one value per name).
    """
    key, value, headers = d.record()
    return Row(key, value, dict(headers))
