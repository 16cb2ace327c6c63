"""The compiled job against the real broker on a MiniCluster: exact rows, exact dead letters."""

from __future__ import annotations

import json
import random
from collections import defaultdict

import pytest

from tests.integration.conftest import APPS
from tests.integration.kafka_io import create_topic, produce, read_all, unique

APP = str(APPS / "logins_app.py")


def _logins(n: int, users: int, seed: int) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        user = f"user-{rnd.randrange(users)}"
        ip = f"10.0.{rnd.randrange(4)}.{rnd.randrange(8)}"
        # Random record keys: only the re-key mapping (user_id) may decide the state key.
        key = f"k{rnd.randrange(1000)}".encode()
        out.append((key, json.dumps({"user_id": user, "ip_address": ip}).encode()))
    return out


def test_unique_ips_exactly_once_across_partitions(kafka, run_job):
    source, sink, dlq = unique("logins"), unique("features"), unique("dlq")
    create_topic(kafka, source, partitions=3)
    events = _logins(4000, users=150, seed=7)
    produce(kafka, source, events)
    expected: dict[str, set[str]] = defaultdict(set)
    for _, value in events:
        e = json.loads(value)
        expected[e["user_id"]].add(e["ip_address"])

    job = run_job(
        APP,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=f'[sources.logins]\ntopic = "{source}"\ndead_letter_queue_topic = "{dlq}"\n',
    )
    rows = read_all(kafka, sink, expect=len(events), timeout=180)
    assert len(rows) == len(events), job.output()[-3000:]

    last: dict[str, int] = {}
    for r in rows:
        value = json.loads(r.value)
        assert set(value) == {"user.id", "user.unique_ip_count"}
        assert r.key == json.dumps(value["user.id"]).encode()
        assert r.headers["resolver"] == b"track_unique_ips"
        user, count = value["user.id"], value["user.unique_ip_count"]
        # Rows of one user share a record key, hence a partition: counts never go down.
        assert count >= last.get(user, 0)
        last[user] = count
    assert last == {u: len(ips) for u, ips in expected.items()}


@pytest.mark.parametrize("app", [APP, str(APPS / "logins_app_pykey.py")], ids=["jvm-key", "py-key"])
def test_every_kind_of_bad_input_is_a_dead_letter(kafka, run_job, app):
    source, sink, dlq = unique("logins"), unique("features"), unique("dlq")
    create_topic(kafka, source, partitions=2)
    good = [
        (b"a", json.dumps({"user_id": "u1", "ip_address": f"1.1.1.{i}"}).encode()) for i in range(5)
    ]
    bad = {
        "MalformedJson": b'{"user_id": "u1", ',
        "SchemaViolation": json.dumps({"user": "u1"}).encode(),
        "EmptyMessage": b"",
        "NotUtf8": b'{"user_id": "\xff\xfe", "ip_address": "x"}',
        "MessageTooLarge": json.dumps({"user_id": "u1", "ip_address": "x" * 5000}).encode(),
        "ResolverError": json.dumps({"user_id": "u1", "ip_address": "boom"}).encode(),
    }
    wrong_type = json.dumps({"user_id": 5, "ip_address": ["a"]}).encode()
    items = [*good[:2], *[(b"b", v) for v in bad.values()], (b"c", wrong_type), *good[2:]]
    produce(kafka, source, items)

    job = run_job(
        app,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=(
            f'[sources.logins]\ntopic = "{source}"\ndead_letter_queue_topic = "{dlq}"\n'
            "max_message_bytes = 2000\n"
        ),
    )
    dead = read_all(kafka, dlq, expect=len(bad) + 1, timeout=180)
    rows = read_all(kafka, sink, expect=len(good), timeout=60)
    assert len(rows) == len(good), job.output()[-3000:]
    assert [json.loads(r.value)["user.unique_ip_count"] for r in rows] == [1, 2, 3, 4, 5]

    assert len(dead) == len(bad) + 1
    by_class: dict[str, list] = defaultdict(list)
    for d in dead:
        by_class[d.headers["dlq.error.class"].decode()].append(d)
    assert {k: len(v) for k, v in by_class.items()} == {
        **{k: 1 for k in bad},
        "SchemaViolation": 2,
    }
    for kind, value in bad.items():
        (d,) = [x for x in by_class[kind] if x.value == (value or None) or x.value == value]
        assert d.headers["dlq.source.topic"] == source.encode()
        assert d.headers["dlq.resolver"] == b"track_unique_ips"
        assert int(d.headers["dlq.source.offset"]) >= 0
        assert int(d.headers["dlq.source.partition"]) in (0, 1)
        assert d.headers["dlq.error.message"]
        assert d.key == b"b"
