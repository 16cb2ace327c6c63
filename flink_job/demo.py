"""``flink-job demo`` / ``./build.sh demo``: the whole path on this machine, no setup needed.

Starts the local broker, writes sample login events, runs ``examples/logins.py`` on a local
MiniCluster (exactly-once) and prints feature rows as they arrive on the sink topic.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import uuid

from flink_job.config import JobOptions, project_root, run_dir

__all__ = ["demo"]


def demo(events: int = 2000, users: int = 20, follow: bool = False) -> int:
    from connectors.admin import ensure_topics, produce, read_committed
    from flink_job._local import kafka
    from flink_job.launch import start_local

    bootstrap = kafka.start()
    run = uuid.uuid4().hex[:6]
    source, sink = f"demo-logins-{run}", f"demo-features-{run}"
    print(f"==> broker {bootstrap}; source topic {source}, sink topic {sink}", file=sys.stderr)
    client = {"bootstrap.servers": bootstrap}
    ensure_topics(client, [source], partitions=3)

    rnd = random.Random(42)
    logins = [
        {
            "user_id": f"user-{rnd.randrange(users)}",
            "ip_address": f"192.168.{rnd.randrange(3)}.{rnd.randrange(10)}",
        }
        for _ in range(events)
    ]
    bad = b'{"user_id": "user-1", "ip_address": '  # one malformed message
    produce(client, source, [*(json.dumps(e).encode() for e in logins), bad])
    print(f"==> produced {events} login events (+1 malformed)", file=sys.stderr)

    # The example reads KafkaSource(name="logins"); point that name at the demo's topic.
    conf = run_dir() / f"demo-{run}.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[sources.logins]\ntopic = "{source}"\n')
    os.environ["FLINK_JOB_CONF"] = str(conf)
    options = JobOptions.from_conf(
        job_name=f"demo-{run}",
        sink_topic=sink,
        dead_letter_topic=f"demo-dead-letters-{run}",
        starting_offsets="earliest",
        checkpoint_interval_ms=1000,
    )
    target = str(project_root() / "examples" / "logins.py")
    print(
        "==> starting the job on a local Flink MiniCluster (rows appear on each checkpoint)",
        file=sys.stderr,
    )
    job = start_local(target, options)
    rows = read_committed(client, sink, group_id=f"demo-reader-{run}")
    seen = 0
    final: dict[str, int] = {}
    started = time.monotonic()
    try:
        while follow or seen < events:
            value = next(rows)
            if value is None:
                if time.monotonic() - started > 300:
                    print("flink-job: demo timed out waiting for rows", file=sys.stderr)
                    return 1
                continue
            value = value or b"{}"
            seen += 1
            row = json.loads(value)
            final[row["user.id"]] = row["user.unique_ip_count"]
            print(value.decode(), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        rows.close()
        counts = job.counts() if job.status() == "RUNNING" else {}
        job.cancel()
    print(
        f"==> {seen} rows; dead letters: {counts.get('deadLetters', '?')}; unique IPs per "
        f"user: {dict(sorted(final.items()))}",
        file=sys.stderr,
    )
    return 0
