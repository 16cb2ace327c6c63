"""Issue 12 on the real standalone cluster and broker: the feature rows' Kafka timestamps come
from `timestamp=` (else the source record), timezone-aware datetimes in state survive a
savepoint exactly, and `late_arrival_deadline` skips and counts old messages. (Zone folds and
DST edges are covered by tests/unit/test_porting.py; here only recent times fit the broker's
retention.)"""

from __future__ import annotations

import datetime as dt
import json
import time
import zoneinfo
from pathlib import Path

from tests.integration import cluster_helpers as ch
from tests.integration.conftest import APPS, wait_for
from tests.integration.kafka_io import create_topic, produce, read_all, unique

APP = str(APPS / "chalk_port_app.py")
DAY_MS = 86_400_000


def _ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def _login(user: str, at: str) -> tuple[bytes, bytes]:
    return user.encode(), json.dumps({"user_id": user, "at": at}).encode()


def _by(rows, resolver: str) -> list:
    return [r for r in rows if r.headers["resolver"] == resolver.encode()]


def test_row_timestamps_aware_state_through_a_savepoint_and_late_arrivals(
    cluster, kafka, tmp_path: Path
):
    events, late, sink, dlq = unique("events"), unique("late"), unique("features"), unique("dlq")
    create_topic(kafka, events)
    create_topic(kafka, late)
    conf = tmp_path / "flink-job.toml"
    conf.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[sources.events]\ntopic = "{events}"\ndead_letter_queue_topic = "{dlq}"\n'
        f'[sources.late]\ntopic = "{late}"\n'
    )
    # Event times with fixed offsets and UTC ("Z"); the record timestamps differ from them on
    # purpose. All within the last hours: the broker deletes records older than its retention
    # (24 h) by their timestamps.
    now = int(time.time() * 1000)
    base = dt.datetime.fromtimestamp(now // 1000 - 7200, dt.UTC).replace(microsecond=250_000)
    india, brazil = (
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(-dt.timedelta(hours=3)),
    )
    first = {"a": base.astimezone(india).isoformat(), "b": base.isoformat().replace("+00:00", "Z")}
    later = base + dt.timedelta(minutes=1)
    more = {"a": later.astimezone(brazil).isoformat(), "b": later.isoformat()}
    timed_in = [_login(u, at) for u, at in first.items()] + [
        _login(u, at) for u, at in more.items()
    ]
    # An event time a day ahead: the broker would refuse a row stamped with it (and the job
    # would restart on it forever); it is a dead letter.
    ahead = (base + dt.timedelta(days=1)).isoformat()
    timed_in.append(_login("a", ahead))
    produce(kafka, events, timed_in, timestamps=[now - 600_000 + i for i in range(5)])
    late_stamps = [now - 2 * DAY_MS, now - 60_000, now - 3 * DAY_MS, now - 30_000]
    late_in = [_login(u, "2024-01-01T00:00:00Z") for u in ("old1", "f1", "old2", "f2")]
    produce(kafka, late, late_in, timestamps=late_stamps)

    job = ch.submit(
        APP,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    rows = read_all(kafka, sink, expect=6, timeout=150)
    timed, untimed = _by(rows, "timed"), _by(rows, "untimed")
    # timestamp="at": each row's Kafka timestamp is its event's `at`, to the millisecond.
    expected_ts = {(u, n + 1): _ms(at) for n, d in enumerate((first, more)) for u, at in d.items()}
    got_ts = {}
    for r in timed:
        v = json.loads(r.value)
        got_ts[(v["user.id"], v["user.logins"])] = r.timestamp
    assert got_ts == expected_ts
    # No timestamp=: the source record's timestamp (not the sink's clock); old ones skipped.
    assert sorted((json.loads(r.value)["account.id"], r.timestamp) for r in untimed) == [
        ("f1", late_stamps[1]),
        ("f2", late_stamps[3]),
    ]
    (dead,) = read_all(kafka, dlq, expect=1, timeout=30)
    assert dead.headers["dlq.error.class"] == b"TimestampOutOfRange"
    assert dead.value == _login("a", ahead)[1]
    # The late counter shows with the job's others (counters flush on the next message).
    time.sleep(1)
    produce(kafka, late, [_login("f3", "2024-01-01T00:00:00Z")])
    wait_for(
        lambda: ch.REST.counters(job, ("lateArrivals",))["lateArrivals"] == 2,
        60,
        "lateArrivals == 2 in the job's REST metrics",
    )
    savepoint = ch.stop(job, tmp_path / "sp", conf)

    at3 = (base + dt.timedelta(minutes=2)).isoformat()
    produce(kafka, events, [_login("a", at3), _login("b", at3)])
    produce(kafka, late, [_login("f1", "2024-01-01T00:00:00Z")])
    job2 = ch.submit(
        APP,
        "--sink-topic",
        sink,
        "--from-savepoint",
        savepoint,
        conf=conf,
        checkpoints=tmp_path / "ck",
    )
    try:
        rows = read_all(kafka, sink, expect=10, timeout=150)
    finally:
        ch.cancel(job2)
    after = [json.loads(r.value) for r in _by(rows, "timed")]
    last = {v["user.id"]: v for v in after if v["user.logins"] == 3}
    # The first event time came back from the savepoint exactly: offset, zone, millis.
    berlin = base.astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    local = f"{berlin.isoformat()} {berlin.tzname()}"
    assert last["a"]["user.first_seen"] == base.astimezone(india).isoformat()
    assert last["a"]["user.first_seen"].endswith(".250000+05:30")
    assert last["a"]["user.first_local"] == local
    assert last["b"]["user.first_seen"] == base.isoformat()
    assert last["b"]["user.first_local"] == local
    accounts = [json.loads(r.value) for r in _by(rows, "untimed")]
    assert {"account.id": "f1", "account.logins": 2} in accounts
