"""On the real standalone cluster and broker: savepoints, state evolution, failover.

All output is read with read_committed and checked exactly.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration import cluster_helpers as ch
from tests.integration.conftest import APPS
from tests.integration.kafka_io import create_topic, produce, read_all, unique


def _per_user(rows) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        v = json.loads(r.value)
        out[v["user.id"]].append(v["user.events"])
    return out


def test_savepoint_round_trip_continues_state(cluster, kafka, topics, tmp_path):
    source, sink, conf = topics
    app = str(APPS / "count_events.py")
    ck, sp = tmp_path / "ck", tmp_path / "sp"
    produce(kafka, source, ch.events(users=20, per_user=30))
    job = ch.submit(
        app, "--sink-topic", sink, "--starting-offsets", "earliest", conf=conf, checkpoints=ck
    )
    assert len(read_all(kafka, sink, expect=600, timeout=120)) == 600
    savepoint = ch.stop(job, sp, conf)
    assert Path(savepoint.removeprefix("file:")).is_dir()

    produce(kafka, source, ch.events(users=20, per_user=20, start=30))
    job2 = ch.submit(
        app, "--sink-topic", sink, "--from-savepoint", savepoint, conf=conf, checkpoints=ck
    )
    try:
        rows = read_all(kafka, sink, expect=1000, timeout=120)
    finally:
        ch.cancel(job2)
    per_user = _per_user(rows)
    assert len(rows) == 1000
    # Exactly one row per event, counts continue from the savepoint: 1..50 for every user.
    assert {u: sorted(c) for u, c in per_user.items()} == {
        f"u{u}": list(range(1, 51)) for u in range(20)
    }


EVOLVED = """
from dataclasses import dataclass, field
from pydantic import BaseModel
from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

class Event(BaseModel):
    user_id: str
    seq: int

@features
class User:
    id: str
    events: int

@dataclass
class Count:
{fields}

@stream(source=KafkaSource(name="events"), keys={{"user_id": User.id}})
def count_events(event: Event, state: State[Count]) -> Features[User.id, User.events]:
{body}
    return User(id=event.user_id, events=state.n)
"""


def _variant(tmp_path: Path, name: str, fields: str, body: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / "count_events.py"
    path.write_text(EVOLVED.format(fields=fields, body=body))
    return str(path)


def _savepoint_with_counts(kafka, source, sink, conf, tmp_path) -> str:
    app = _variant(
        tmp_path,
        "v1",
        "    n: int = 0\n    last_seq: int = -1",
        "    state.n += 1\n    state.last_seq = event.seq",
    )
    produce(kafka, source, ch.events(users=5, per_user=10))
    job = ch.submit(
        app,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    assert len(read_all(kafka, sink, expect=50, timeout=120)) == 50
    return ch.stop(job, tmp_path / "sp", conf)


@pytest.mark.parametrize("change", ["added_field", "removed_field"])
def test_state_class_change_restores(cluster, kafka, topics, tmp_path, change):
    source, sink, conf = topics
    savepoint = _savepoint_with_counts(kafka, source, sink, conf, tmp_path)
    if change == "added_field":
        # New field with a default: old state restores and the field takes its default.
        app = _variant(
            tmp_path,
            "v2",
            "    n: int = 0\n    last_seq: int = -1\n"
            "    tags: list[str] = field(default_factory=lambda: ['new'])",
            "    assert state.tags[0] == 'new', state.tags\n    state.n += 1",
        )
    else:
        app = _variant(tmp_path, "v2", "    n: int = 0", "    state.n += 1")
    produce(kafka, source, ch.events(users=5, per_user=2, start=10))
    job = ch.submit(
        app,
        "--sink-topic",
        sink,
        "--from-savepoint",
        savepoint,
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    try:
        rows = read_all(kafka, sink, expect=60, timeout=120)
    finally:
        ch.cancel(job)
    assert len(rows) == 60
    assert {u: max(c) for u, c in _per_user(rows).items()} == {f"u{u}": 12 for u in range(5)}


def test_incompatible_state_change_fails_naming_resolver_and_field(
    cluster, kafka, topics, tmp_path
):
    source, sink, conf = topics
    savepoint = _savepoint_with_counts(kafka, source, sink, conf, tmp_path)
    # last_seq was an int; it is now a dict: stored values cannot fit.
    app = _variant(
        tmp_path,
        "v3",
        "    n: int = 0\n    last_seq: dict[str, int] = field(default_factory=dict)",
        "    state.n += 1",
    )
    produce(kafka, source, ch.events(users=1, per_user=1, start=10))
    refused = ch.cli(
        "submit",
        app,
        "--sink-topic",
        sink,
        "--from-savepoint",
        savepoint,
        "--checkpoint-interval",
        "1000",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        conf=conf,
        check=False,
    )
    assert refused.returncode != 0
    line = refused.stderr.strip().splitlines()[-1]
    assert "StateSchemaError" in line, refused.stderr[-2000:]
    assert "count_events" in line and "last_seq" in line, line
    job = line.split("job ", 1)[1].split()[0]
    # Every restart attempt installs the job's wheels on the TaskManager again (pip, offline;
    # a few seconds each): exhausting the 30 attempts takes longer than it did.
    assert ch.wait_state(job, {"FAILED"}, timeout=360) == "FAILED"
    # And no row was produced from empty state.
    rows = read_all(kafka, sink, expect=50, timeout=20, settle=2)
    assert len(rows) == 50


def test_removed_resolver_needs_allow_non_restored_state(cluster, kafka, tmp_path):
    clicks, purchases, sink = unique("clicks"), unique("purchases"), unique("features")
    for t in (clicks, purchases):
        create_topic(kafka, t)
    conf = tmp_path / "flink-job.toml"
    conf.write_text(
        f'[sources.clicks]\ntopic = "{clicks}"\n[sources.purchases]\ntopic = "{purchases}"\n'
    )
    produce(kafka, clicks, [(b"u", json.dumps({"user_id": "u1", "url": "/"}).encode())] * 3)
    job = ch.submit(
        str(APPS / "two_resolvers.py"),
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    assert len(read_all(kafka, sink, expect=3, timeout=120)) == 3
    savepoint = ch.stop(job, tmp_path / "sp", conf)

    only_clicks = tmp_path / "one" / "two_resolvers.py"
    only_clicks.parent.mkdir()
    text = (APPS / "two_resolvers.py").read_text()
    only_clicks.write_text(text[: text.index('@stream(\n    source=KafkaSource(name="purchases"')])
    flags = ["--sink-topic", sink, "--from-savepoint", savepoint, "--checkpoint-interval", "1000"]
    refused = ch.cli("submit", str(only_clicks), *flags, conf=conf, check=False)
    assert refused.returncode != 0
    assert "--allow-non-restored-state" in refused.stderr, refused.stderr[-2000:]

    produce(kafka, clicks, [(b"u", json.dumps({"user_id": "u1", "url": "/"}).encode())])
    job2 = ch.submit(
        str(only_clicks),
        *flags,
        "--allow-non-restored-state",
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    try:
        rows = read_all(kafka, sink, expect=4, timeout=120)
    finally:
        ch.cancel(job2)
    assert [json.loads(r.value)["user.clicks"] for r in rows] == [1, 2, 3, 4]


def test_taskmanager_killed_twice_exactly_once(cluster, kafka, topics, tmp_path):
    from flink_job._local import cluster as local_cluster

    source, sink, conf = topics
    users, per_user = 30, 200
    batches = [ch.events(users, 10, start=s) for s in range(0, per_user, 10)]
    job = ch.submit(
        str(APPS / "count_events.py"),
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    done = threading.Event()

    def feed() -> None:
        for b in batches:
            produce(kafka, source, b)
            time.sleep(0.5)
        done.set()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    kills = 0
    try:
        for _ in range(2):
            time.sleep(4)
            ch.wait_state(job, {"RUNNING"}, timeout=120)
            time.sleep(2)
            pids = local_cluster.taskmanager_pids()
            assert pids, "no TaskManager to kill"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            kills += 1
            local_cluster.start_taskmanager()
        feeder.join(120)
        assert done.is_set()
        rows = read_all(kafka, sink, expect=users * per_user, timeout=240, settle=5)
        restarts = ch.REST.job(job).get("status-counts")
    finally:
        ch.cancel(job)
    assert kills == 2, "the test must kill the TaskManager twice"
    per_user_counts = _per_user(rows)
    assert len(rows) == users * per_user, restarts
    # No duplicates, no gaps: every user's rows are exactly 1..per_user.
    assert {u: sorted(c) for u, c in per_user_counts.items()} == {
        f"u{u}": list(range(1, per_user + 1)) for u in range(users)
    }


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("thread", "hashmap"), ("process", "rocksdb")),
        (("process", "rocksdb"), ("thread", "hashmap")),
    ],
)
def test_savepoint_restores_across_execution_modes_and_backends(
    cluster, kafka, topics, tmp_path, first, second
):
    """The trap: PICKLED state restored in the other Python mode comes back empty. Our state
    is a string envelope, so the counts must continue whatever the mode and backend."""
    source, sink, conf = topics
    app = str(APPS / "count_events.py")
    produce(kafka, source, ch.events(users=10, per_user=5))
    job = ch.submit(
        app,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        "--execution-mode",
        first[0],
        "--state-backend",
        first[1],
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    assert len(read_all(kafka, sink, expect=50, timeout=120)) == 50
    savepoint = ch.stop(job, tmp_path / "sp", conf)
    produce(kafka, source, ch.events(users=10, per_user=3, start=5))
    job2 = ch.submit(
        app,
        "--sink-topic",
        sink,
        "--from-savepoint",
        savepoint,
        "--execution-mode",
        second[0],
        "--state-backend",
        second[1],
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    try:
        rows = read_all(kafka, sink, expect=80, timeout=120)
    finally:
        ch.cancel(job2)
    assert {u: sorted(c) for u, c in _per_user(rows).items()} == {
        f"u{u}": list(range(1, 9)) for u in range(10)
    }
