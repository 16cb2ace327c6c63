"""Scale out: throughput at parallelism 2 on 2 TaskManagers against parallelism 1, same run.

    python -m bench.scale [--events N] [--keys K] [--rounds R]

Restarts the local cluster (`flink-job cluster stop`, then `cluster start --taskmanagers 2
--slots 1`, so parallelism 2 runs one subtask per TaskManager: thread mode has one interpreter
and GIL per TaskManager), preloads N events into a 2-partition topic, then runs rounds of
[p=1, p=2] (interleaved, so machine drift moves both alike). Each run is `flink-job submit`ted
(at-least-once: rows are written at once, not per checkpoint) and reads the backlog from the
earliest offset; its rate is rows / (last row - first row) as seen by a consumer of the sink.
Prints one JSON line: rates per parallelism, the per-round ratios p2/p1 and their median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(bootstrap: str, src: str, n: int, parallelism: int) -> float:
    from confluent_kafka import Consumer, TopicPartition

    from connectors.admin import ensure_topics
    from flink_job._local import cluster
    from flink_job.config import JobOptions
    from flink_job.launch import submit

    run = uuid.uuid4().hex[:6]
    sink = f"bench-scale-out-{run}"
    ensure_topics({"bootstrap.servers": bootstrap}, [sink])
    options = JobOptions.from_conf(
        job_name=f"bench-scale-p{parallelism}-{run}",
        sink_topic=sink,
        starting_offsets="earliest",
        delivery="at-least-once",
        parallelism=parallelism,
        checkpoint_interval_ms=10_000,
    )
    job_id = submit(str(ROOT / "bench" / "workload.py"), options, cluster.rest_address())
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bench-{run}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(sink, 0, 0)])
    seen, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + 1200
    try:
        while seen < n and time.monotonic() < deadline:
            good = [m for m in consumer.consume(1000, 1.0) if not m.error()]
            if good:
                last = time.monotonic()
                first = first or last
                seen += len(good)
    finally:
        consumer.close()
        from flink_job._rest import FlinkRest

        FlinkRest(cluster.rest_address()).call("PATCH", f"/jobs/{job_id}?mode=cancel")
        time.sleep(3)  # let the slots free up
    if seen < n or last <= first:
        raise RuntimeError(f"p={parallelism}: {seen} of {n} rows")
    return (seen - 1) / (last - first)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from bench.topics import preload, use_source_topic
    from bench.workload import events
    from connectors.admin import ensure_topics
    from flink_job._local import cluster, kafka

    bootstrap = kafka.start()
    cluster.stop()
    cluster.start(taskmanagers=2, slots=1)
    src = f"bench-scale-in-{uuid.uuid4().hex[:6]}"
    ensure_topics({"bootstrap.servers": bootstrap}, [src], partitions=2)
    preload(bootstrap, src, events(args.events, args.keys))
    use_source_topic(f"scale-{src}", src)
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        for r in range(args.rounds):
            for p in (1, 2):
                rates[p].append(run_once(bootstrap, src, args.events, p))
                print(f"round {r + 1}: p={p} {rates[p][-1]:,.0f} events/s", file=sys.stderr)
    finally:
        cluster.stop()
    ratios = [b / a for a, b in zip(rates[1], rates[2], strict=True)]
    print(
        json.dumps(
            {
                "events": args.events,
                "keys": args.keys,
                "events_per_s": {f"p{p}": v for p, v in rates.items()},
                "ratio_p2_over_p1": ratios,
                "median_ratio": statistics.median(ratios),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
