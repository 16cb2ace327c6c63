"""What the Kafka benchmarks share: preloading a topic, pointing the workload's source at it,
the benchmark job's options.

Kept out of ``bench/workload.py``: that module is the job itself and travels to the workers,
which need neither a Kafka client nor these files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flink_job.config import JobOptions

ROOT = Path(__file__).resolve().parents[1]


def preload(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Write ``values`` to ``topic`` (in order, without keys) and wait until all are
    acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for v in values:
        while True:
            try:
                producer.produce(topic, v)
                break
            except BufferError:  # the client's queue is full: let it deliver
                producer.poll(0.1)
    if producer.flush(300):
        raise RuntimeError(f"could not preload {topic}")


def use_source_topic(tag: str, topic: str) -> Path:
    """Point the workload's source (``bench-logins``) at ``topic`` for jobs built by this
    process from now on: a conf file under ``.run/`` named by ``tag``, set as FLINK_JOB_CONF."""
    conf = ROOT / ".run" / f"bench-{tag}.toml"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f'[sources.bench-logins]\ntopic = "{topic}"\n')
    os.environ["FLINK_JOB_CONF"] = str(conf)
    return conf


def workload_options(
    tag: str,
    sink: str,
    delivery: str,
    backend: str,
    batch_size: int | None,
    python_thread: bool | None = None,
) -> JobOptions:
    """The options of a benchmark job ``bench-<tag>``: the workload from the earliest offset
    into ``sink``, a checkpoint every second (``batch_size`` None: the default batching;
    ``python_thread`` True: the batched operator runs Python on a thread of its own; None:
    the conf's ``batch_python_thread``)."""
    from flink_job.config import JobOptions

    return JobOptions.from_conf(
        job_name=f"bench-{tag}",
        sink_topic=sink,
        starting_offsets="earliest",
        checkpoint_interval_ms=1000,
        state_backend=backend,
        delivery=delivery,
        batch_size=batch_size,
        batch_python_thread=python_thread,
    )
