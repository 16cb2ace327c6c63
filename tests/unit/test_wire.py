"""The wire format between the JVM and Python (flink_job._wire): field order, placeholders for
absent values, and the SQL projection that builds the message tuple."""

from flink_job._core import DEAD_LETTER_MAX_BYTES, DeadLetter, FeatureRow, RawMessage
from flink_job._wire import (
    ABSENT_HEADERS,
    ABSENT_KEY,
    ABSENT_VALUE,
    MSG_FIELDS,
    MSG_TYPE,
    NO_KEY,
    NO_TIMESTAMP,
    ROW_FIELDS,
    ROW_SQL,
    ROW_TYPE,
    dead_row,
    msg_sql,
    raw_message,
    record_key,
    row_tuple,
)


def test_message_tuple_with_every_field_present_is_the_record():
    t = (b"k", b"v", 3, 42, {"h": b"1"}, 0, 1_700_000_000_000)
    m = raw_message(t, "topic")
    assert m == RawMessage(
        value=b"v",
        key=b"k",
        topic="topic",
        partition=3,
        offset=42,
        timestamp=1_700_000_000_000,
        headers=(("h", b"1"),),
    )
    assert record_key(t) == b"k"


def test_placeholders_become_none_and_empty_headers():
    t = (b"", b"", 0, 7, {"": b""}, ABSENT_KEY | ABSENT_VALUE | ABSENT_HEADERS, NO_TIMESTAMP)
    m = raw_message(t, "topic")
    assert m.key is None and m.value is None and m.timestamp is None and m.headers == ()
    assert record_key(t) is None
    # An empty (not absent) key and value stay empty bytes.
    m = raw_message((b"", b"", 0, 7, {}, 0, 0), "topic")
    assert m.key == b"" and m.value == b"" and m.timestamp == 0


def test_sql_projection_gives_the_fields_in_tuple_order():
    sql = msg_sql("TS")
    # One expression per field (split at the top-level commas between the field expressions).
    parts = [
        "COALESCE(k, X'')",
        "COALESCE(v, X'')",
        "COALESCE(`partition`, -1)",
        "COALESCE(`offset`, -1)",
        "COALESCE(headers, CAST(MAP['', X''] AS MAP<STRING, BYTES>))",
    ]
    pos = [sql.index(p) for p in parts]
    assert pos == sorted(pos)
    assert sql.endswith(f"COALESCE(TS, {NO_TIMESTAMP})")
    assert f"THEN {ABSENT_KEY}" in sql and f"THEN {ABSENT_VALUE}" in sql
    assert f"ELSE {ABSENT_HEADERS}" in sql
    assert len(MSG_TYPE.get_field_types()) == len(MSG_FIELDS) == 7


def test_feature_row_tuple_uses_placeholders_for_no_key_and_no_timestamp():
    assert row_tuple(FeatureRow("r", None, b"{}", None)) == (NO_KEY, b"{}", NO_TIMESTAMP)
    assert row_tuple(FeatureRow("r", b'"u"', b"{}", 5)) == (b'"u"', b"{}", 5)
    assert len(ROW_TYPE.get_field_types()) == len(ROW_FIELDS)
    assert "NULLIF(f0, X'') AS k, f1 AS v" in ROW_SQL and "TO_TIMESTAMP_LTZ(f2, 3)" in ROW_SQL


def test_dead_row_is_bounded_and_carries_the_dlq_headers():
    big = RawMessage(value=b"x" * 2_000_000, key=b"k", topic="t", partition=1, offset=9)
    row = dead_row(DeadLetter("r", "MessageTooLarge", "too large", big))
    key, value, headers = row[0], row[1], row[2]
    assert key == b"k"
    assert len(value) < DEAD_LETTER_MAX_BYTES
    assert headers["dlq.source.offset"] == b"9"
    assert headers["dlq.value.truncated"] == b"2000000"
