"""``KafkaSource``: where a resolver's messages come from. Chalk's parameter names.

Settings not given here come from the source's entry in ``conf/sources.yaml`` (by ``name``),
then from the environment (see :mod:`flink_job.config`). Secrets are wrapped so that they never
show in ``repr``, logs, plans or error messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["KafkaSource", "Secret"]


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``'****'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the Kafka client configuration only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


_SECRET_FIELDS = ("sasl_password", "ssl_keystore_password", "ssl_truststore_password",
                  "ssl_key_password")  # fmt: skip


def _secret(value: str | Secret | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


@dataclasses.dataclass(frozen=True, eq=True)
class KafkaSource:
    """A Kafka topic that stream resolvers read.

    Args:
        name: the source's name; its entry in ``conf/sources.yaml``; default topic.
        bootstrap_server: broker list, a string or a list of ``host:port``.
        topic: the topic (default: ``name``).
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``.
        sasl_username: SASL user.
        sasl_password: SASL password (never logged).
        ssl_keystore_location: keystore file for SSL client authentication.
        ssl_keystore_password: its password (never logged).
        ssl_truststore_location: truststore file (the CA).
        ssl_truststore_password: its password (never logged).
        ssl_key_password: the key's password (never logged).
        ssl_ca_file: CA file in PEM (``ssl.truststore.type=PEM``).
        client_id_prefix: prefix of the Kafka client id.
        group_id_prefix: consumer group (prefix); default ``flink-job-<job name>``.
        additional_kafka_args: any other Kafka client properties.
        dead_letter_queue_topic: where this source's bad messages go (default: job-wide).
        late_arrival_deadline: accepted for Chalk compatibility; not used by the job.
        max_message_bytes: messages larger than this go to the dead-letter topic.
    """

    name: str | None = None
    bootstrap_server: str | list[str] | None = None
    topic: str | None = None
    security_protocol: str | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | str | None = dataclasses.field(default=None, repr=False)
    ssl_keystore_location: str | None = None
    ssl_keystore_password: Secret | str | None = dataclasses.field(default=None, repr=False)
    ssl_truststore_location: str | None = None
    ssl_truststore_password: Secret | str | None = dataclasses.field(default=None, repr=False)
    ssl_key_password: Secret | str | None = dataclasses.field(default=None, repr=False)
    ssl_ca_file: str | None = None
    client_id_prefix: str | None = None
    group_id_prefix: str | None = None
    additional_kafka_args: Mapping[str, str] | None = dataclasses.field(default=None, repr=False)
    dead_letter_queue_topic: str | None = None
    late_arrival_deadline: str | None = None
    max_message_bytes: int | None = None

    def __post_init__(self) -> None:
        for f in _SECRET_FIELDS:
            object.__setattr__(self, f, _secret(getattr(self, f)))
        if self.additional_kafka_args is not None:
            # Values of extra args may hold secrets (sasl.jaas.config): keep them out of repr.
            object.__setattr__(
                self,
                "additional_kafka_args",
                {k: v if isinstance(v, Secret) else Secret(str(v))
                 for k, v in dict(self.additional_kafka_args).items()},
            )  # fmt: skip

    @property
    def label(self) -> str:
        """How messages and errors name this source."""
        return self.name or self.topic or "<unnamed KafkaSource>"
