"""This project's job as one variant of ``bench.peers``: the same start as ``bench.e2e``.

    python -m bench.peer_project SOURCE_TOPIC SINK_TOPIC DELIVERY BATCH_SIZE|default|python-thread

Starts the compiled unique-IP resolver (``bench/workload.py``) on a local MiniCluster reading
SOURCE_TOPIC from the earliest offset into SINK_TOPIC (hashmap, checkpoint every second, thread
mode; ``BATCH_SIZE`` 0 = one Python call per record, ``default`` = the batched operator's
default, ``python-thread`` = the batched operator with Python on a thread of its own) and runs until
it is terminated. The benchmark reads and verifies the rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from bench.topics import use_source_topic, workload_options
    from flink_job.launch import start_local

    source, sink, delivery, batch = sys.argv[1:5]
    use_source_topic(sink, source)
    batch_size = None if batch in ("default", "python-thread") else int(batch)
    options = workload_options(
        sink,
        sink,
        delivery,
        "hashmap",
        batch_size,
        python_thread=True if batch == "python-thread" else None,
    )
    start_local(str(ROOT / "bench" / "workload.py"), options)
    print(
        f"batch_size={options.batch_size} python_thread={options.batch_python_thread}", flush=True
    )
    while True:  # the job runs on this process's MiniCluster until the benchmark ends it
        time.sleep(3600)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
