"""End to end through the real broker: preloaded topic -> job (exactly-once) -> sink topic.

    python -m bench.e2e N KEYS [--backend hashmap|rocksdb] [--probes P]
                               [--delivery exactly-once|at-least-once] [--batch-size B]

Prints one JSON line: sustained events/s (first to last row visible under read_committed),
event-to-row latency p50/p99 from probe events sent one by one after the backlog drained,
the last checkpoint's duration and size, and whether the output was right (the last row of
every key carries that key's true unique-IP count). ``--batch-size 0`` runs thread mode with
one Python call per record (as before the batched operator).
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

    from bench.workload import events
    from connectors.admin import ensure_topics
    from flink_job._local import kafka
    from flink_job.config import JobOptions
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
    bootstrap = kafka.start()
    run = uuid.uuid4().hex[:6]
    src, sink = f"bench-in-{run}", f"bench-out-{run}"
    ensure_topics({"bootstrap.servers": bootstrap}, [src, sink])
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    values = events(n, keys)
    truth: dict[str, set[str]] = {}
    for v in values:
        e = json.loads(v)
        truth.setdefault(e["user_id"], set()).add(e["ip_address"])
    for i, v in enumerate(values):
        producer.produce(src, v)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush(60)

    conf = ROOT / ".run" / f"bench-{run}.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[sources.bench-logins]\ntopic = "{src}"\n')
    import os

    os.environ["FLINK_JOB_CONF"] = str(conf)
    options = JobOptions.from_conf(
        job_name=f"bench-{run}",
        sink_topic=sink,
        starting_offsets="earliest",
        checkpoint_interval_ms=1000,
        state_backend=backend,
        delivery=delivery,
        batch_size=batch_size,
    )
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
            first = first or now
            last = now
            seen += len(good)
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
                "verified": last_count == {u: len(ips) for u, ips in truth.items()},
                "sustained_events_per_s": sustained,
                "latency_p50_s": statistics.median(latencies) if latencies else None,
                "latency_p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
                if latencies
                else None,
                "checkpoint": checkpoint,
            }
        )
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
