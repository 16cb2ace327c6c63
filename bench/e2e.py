"""End to end through the real broker: preloaded topic -> job (exactly-once) -> sink topic.

    python -m bench.e2e N KEYS [--backend hashmap|rocksdb] [--probes P]
                               [--delivery exactly-once|at-least-once] [--batch-size B]
                               [--profile DIR] [--config KEY=VALUE ...] [--python-thread]

Prints one JSON line: sustained events/s (first to last row visible under read_committed),
event-to-row latency p50/p99 from probe events sent one by one after the backlog drained,
the last checkpoint's duration and size, and whether the output was right (the last row of
every key carries that key's true unique-IP count). ``--batch-size 0`` runs thread mode with
one Python call per record (as before the batched operator).

The batched operator's own counters add the CPU per event of its Python call
(``operator_python_us_per_event``; on the task thread, or on the operator's Python thread
with ``--python-thread``) and of its whole flush, Python included (``operator_flush_us_per_event``:
the task thread's state reads and writes, framing and emitting into the chained sink, plus the
Python call), over the whole job; the rest of the task thread is its network input and
buffering.

CPU per event, from /proc, from the first row to the last, is always reported: of the job's
JVM (``job_cpu_us_per_event``; thread mode runs Python inside it), of this process (the reader),
of the local broker, and their sum (``cpu_us_per_event``). ``--profile DIR`` adds
the JVM's CPU per event by thread name (``threads_us_per_event``) and records a JFR execution
sample profile of the same interval into DIR (``jfr print --events jdk.ExecutionSample``).
``--config KEY=VALUE`` (repeatable) overrides one setting of the job's Flink configuration,
to compare variants (e.g. ``--config pipeline.object-reuse=false``). ``--python-thread`` runs the
batched operator's Python on a thread of its own (``batch_python_thread = true``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    from bench.topics import preload, use_source_topic, workload_options
    from bench.workload import events
    from connectors.admin import ensure_topics
    from flink_job._local import kafka
    from flink_job.launch import start_local

    n, keys = int(sys.argv[1]), int(sys.argv[2])
    backend = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "hashmap"
    probes = int(sys.argv[sys.argv.index("--probes") + 1]) if "--probes" in sys.argv else 50
    delivery = (
        sys.argv[sys.argv.index("--delivery") + 1] if "--delivery" in sys.argv else "exactly-once"
    )
    batch_size = (
        int(sys.argv[sys.argv.index("--batch-size") + 1]) if "--batch-size" in sys.argv else None
    )
    profile = Path(sys.argv[sys.argv.index("--profile") + 1]) if "--profile" in sys.argv else None
    overrides = [sys.argv[i + 1] for i, a in enumerate(sys.argv) if a == "--config"]
    if overrides:
        from flink_job import job as job_module

        built_config = job_module.flink_configuration

        def configured(*args, **kwargs):  # type: ignore[no-untyped-def]
            config = built_config(*args, **kwargs)
            for item in overrides:
                config.set_string(*item.split("=", 1))
            return config

        job_module.flink_configuration = configured  # type: ignore[assignment]
    bootstrap = kafka.start()
    run = uuid.uuid4().hex[:6]
    src, sink = f"bench-in-{run}", f"bench-out-{run}"
    ensure_topics({"bootstrap.servers": bootstrap}, [src, sink])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})  # latency probes
    values = events(n, keys)
    truth: dict[str, set[str]] = {}
    for v in values:
        e = json.loads(v)
        truth.setdefault(e["user_id"], set()).add(e["ip_address"])
    preload(bootstrap, src, values)
    use_source_topic(run, src)
    python_thread = True if "--python-thread" in sys.argv else None
    options = workload_options(run, sink, delivery, backend, batch_size, python_thread)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{run}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(sink, 0, 0)])
    job = start_local(str(ROOT / "bench" / "workload.py"), options)
    seen, first, last = 0, None, None
    cpu0 = cpu1 = (0.0, 0.0, 0.0)
    threads0: dict[str, float] = {}
    threads1: dict[str, float] = {}
    last_count: dict[str, int] = {}
    deadline = time.monotonic() + 1800
    while seen < n and time.monotonic() < deadline:
        batch = consumer.consume(1000, 1.0)
        good = [m for m in batch if not m.error()]
        for m in good:
            row = json.loads(m.value())
            last_count[row["user.id"]] = row["user.unique_ip_count"]
        if good:
            now = time.monotonic()
            if first is None:
                first = now
                cpu0 = _cpus()
                if profile is not None:
                    threads0 = _jvm_threads()
                    _jfr("JFR.start", "name=bench", "settings=profile")
            last = now
            seen += len(good)
            cpu1 = _cpus()
    if profile is not None:
        threads1 = _jvm_threads()
        profile.mkdir(parents=True, exist_ok=True)
        _jfr("JFR.stop", "name=bench", f"filename={profile.resolve() / f'e2e-{run}.jfr'}")
    sustained = (seen - 1) / (last - first) if first and last and last > first else 0.0

    latencies = []
    for i in range(probes):
        probe = f"probe-{run}-{i}"
        t0 = time.monotonic()
        producer.produce(src, json.dumps({"user_id": probe, "ip_address": "1.2.3.4"}).encode())
        producer.flush(10)
        found = False
        while not found and time.monotonic() - t0 < 30:
            m = consumer.poll(0.01)  # returns as soon as a row arrives
            if m is not None and not m.error() and probe.encode() in (m.value() or b""):
                latencies.append(time.monotonic() - t0)
                found = True
    checkpoint = {}
    try:
        stats = job.rest.get(f"/jobs/{job.job_id}/checkpoints")
        latest = (stats.get("latest") or {}).get("completed") or {}
        checkpoint = {
            "duration_ms": latest.get("end_to_end_duration"),
            "state_size": latest.get("state_size") or latest.get("checkpointed_size"),
        }
    except Exception:
        pass
    split = _operator_split(job) if options.batch_size else {}  # per-record: no such counters
    job.cancel()
    consumer.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "n": n,
                "keys": keys,
                "backend": backend,
                "delivery": delivery,
                "rows": seen,
                "batch_size": options.batch_size,
                "python_thread": options.batch_python_thread,
                "verified": last_count == {u: len(ips) for u, ips in truth.items()},
                "sustained_events_per_s": sustained,
                "latency_p50_s": statistics.median(latencies) if latencies else None,
                "latency_p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                if latencies
                else None,
                "checkpoint": checkpoint,
                # The job's JVM (thread mode runs Python inside it), this process (the
                # reader) and the broker, and their sum.
                **{
                    f"{part}_cpu_us_per_event": (b - a) * 1e6 / max(seen - 1, 1)
                    for part, a, b in zip(("job", "reader", "broker"), cpu0, cpu1, strict=True)
                },
                "cpu_us_per_event": (sum(cpu1) - sum(cpu0)) * 1e6 / max(seen - 1, 1),
                **split,
                **(
                    {"threads_us_per_event": _per_event(threads0, threads1, seen)}
                    if profile is not None
                    else {}
                ),
            }
        )
    )


# The batched operator's own counters (BatchedResolveOperator): its thread's CPU inside the
# Python call and inside the whole flush (Python, state, framing, emitting into the sink).
_SPLIT = ("eventsIn", "batches", "pythonCpuNanos", "flushCpuNanos")


def _operator_split(job) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The keyed thread's CPU per event inside Python and inside the whole flush, from the
    batched operator's counters over the whole job (warm-up included; exact per thread, not
    sampled). The REST metrics lag up to 10 s, but one read takes all of them from the same
    moment, to within one batch, so the ratios hold."""
    n, c = 0, {}
    for attempt in range(3):  # the first read can come before the REST metrics' first fetch
        if attempt:
            time.sleep(5)
        try:
            c = job.rest.counters(job.job_id, _SPLIT)
        except Exception:
            continue
        n = c.get("eventsIn", 0)
        if n > 0:
            break
    if n <= 0:
        return {}
    return {
        "operator_events_counted": n,
        "operator_records_per_batch": round(n / max(c["batches"], 1), 1),
        "operator_python_us_per_event": round(c["pythonCpuNanos"] / n / 1e3, 2),
        "operator_flush_us_per_event": round(c["flushCpuNanos"] / n / 1e3, 2),
    }


def _jvm_pid(broker: bool = False) -> int | None:
    """The MiniCluster's JVM (or with ``broker`` the local Kafka broker's): a java child."""
    import os

    for child in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
        if Path(f"/proc/{child}/comm").read_text().strip() != "java":
            continue
        is_broker = b"kafka.Kafka" in Path(f"/proc/{child}/cmdline").read_bytes()
        if is_broker == broker:
            return int(child)
    return None


def _jvm_threads() -> dict[str, float]:
    """CPU seconds of the JVM's threads so far, summed by thread name without digits."""
    import os
    import re

    pid = _jvm_pid()
    out: dict[str, float] = {}
    if pid is None:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = re.sub(r"[0-9]+", "#", (task / "comm").read_text().strip())
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = f"{name} [{task.name}]"
        out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpus() -> tuple[float, float, float]:
    """CPU seconds so far of the job's JVM, this process and the local broker."""
    import os

    from flink_job._local import kafka

    return _cpu_of(_jvm_pid()), _cpu_of(os.getpid()), _cpu_of(kafka._broker_pid())


def _cpu_of(pid: int | None) -> float:
    """CPU seconds (user + system) of one process so far."""
    import os

    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_event(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    by_name: dict[str, float] = {}
    for key, cpu in after.items():
        name = key.rsplit(" [", 1)[0]
        by_name[name] = by_name.get(name, 0.0) + cpu - before.get(key, 0.0)
    used = {k: round(v * 1e6 / max(n - 1, 1), 1) for k, v in by_name.items() if v > 0}
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


def _jfr(*args: str) -> None:
    import subprocess

    pid = _jvm_pid()
    if pid is not None:
        subprocess.run(["jcmd", str(pid), *args], capture_output=True, timeout=60)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
