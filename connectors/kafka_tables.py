"""Kafka tables for the job: a source exposing key, value and metadata, and raw sinks.

PyFlink's DataStream ``KafkaSource`` hands Python only the value; the Table API connector
exposes the record key, headers, topic, partition, offset and timestamp as columns, and its
sink writes record keys and headers. Both use the ``raw`` format, so the bytes are exactly
what is on the topic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from connectors.client import SourceSettings
from connectors.secret import Secret

__all__ = ["Ddl", "sink_table_ddl", "source_table_ddl"]

# The sink producer's batch.size (bytes per partition batch), unless the properties set one.
SINK_BATCH_BYTES = 128 * 1024

_STARTUP_MODES = {
    "committed": "group-offsets",
    "earliest": "earliest-offset",
    "latest": "latest-offset",
}


@dataclasses.dataclass(frozen=True)
class Ddl:
    """A CREATE TABLE statement. ``sql`` may hold secrets; ``str``/``repr`` mask them."""

    sql: str
    masked: str

    def __str__(self) -> str:
        return self.masked

    __repr__ = __str__


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: Mapping[str, str | Secret]) -> tuple[str, str]:
    real = ",\n  ".join(
        f"{_quote(k)} = {_quote(v.reveal() if isinstance(v, Secret) else v)}"
        for k, v in options.items()
    )
    masked = ",\n  ".join(
        f"{_quote(k)} = {_quote('****' if isinstance(v, Secret) else v)}"
        for k, v in options.items()
    )
    return real, masked


def _client_props(props: Mapping[str, str | Secret]) -> dict[str, str | Secret]:
    return {f"properties.{k}": v for k, v in props.items()}


def source_table_ddl(
    table: str,
    settings: SourceSettings,
    group_id: str,
    starting_offsets: str,
    client_id_prefix: str | None = None,
) -> Ddl:
    """The source table: ``k``, ``v`` (raw bytes), then topic, partition, offset, ts, headers."""
    options: dict[str, str | Secret] = {
        "connector": "kafka",
        "topic": settings.topic,
        "properties.bootstrap.servers": settings.bootstrap_servers,
        "properties.group.id": group_id,
        "properties.isolation.level": "read_committed",
        "properties.auto.offset.reset": "earliest",
        "scan.startup.mode": _STARTUP_MODES[starting_offsets],
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        **_client_props(settings.properties),
    }
    if client_id_prefix:
        options["client.id.prefix"] = client_id_prefix
    real, masked = _with(options)
    head = (
        f"CREATE TABLE `{table}` (\n"
        "  `k` BYTES,\n"
        "  `v` BYTES,\n"
        "  `topic` STRING METADATA VIRTUAL,\n"
        "  `partition` INT METADATA VIRTUAL,\n"
        "  `offset` BIGINT METADATA VIRTUAL,\n"
        "  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,\n"
        "  `headers` MAP<STRING, BYTES> METADATA VIRTUAL\n"
        ") WITH (\n  "
    )
    return Ddl(head + real + "\n)", head + masked + "\n)")


def sink_table_ddl(
    table: str,
    topic: str,
    bootstrap_servers: str,
    props: Mapping[str, str | Secret],
    delivery: str,
    *,
    transactional_id_prefix: str,
    transaction_timeout_ms: int,
    timestamp: bool = False,
) -> Ddl:
    """A sink table writing ``k`` as the record key, ``v`` as the value, plus headers; with
    ``timestamp``, a ``ts`` column sets the record timestamp (NULL: the producer's clock)."""
    options: dict[str, str | Secret] = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": bootstrap_servers,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": delivery,
        # The Java producer's 16 KiB batches cost the broker and the producer's network
        # thread a request per ~150 rows; librdkafka (Quix Streams, Bytewax) batches up to
        # 1 MB. Still bounded by linger.ms (5 ms), so latency is unchanged. Overridable
        # (additional_kafka_args).
        "properties.batch.size": str(SINK_BATCH_BYTES),
        **_client_props(props),
    }
    if delivery == "exactly-once":
        options["sink.transactional-id-prefix"] = transactional_id_prefix
        # The connector's default (1 h) exceeds the broker's transaction.max.timeout.ms (15 min).
        options["properties.transaction.timeout.ms"] = str(transaction_timeout_ms)
    real, masked = _with(options)
    head = (
        f"CREATE TABLE `{table}` (\n"
        "  `k` BYTES,\n"
        "  `v` BYTES,\n"
        + ("  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',\n" if timestamp else "")
        + "  `headers` MAP<STRING, BYTES> METADATA\n"
        ") WITH (\n  "
    )
    return Ddl(head + real + "\n)", head + masked + "\n)")
