"""The local KRaft broker (flink_job._local.kafka) really serves: topics, transactions,
read_committed, and start() is idempotent. The broker is left running for the other tests."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from flink_job._local import kafka as local_kafka
from flink_job.config import project_root

pytestmark = pytest.mark.integration

PARTITIONS = 3
COMMITTED = 100
ABORTED = 10


@pytest.fixture(scope="module")
def bootstrap() -> str:
    return local_kafka.start()


def _pid() -> int:
    return int((project_root() / ".run" / "kafka" / "kafka.pid").read_text().strip())


def _create_topic(bootstrap: str, partitions: int) -> str:
    topic = f"test-local-kafka-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    md = admin.list_topics(topic, timeout=10)
    assert len(md.topics[topic].partitions) == partitions
    return topic


def _read_committed(
    bootstrap: str, topic: str, partitions: int, timeout: float = 60.0
) -> list[Message]:
    """Every record of ``topic`` visible to read_committed, from the start to the end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-local-kafka-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    records: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < partitions and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            partition = msg.partition()
            assert partition is not None
            error = msg.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                at_end.add(partition)
                continue
            at_end.discard(partition)
            records.append(msg)
    finally:
        consumer.close()
    assert len(at_end) == partitions, f"did not reach the end of {topic} in {timeout}s"
    return records


def test_transactions_read_committed(bootstrap: str) -> None:
    topic = _create_topic(bootstrap, PARTITIONS)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"test-local-kafka-{uuid.uuid4().hex[:8]}",
            "enable.idempotence": True,
        }
    )
    producer.init_transactions(60)

    producer.begin_transaction()
    for i in range(COMMITTED):
        producer.produce(topic, key=f"key-{i}".encode(), value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    # An aborted transaction: read_committed must not see these.
    producer.begin_transaction()
    for i in range(ABORTED):
        producer.produce(topic, key=f"key-{i}".encode(), value=f"aborted-{i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)

    records = _read_committed(bootstrap, topic, PARTITIONS)

    values = sorted((r.value() or b"").decode() for r in records)
    assert len(records) == COMMITTED
    assert values == sorted(f"committed-{i}" for i in range(COMMITTED))
    assert {r.partition() for r in records} == set(range(PARTITIONS))  # keys spread the records


def test_start_again_is_a_noop(bootstrap: str) -> None:
    pid = _pid()
    began = time.monotonic()
    assert local_kafka.start() == bootstrap
    assert time.monotonic() - began < 5.0
    assert _pid() == pid
    assert local_kafka.is_running()
    assert local_kafka.bootstrap_servers() == bootstrap
