"""The batched keyed operator (thread mode's default) on the real standalone cluster and broker.

Savepoints move between the per-record operator (thread mode as before batching,
``--batch-size 0``), the batched operator and process mode, in both directions; counts must
continue exactly (read_committed, every user's rows exactly 1..N).
"""

from __future__ import annotations

import json
from collections import defaultdict

from tests.integration import cluster_helpers as ch
from tests.integration.conftest import APPS, events_source, wait_for
from tests.integration.kafka_io import create_topic, produce, read_all, unique


def _counts(rows) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        v = json.loads(r.value)
        out[v["user.id"]].append(v["user.events"])
    return {u: sorted(c) for u, c in out.items()}


def _python_threads() -> list[str]:
    """The batched operators' Python threads on the cluster's TaskManagers (thread dumps)."""
    names = []
    for tm in ch.REST.get("/taskmanagers")["taskmanagers"]:
        dump = ch.REST.get(f"/taskmanagers/{tm['id']}/thread-dump")
        names += [
            str(t["threadName"])
            for t in dump["threadInfos"]
            if str(t["threadName"]).startswith("flink-job python:")
        ]
    return names


def test_savepoints_move_between_per_record_batched_and_process(cluster, kafka, topics, tmp_path):
    """per-record thread mode (today's main) -> batched with Python on a thread of its own ->
    process -> batched -> batched again with the Python thread: one savepoint per hop, the
    counts continue through all of them. The TaskManagers' thread dumps show the Python
    thread exactly when ``batch_python_thread`` is on."""
    source, sink, conf = topics
    python_thread_conf = tmp_path / "python-thread.toml"
    python_thread_conf.write_text(conf.read_text() + "[job]\nbatch_python_thread = true\n")
    app = str(APPS / "count_events.py")
    users = 10
    small = ["--batch-size", "7", "--batch-time", "5"]
    hops = [
        ("per-record", ["--batch-size", "0"], 5, "hashmap", conf, False),
        ("batched, Python thread", [], 3, "rocksdb", python_thread_conf, True),
        ("process", ["--execution-mode", "process"], 2, "hashmap", conf, False),
        ("batched", small, 2, "hashmap", conf, False),
        ("batched again, Python thread", small, 3, "rocksdb", python_thread_conf, True),
    ]
    savepoint: str | None = None
    done = 0
    for name, flags, per_user, backend, job_conf, python_thread in hops:
        produce(kafka, source, ch.events(users=users, per_user=per_user, start=done))
        restore = (
            ["--from-savepoint", savepoint] if savepoint else ["--starting-offsets", "earliest"]
        )
        args = ["--sink-topic", sink, "--state-backend", backend, *restore, *flags]
        job = ch.submit(app, *args, conf=job_conf, checkpoints=tmp_path / "ck")
        done += per_user
        try:
            rows = read_all(kafka, sink, expect=users * done, timeout=120)
            threads = _python_threads()
        except BaseException:
            ch.cancel(job)
            raise
        assert _counts(rows) == {f"u{u}": list(range(1, done + 1)) for u in range(users)}, name
        if python_thread:
            assert threads == ["flink-job python: resolve count_events (1/1)"], (name, threads)
        else:
            assert threads == [], (name, threads)
        savepoint = ch.stop(job, tmp_path / "sp", job_conf)


def test_a_resolver_that_prints_and_logs_on_the_python_thread(kafka, run_job, tmp_path):
    """print() and logging from a resolver on the batched operator's Python thread (the
    local MiniCluster): the printed lines reach the job's output through pemja's redirection
    from that thread too, logging there does not break the job, and its rows are exact."""
    source, conf = events_source(kafka, tmp_path, partitions=1)
    sink = unique("features")
    produce(kafka, source, ch.events(users=3, per_user=4))
    flags = ["--sink-topic", sink, "--starting-offsets", "earliest"]
    python_thread = conf.read_text() + "[job]\nbatch_python_thread = true\n"
    job = run_job(str(APPS / "chatty_app.py"), *flags, conf=python_thread)
    rows = read_all(kafka, sink, expect=12, timeout=180)
    assert _counts(rows) == {f"u{u}": [1, 2, 3, 4] for u in range(3)}, job.output()[-3000:]
    wait_for(lambda: "chatty: u2 has 4" in job.output(), 30, "the resolver's print output")


def test_two_batched_operators_in_one_job_keep_their_own_resolvers(kafka, run_job):
    """Two resolvers (keyed on the JVM / by a Python selector) share one TaskManager's
    interpreter: each batched operator must run its own resolver on its own records."""
    clicks, purchases = unique("clicks"), unique("purchases")
    sink, dlq, pdlq = unique("features"), unique("dlq"), unique("pdlq")  # pdlq: not used
    for t in (clicks, purchases):
        create_topic(kafka, t, partitions=2)
    users = [f"u{i}" for i in range(30)]
    click = [{"user_id": u, "url": "/"} for _ in range(20) for u in users]
    # Padded ids: total_spend's validator strips them (so its key is computed in Python).
    purchase = [{"user_id": f" {u} ", "amount": 1.5} for _ in range(10) for u in users]
    produce(kafka, clicks, [(e["user_id"].encode(), json.dumps(e).encode()) for e in click])
    produce(kafka, purchases, [(b"p", json.dumps(e).encode()) for e in purchase])
    produce(kafka, purchases, [(b"bad", b'{"user_id": "u1"}')])
    conf = (
        f'[sources.clicks]\ntopic = "{clicks}"\ndead_letter_queue_topic = "{dlq}"\n'
        f'[sources.purchases]\ntopic = "{purchases}"\ndead_letter_queue_topic = "{pdlq}"\n'
    )
    flags = ["--sink-topic", sink, "--starting-offsets", "earliest"]
    job = run_job(str(APPS / "two_resolvers.py"), *flags, "--batch-size", "64", conf=conf)
    rows = read_all(kafka, sink, expect=900, timeout=180)
    assert len(rows) == 900, job.output()[-3000:]
    last: dict[tuple[bytes, str], float] = {}
    for r in rows:
        v = json.loads(r.value)
        field = "user.clicks" if r.headers["resolver"] == b"count_clicks" else "user.spend"
        last[(r.headers["resolver"], v["user.id"])] = v[field]
    assert last == {
        **{(b"count_clicks", u): 20 for u in users},
        **{(b"total_spend", u): 15.0 for u in users},
    }
    # The app's KafkaSource names its own dead-letter topic (it wins over the conf file),
    # shared with other tests: this run's dead letter is the one from this run's topic.
    (dead,) = [
        d
        for d in read_all(kafka, "purchases-dlq", expect=1, timeout=60)
        if d.headers["dlq.source.topic"] == purchases.encode()
    ]
    assert dead.headers["dlq.error.class"] == b"SchemaViolation"
    assert dead.headers["dlq.resolver"] == b"total_spend"
    assert dead.headers["dlq.source.topic"] == purchases.encode()
    assert dead.key == b"bad"
