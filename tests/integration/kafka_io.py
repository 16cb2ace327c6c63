"""Test-side Kafka helpers: produce, read everything with read_committed, unique topics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int
    timestamp: int = -1  # the record timestamp (epoch ms)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(
    bootstrap: str, topic: str, partitions: int = 1, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})]).values():
        fut.result(30)


def produce(
    bootstrap: str, topic: str, items: Iterable[tuple[Any, ...]], timestamps: Iterable[int] = ()
) -> int:
    """Produce ``(key, value)`` or ``(key, value, headers)`` items in order; ``timestamps``
    (epoch ms) set the first records' timestamps (the rest get the producer's clock)."""
    # Idempotent: a batch retried (e.g. a partition leader not ready just after the topic was
    # created) must not land after later batches; without it, a topic's records can be out of
    # the order they were produced in.
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "message.max.bytes": 5_000_000,
            "enable.idempotence": True,
        }
    )
    n = 0
    stamps = iter(timestamps)
    for key, value, *headers in items:
        ts = next(stamps, 0)
        p.produce(
            topic, value=value, key=key, headers=headers[0] if headers else None, timestamp=ts
        )
        n += 1
        if n % 1000 == 0:
            p.poll(0)
    assert p.flush(30) == 0
    return n


def read_all(
    bootstrap: str, topic: str, expect: int, timeout: float = 120.0, settle: float = 3.0
) -> list[Record]:
    """Read the topic from the start (read_committed) until ``expect`` records arrived and no
    more came for ``settle`` seconds, or the timeout passed."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("test-reader"),
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    deadline = time.monotonic() + timeout
    partitions: list[int] = []
    while not partitions and time.monotonic() < deadline:
        # The job may not have created the topic yet: wait for it rather than auto-creating.
        md = c.list_topics(timeout=10)
        t = md.topics.get(topic)
        if t is not None and t.error is None and t.partitions:
            partitions = list(t.partitions)
        else:
            time.sleep(0.5)
    c.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[Record] = []
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append(
                    Record(
                        m.key(),
                        m.value(),
                        dict(m.headers() or []),
                        m.partition(),
                        m.offset(),
                        m.timestamp()[1],
                    )
                )
                last_new = time.monotonic()
            elif len(out) >= expect and time.monotonic() - last_new > settle:
                break
    finally:
        c.close()
    return out
