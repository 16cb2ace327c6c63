"""Kafka client settings: a source's effective connection and its Java client properties.

The mapping from Chalk's ``KafkaSource`` arguments to Kafka client properties (security
protocol, SASL with its JAAS line, SSL stores) lives here; :mod:`flink_job.config` decides
which arguments apply (code, ``conf/``, environment) and hands them in.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from connectors.secret import Secret

__all__ = ["DEFAULT_BOOTSTRAP_SERVERS", "SourceSettings", "client_properties"]

# The local broker's listener (conf/kafka/server.properties) and every job's default.
DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"

# flink-sql-connector-kafka shades kafka-clients: the login modules live under its relocated
# package, and the unshaded names fail with "No LoginModule found".
_SHADED = "org.apache.flink.kafka.shaded."
_SCRAM = _SHADED + "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN = _SHADED + "org.apache.kafka.common.security.plain.PlainLoginModule"

# KafkaSource argument -> Java client property, for the SSL stores.
_SSL = (
    ("ssl_keystore_location", "ssl.keystore.location"),
    ("ssl_keystore_password", "ssl.keystore.password"),
    ("ssl_truststore_location", "ssl.truststore.location"),
    ("ssl_truststore_password", "ssl.truststore.password"),
    ("ssl_key_password", "ssl.key.password"),
)


@dataclasses.dataclass(frozen=True)
class SourceSettings:
    """A source's effective connection: topic, brokers, client properties (may hold secrets)."""

    label: str
    topic: str
    bootstrap_servers: str
    properties: dict[str, str | Secret]
    dead_letter_topic: str
    group_id: str | None  # group_id_prefix
    max_message_bytes: int
    client_id_prefix: str | None = None

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.properties.items() if not isinstance(v, Secret)}
        return (
            f"SourceSettings(topic={self.topic!r}, bootstrap_servers={self.bootstrap_servers!r},"
            f" properties={shown!r}, dead_letter_topic={self.dead_letter_topic!r})"
        )


def client_properties(
    *,
    security_protocol: str | None = None,
    sasl_mechanism: str | None = None,
    sasl_username: str | None = None,
    sasl_password: Secret | None = None,
    ssl: Mapping[str, str | Secret | None] | None = None,
    ssl_ca_file: str | None = None,
    additional: Mapping[str, str | Secret] | None = None,
) -> dict[str, str | Secret]:
    """Java Kafka client properties for Chalk's ``KafkaSource`` connection arguments.

    Args:
        security_protocol, sasl_mechanism, sasl_username, sasl_password, ssl_ca_file: as
            ``KafkaSource``'s (a username or password turns on a JAAS login, PLAIN unless the
            mechanism is SCRAM).
        ssl: ``KafkaSource``'s ``ssl_*`` store arguments by name (``ssl_keystore_location``...).
        additional: ``additional_kafka_args``, passed as they are (last, so they win).

    Returns:
        The properties; the passwords and the JAAS line stay :class:`Secret`.
    """
    props: dict[str, str | Secret] = {}
    if security_protocol:
        props["security.protocol"] = security_protocol
    if sasl_mechanism:
        props["sasl.mechanism"] = sasl_mechanism
    if sasl_username is not None or sasl_password is not None:
        module = _SCRAM if (sasl_mechanism or "PLAIN").upper().startswith("SCRAM") else _PLAIN
        pw = sasl_password.reveal() if sasl_password is not None else ""
        props["sasl.jaas.config"] = Secret(
            f'{module} required username="{_jaas_escape(sasl_username or "")}" '
            f'password="{_jaas_escape(pw)}";'
        )
    for attr, prop in _SSL:
        value = (ssl or {}).get(attr)
        if value is not None:
            props[prop] = value
    if ssl_ca_file:
        props["ssl.truststore.location"] = ssl_ca_file
        props["ssl.truststore.type"] = "PEM"
    for k, v in (additional or {}).items():
        props[str(k)] = v
    return props


def _jaas_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')
