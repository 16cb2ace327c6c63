"""Hostile inputs through the real broker and a MiniCluster, compared with ``replay``.

Valid events mixed with messages that once crashed the job or made it disagree with
``replay``: a lone surrogate escape, NaN, Infinity, a 1,001-digit number, keys starting with
U+FEFF / U+FFFE (as JSON field and as Kafka record key), defaulted key fields, payloads just
under and over the size limit, and one over the dead-letter record limit on a topic that
admits it. The job's feature rows (per resolver, in order) and dead letters (class, key,
value, headers) must be exactly ``replay``'s on the same records, with zero restarts.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from flink_job.testing import DLQ_VALUE_TRUNCATED, DeadLetter, RawMessage, replay
from tests.integration.conftest import APPS
from tests.integration.kafka_io import create_topic, produce, read_all, unique

APP = str(APPS / "hostile_app.py")
MAX_BYTES = 2000  # hostile_app's max_message_bytes
HUGE = 1_200_000  # over the dead-letter record limit (1,000,000 bytes)


def _sized(user: str, size: int) -> bytes:
    """A valid event of exactly ``size`` bytes."""
    base = json.dumps({"user_id": user, "pad": ""}).encode()
    value = json.dumps({"user_id": user, "pad": "p" * (size - len(base))}).encode()
    assert len(value) == size
    return value


def hostile() -> list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]:
    """(record key, value, headers) items: valid events around every hostile one."""
    hostile_values: list[tuple[bytes | None, bytes]] = [
        (b"k1", b'{"user_id": "\\ud800", "x": 1}'),  # lone surrogate in the key field
        (b"k1", b'{"user_id": "u1", "pad": "\\udc00"}'),  # ... elsewhere
        (b"k2", b'{"user_id": "u2", "x": NaN}'),
        (b"k2", b'{"user_id": "u2", "x": Infinity}'),
        (b"k2", b'{"user_id": "u2", "x": -Infinity}'),
        (b"k3", b'{"user_id": "u3", "n": ' + b"7" * 1001 + b"}"),
        (b"k3", b'{"user_id": "u3", "n": -' + b"9" * 1500 + b"}"),
        (b"k4", '{"user_id": "\ufeffu4"}'.encode()),  # BOM as UTF-8 in the key
        (b"k4", b'{"user_id": "\\ufeffu4"}'),  # ... as an escape: the same key
        (b"k4", b'{"user_id": "\\ufffe\\u00d8"}'),  # byte-swap mark: invalid if swapped
        (b"k4", b'{"user_id": "\\u0001x"}'),  # the escape character itself
        (b"k4", b'{"user_id": "u4"}'),
        (b"k5", b'{"x": 2.5}'),  # defaulted key field
        (b"k5", b'{"user_id": "u5", "profile": {}}'),  # defaulted nested key field
        (b"k5", b'{"user_id": null}'),  # null is not the default: a dead letter
        (b"k5", b'{"user_id": "u5", "user_id": "u6"}'),  # duplicate field: last wins
        ("\ufeffrk".encode(), b'{"user_id": "u7"}'),  # BOM record key (Python keying)
        ("\ufffe\u00d8".encode(), b'{"user_id": "u7"}'),
        (b"\x01rk", b'{"user_id": "u7"}'),
        (b"k8", _sized("u8", MAX_BYTES)),  # at the limit: applied
        (b"k8", _sized("u8", MAX_BYTES + 1)),  # over it: MessageTooLarge
        (b"k9", _sized("u9", HUGE)),  # MessageTooLarge, cut to fit the dead-letter topic
        (b"k9", b'{"user_id": "u9", "x": 1e999}'),  # overflows to inf in both parsers
    ]
    items: list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = []
    for i, (key, value) in enumerate(hostile_values):
        items.append((f"v{i}".encode(), json.dumps({"user_id": f"u{i % 3}"}).encode(), []))
        items.append((key, value, [("test.case", str(i).encode())]))
    items.append((b"v-last", json.dumps({"user_id": "u0"}).encode(), []))
    return items


def _dead_letter_view(key: bytes | None, value: bytes | None, headers: dict[str, bytes]) -> Any:
    return (
        headers["dlq.resolver"],
        int(headers["dlq.source.offset"]),
        key,
        value or b"",
        sorted(headers.items()),
    )


def test_hostile_inputs_give_exactly_replays_rows_and_dead_letters(kafka, run_job):
    import sys

    sys.path.insert(0, str(APPS))
    import hostile_app

    source, sink, dlq = unique("hostile"), unique("features"), unique("dlq")
    # One partition: the order of rows per resolver is the order of the records.
    create_topic(kafka, source, partitions=1, config={"max.message.bytes": "2000000"})
    items = hostile()
    produce(kafka, source, items)

    messages = [
        RawMessage(value=v, key=k, topic=source, partition=0, offset=i, headers=tuple(h))
        for i, (k, v, h) in enumerate(items)
    ]
    expected = replay(hostile_app, messages)
    exp_dead: list[DeadLetter] = expected.dead_letters
    assert len(expected.records) > 3 * len(items) // 2  # most of them apply...
    assert {d.error_class for d in exp_dead} == {
        "MalformedJson",
        "SchemaViolation",
        "MessageTooLarge",
    }

    job = run_job(
        APP,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=f'[sources.events]\ntopic = "{source}"\ndead_letter_queue_topic = "{dlq}"\n',
    )
    rows = read_all(kafka, sink, expect=len(expected.records), timeout=150, settle=5)
    dead = read_all(kafka, dlq, expect=len(exp_dead), timeout=60, settle=3)
    out = job.output()
    assert job.proc.poll() is None, out[-3000:]

    for resolver in ("by_user", "by_profile", "by_record_key"):
        want = [(r.key, r.value) for r in expected.records if r.resolver == resolver]
        got = [(r.key, r.value) for r in rows if r.headers["resolver"] == resolver.encode()]
        assert got == want, resolver
    assert len(rows) == len(expected.records)

    want_dead = []
    for d in exp_dead:
        key, value, headers = d.record()
        want_dead.append(_dead_letter_view(key, value, dict(headers)))
    got_dead = [_dead_letter_view(d.key, d.value, d.headers) for d in dead]
    assert sorted(got_dead, key=repr) == sorted(want_dead, key=repr)
    cut = [d for d in dead if DLQ_VALUE_TRUNCATED in d.headers]
    assert len(cut) == 3 and all(int(d.headers[DLQ_VALUE_TRUNCATED]) == HUGE for d in cut)

    assert "RESTARTING" not in out and "job restarting" not in out, out[-3000:]

    # Stopped as a supervisor stops it (SIGTERM to the process group, the gateway JVM
    # included): a normal event, one line, exit 0.
    os.killpg(job.proc.pid, signal.SIGTERM)
    assert job.proc.wait(60) == 0, job.output()[-3000:]
    tail = job.output()[len(out) :]
    assert "Traceback" not in tail and "Error" not in tail, tail[-3000:]
    assert tail.strip().splitlines()[-1] == "stopping...", tail
