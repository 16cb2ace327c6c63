"""Poison pills through the real broker and the standalone cluster, counted exactly.

10,000 valid events interleaved with 100 bad messages of each of nine kinds. Every run must
give exactly 10,000 feature rows and exactly one dead letter per bad message (with the error
class, message, source topic, partition and offset), leave the state of the keys whose
messages failed as it was, and never unpickle or run a payload. Once with zero restarts, once
with the TaskManager killed mid-run.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.integration import cluster_helpers as ch
from tests.integration.conftest import APPS
from tests.integration.kafka_io import create_topic, produce, read_all, unique

APP = str(APPS / "poison_app.py")
USERS, PER_USER, BAD_PER_KIND, MAX_BYTES = 50, 200, 100, 2000


class _Payload:
    """A pickle that, if ever unpickled, runs a shell command creating ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _bad(kind: str, i: int, user: str, marker: Path) -> tuple[bytes | None, str]:
    """The ``i``-th bad message of ``kind`` and the dead-letter class it must get."""
    if kind == "broken-json":
        return f'{{"user_id": "{user}", "seq": '.encode(), "MalformedJson"
    if kind == "wrong-shape":
        shape = ["[1, 2, 3]", '"just a string"', "42", "null", '{"name": "x"}'][i % 5]
        return shape.encode(), "SchemaViolation"
    if kind == "wrong-types":
        value = [
            {"user_id": user, "seq": "seven"},
            {"user_id": [user], "seq": 1},
            {"user_id": user, "seq": 1.5},
            {"user_id": user, "seq": 1, "action": 3},
        ][i % 4]
        return json.dumps(value).encode(), "SchemaViolation"
    if kind == "empty":
        return (b"" if i % 2 else None), "EmptyMessage"
    if kind == "not-utf8":
        return f'{{"user_id": "{user}'.encode() + b'\xff\xfe", "seq": 1}', "NotUtf8"
    if kind == "too-large":  # valid JSON, only its size is wrong
        pad = "x" * (MAX_BYTES + i)
        return json.dumps({"user_id": user, "seq": 1, "action": pad}).encode(), "MessageTooLarge"
    if kind == "resolver-raises":  # the resolver mutates the state, then raises
        return json.dumps({"user_id": user, "seq": 10_000 + i, "action": "raise"}).encode(), (
            "ResolverError"
        )
    if kind == "missing-key":
        value = [{"seq": 3}, {"user_id": None, "seq": 3}][i % 2]
        return json.dumps(value).encode(), "MissingKey"
    if kind == "pickle":
        data = pickle.dumps(_Payload(marker), protocol=[0, 1, 2, 5][i % 4])
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return data, "NotUtf8"
        return data, "MalformedJson"
    raise AssertionError(kind)


KINDS = (
    "broken-json",
    "wrong-shape",
    "wrong-types",
    "empty",
    "not-utf8",
    "too-large",
    "resolver-raises",
    "missing-key",
    "pickle",
)


def workload(marker: Path, seed: int) -> tuple[list[tuple[Any, ...]], Counter[str]]:
    """Valid events (in seq order per user, record key = user) with bad ones interleaved."""
    rnd = random.Random(seed)
    items: list[tuple[Any, ...]] = [
        (f"u{u}".encode(), json.dumps({"user_id": f"u{u}", "seq": s}).encode())
        for s in range(PER_USER)
        for u in range(USERS)
    ]
    expected: Counter[str] = Counter()
    for kind in KINDS:
        for i in range(BAD_PER_KIND):
            user = f"u{rnd.randrange(USERS)}"
            value, error_class = _bad(kind, i, user, marker)
            expected[error_class] += 1
            headers = [("test.kind", kind.encode()), ("test.expect", error_class.encode())]
            items.insert(rnd.randrange(len(items) + 1), (user.encode(), value, headers))
    return items, expected


def check_run(
    kafka: str, source: str, sink: str, dlq: str, expected: Counter[str], marker: Path
) -> None:
    n_bad = sum(expected.values())
    rows = read_all(kafka, sink, expect=USERS * PER_USER, timeout=300, settle=5)
    dead = read_all(kafka, dlq, expect=n_bad, timeout=120, settle=3)
    assert len(rows) == USERS * PER_USER
    assert len(dead) == n_bad

    # Every user's rows are exactly 1..PER_USER, for seqs 0..PER_USER-1, in order: no row lost
    # or duplicated, and the resolver's half-done changes before it raised were never stored.
    per_user: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        v = json.loads(r.value)
        per_user[v["user.id"]].append((v["user.events"], v["user.last_seq"]))
    assert per_user == {f"u{u}": [(s + 1, s) for s in range(PER_USER)] for u in range(USERS)}

    # One dead letter per bad message, of the expected class, pointing at its source record.
    everything = read_all(kafka, source, expect=USERS * PER_USER + n_bad)
    sources = {(r.partition, r.offset): r for r in everything}
    seen: set[tuple[int, int]] = set()
    classes: Counter[str] = Counter()
    for d in dead:
        h = d.headers
        assert h["dlq.error.class"] == h["test.expect"], (h, d.value and d.value[:80])
        assert h["dlq.error.message"], h
        assert h["dlq.resolver"] == b"count_valid"
        assert h["dlq.source.topic"] == source.encode()
        where = (int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))
        assert where not in seen, f"duplicate dead letter for {where}"
        seen.add(where)
        original = sources[where]
        assert original.headers["test.kind"] == h["test.kind"]
        assert (original.value or b"") == (d.value or b"")
        assert d.key == original.key
        classes[h["dlq.error.class"].decode()] += 1
    assert classes == expected
    assert not marker.exists(), "a message payload was unpickled and executed"


@pytest.fixture
def setup(kafka: str, tmp_path: Path):
    source, sink, dlq = unique("events"), unique("features"), unique("dlq")
    create_topic(kafka, source, partitions=3)
    conf = tmp_path / "flink-job.toml"
    conf.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[sources.events]\ntopic = "{source}"\ndead_letter_queue_topic = "{dlq}"\n'
        f"max_message_bytes = {MAX_BYTES}\n"
    )
    return source, sink, dlq, conf


def _restarts(job: str) -> int:
    """How often the job's tasks were redeployed: the highest attempt number of any subtask.

    (The REST ``numRestarts`` metric is fetched in the background and can be 10 s stale; the
    execution graph is not.)"""
    attempts = [0]
    for v in ch.REST.job(job)["vertices"]:
        detail = ch.REST.get(f"/jobs/{job}/vertices/{v['id']}")
        attempts.extend(int(t["attempt"]) for t in detail["subtasks"])
    return max(attempts)


def test_poison_pills_exact_counts_and_no_restarts(cluster, kafka, setup, tmp_path):
    source, sink, dlq, conf = setup
    marker = tmp_path / "payload-was-executed"
    items, expected = workload(marker, seed=1)
    assert len(items) == USERS * PER_USER + BAD_PER_KIND * len(KINDS)
    produce(kafka, source, items)
    job = ch.submit(
        APP,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    try:
        check_run(kafka, source, sink, dlq, expected, marker)
        assert _restarts(job) == 0
        assert ch.REST.get(f"/jobs/{job}/exceptions")["exceptionHistory"]["entries"] == []
        assert ch.state(job) == "RUNNING"
    finally:
        ch.cancel(job)


def test_poison_pills_exact_counts_across_a_taskmanager_kill(cluster, kafka, setup, tmp_path):
    from flink_job._local import cluster as local_cluster

    source, sink, dlq, conf = setup
    marker = tmp_path / "payload-was-executed"
    items, expected = workload(marker, seed=2)
    job = ch.submit(
        APP,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    batches = [items[i : i + 500] for i in range(0, len(items), 500)]
    done = threading.Event()

    def feed() -> None:
        for b in batches:
            produce(kafka, source, b)
            time.sleep(0.4)
        done.set()

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        ch.wait_state(job, {"RUNNING"}, timeout=120)
        feeder.start()
        time.sleep(5)  # mid-run: some checkpoints done, more input still coming
        pids = local_cluster.taskmanager_pids()
        assert pids, "no TaskManager to kill"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        local_cluster.start_taskmanager()
        feeder.join(180)
        assert done.is_set()
        check_run(kafka, source, sink, dlq, expected, marker)
        assert _restarts(job) >= 1, "the kill must have made the job restart"
        assert ch.REST.get(f"/jobs/{job}/exceptions")["exceptionHistory"]["entries"]
    finally:
        ch.cancel(job)
