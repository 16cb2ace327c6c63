"""This project's job as one variant of ``bench.peers``: the same start as ``bench.e2e``.

    python -m bench.peer_project SOURCE_TOPIC SINK_TOPIC DELIVERY BATCH_SIZE|default

Starts the compiled unique-IP resolver (``bench/workload.py``) on a local MiniCluster reading
SOURCE_TOPIC from the earliest offset into SINK_TOPIC (hashmap, checkpoint every second, thread
mode; ``BATCH_SIZE`` 0 = one Python call per record, ``default`` = the batched operator's
default) and runs until it is terminated. The benchmark reads and verifies the rows.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from flink_job.config import JobOptions
    from flink_job.launch import start_local

    source, sink, delivery, batch = sys.argv[1:5]
    conf = ROOT / ".run" / f"bench-{sink}.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[sources.bench-logins]\ntopic = "{source}"\n')
    os.environ["FLINK_JOB_CONF"] = str(conf)
    options = JobOptions.from_conf(
        job_name=f"bench-{sink}",
        sink_topic=sink,
        starting_offsets="earliest",
        checkpoint_interval_ms=1000,
        state_backend="hashmap",
        delivery=delivery,
        batch_size=None if batch == "default" else int(batch),
    )
    start_local(str(ROOT / "bench" / "workload.py"), options)
    print(f"batch_size={options.batch_size}", flush=True)
    while True:  # the job runs on this process's MiniCluster until the benchmark ends it
        time.sleep(3600)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
