"""Talk to the brokers from this process: reachability, topics, and plain reads and writes (the
demo's). Uses confluent-kafka."""

from __future__ import annotations

import socket
from collections.abc import Generator, Iterable, Mapping
from typing import Any

from connectors.errors import EnvironmentNotReadyError
from connectors.secret import Secret

__all__ = [
    "check_reachable",
    "client_config",
    "ensure_topics",
    "produce",
    "read_committed",
    "serves_metadata",
]

# Java client property -> librdkafka property, for the settings the admin client needs.
_RENAMES = {
    "ssl.truststore.location": None,  # JKS/PEM truststores: handled below
    "ssl.keystore.location": "ssl.keystore.location",
    "ssl.keystore.password": "ssl.keystore.password",
    "ssl.key.password": "ssl.key.password",
    "security.protocol": "security.protocol",
    "sasl.mechanism": "sasl.mechanisms",
}


def client_config(
    bootstrap_servers: str,
    properties: Mapping[str, str | Secret] | None = None,
    sasl_username: str | None = None,
    sasl_password: Secret | str | None = None,
) -> dict[str, Any]:
    """A librdkafka configuration equivalent to the job's Kafka client properties."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap_servers}
    for k, v in (properties or {}).items():
        value = v.reveal() if isinstance(v, Secret) else v
        if _RENAMES.get(k):
            conf[str(_RENAMES[k])] = value
        elif (
            k == "ssl.truststore.location"
            and str((properties or {}).get("ssl.truststore.type", "")).upper() == "PEM"
        ):
            conf["ssl.ca.location"] = value
    if sasl_username is not None:
        conf["sasl.username"] = sasl_username
    if sasl_password is not None:
        conf["sasl.password"] = (
            sasl_password.reveal() if isinstance(sasl_password, Secret) else sasl_password
        )
    return conf


def check_reachable(bootstrap_servers: str, timeout: float = 3.0) -> None:
    """Raise :class:`EnvironmentNotReadyError` unless some broker accepts a TCP connection."""
    errors = []
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as e:
            errors.append(f"{server}: {e}")
    raise EnvironmentNotReadyError(
        f"Kafka broker unreachable at {bootstrap_servers} ({'; '.join(errors)}); fix: start "
        "the local broker with `flink-job kafka start`, or pass --bootstrap-servers HOST:PORT"
    )


def ensure_topics(
    conf: Mapping[str, Any], topics: Iterable[str], partitions: int = 1, timeout: float = 15.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    errors: list[Any] = []
    try:
        # librdkafka's informational lines (e.g. BGQUEUE when the client is destroyed with
        # events unserved) would reach the CLI's stderr: warnings and errors only.
        admin = AdminClient(
            {"log_level": 4, **conf, "error_cb": errors.append}  # type: ignore[dict-item]
        )
    except KafkaException as e:
        raise EnvironmentNotReadyError(
            f"invalid Kafka client settings for {conf.get('bootstrap.servers')}: "
            f"{e.args[0].str()}; fix: the source's security settings"
        ) from None
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as e:
        # The client's own error callback saw why (e.g. SASL authentication failed); callbacks
        # are served by poll().
        admin.poll(1)
        auth = [err for err in errors if "authentic" in str(err).lower()]
        reason = str(auth[-1].str() if auth else e.args[0])
        raise EnvironmentNotReadyError(
            f"cannot reach Kafka at {conf.get('bootstrap.servers')}: {reason}; fix: check the "
            "broker address and the source's security settings (username, password, protocol)"
        ) from None
    missing = sorted(set(topics) - existing)
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=-1) for t in missing],
        operation_timeout=timeout,
    )
    for topic, fut in futures.items():
        try:
            fut.result(timeout)
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise EnvironmentNotReadyError(f"cannot create topic {topic!r}: {e}") from None
    return missing


def produce(
    conf: Mapping[str, Any], topic: str, values: Iterable[bytes], timeout: float = 30.0
) -> int:
    """Write ``values`` to ``topic`` (no record key) and wait until the broker has them.

    Returns:
        How many records were written.
    """
    from confluent_kafka import Producer

    producer = Producer(dict(conf))
    n = 0
    for value in values:
        producer.produce(topic, value)
        n += 1
    producer.flush(timeout)
    return n


def read_committed(
    conf: Mapping[str, Any], topic: str, group_id: str, poll: float = 1.0
) -> Generator[bytes | None, None, None]:
    """The values of ``topic``'s partition 0 from its start, as ``read_committed`` readers see
    them (rows of an exactly-once job once their checkpoint completed); ``None`` whenever
    nothing arrived within ``poll`` seconds. The consumer closes when the iteration ends."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            **conf,
            "group.id": group_id,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        while True:
            msg = consumer.poll(poll)
            yield None if msg is None or msg.error() else (msg.value() or b"")
    finally:
        consumer.close()


def serves_metadata(bootstrap_servers: str, timeout: float) -> bool | None:
    """Whether the brokers answer a metadata request within ``timeout`` seconds (None: the
    Kafka client library, confluent-kafka, is not installed)."""
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return None
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "socket.timeout.ms": max(1000, int(timeout * 1000)),
        # Connection errors while the broker starts are expected: do not log them.
        "error_cb": lambda _err: None,
        "log_level": 0,
    }
    admin = AdminClient(config)
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception:
        return False
    return bool(md.brokers)
