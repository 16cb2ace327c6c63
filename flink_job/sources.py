"""``KafkaSource``: where a resolver's messages come from. Chalk's parameter names.

Settings not given here come from the source's entry in ``conf/sources.yaml`` (by ``name``),
then from the environment (see :mod:`flink_job.config`). Secrets are wrapped so that they never
show in ``repr``, logs, plans or error messages.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping

from connectors.secret import Secret
from flink_job.errors import ConfigError

__all__ = ["KafkaSource", "Secret"]


_SECRET_FIELDS = (
    "sasl_password",
    "ssl_keystore_password",
    "ssl_truststore_password",
    "ssl_key_password",
)


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
        late_arrival_deadline: a duration (``"30m"``, ``"1h30m"``, ``"2d"``, a ``timedelta``;
            ``"infinity"``: none): messages whose event time (the resolver's ``timestamp=``
            field, else the Kafka record timestamp) is older than this when they arrive are
            skipped and counted (``lateArrivals``), not processed.
        max_message_bytes: messages larger than this go to the dead-letter topic.
        msk_iam_auth, aws_region, aws_role_arn: Chalk's MSK IAM arguments: refused (the
            connector ships no IAM login module); use SASL/SCRAM or SSL instead.
        integration_variable_override: refused: settings come from ``conf/`` and the
            environment here; pass them as arguments instead.
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
    late_arrival_deadline: str | datetime.timedelta | None = None
    max_message_bytes: int | None = None
    msk_iam_auth: bool | None = None
    aws_region: str | None = None
    aws_role_arn: str | None = None
    integration_variable_override: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        _refuse_unsupported(self)
        late_arrival_deadline_ms(self)  # fails early on a malformed duration
        for f in _SECRET_FIELDS:
            object.__setattr__(self, f, _secret(getattr(self, f)))
        if self.additional_kafka_args is not None:
            # Values of extra args may hold secrets (sasl.jaas.config): keep them out of repr.
            object.__setattr__(
                self,
                "additional_kafka_args",
                {
                    k: v if isinstance(v, Secret) else Secret(str(v))
                    for k, v in dict(self.additional_kafka_args).items()
                },
            )

    @property
    def label(self) -> str:
        """How messages and errors name this source."""
        return self.name or self.topic or "<unnamed KafkaSource>"

    @property
    def late_arrival_deadline_ms(self) -> int | None:
        """``late_arrival_deadline`` in milliseconds; ``None``: no deadline."""
        return late_arrival_deadline_ms(self)


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_DURATION = re.compile(r"(\d+)([wdhms])")
_UNIT_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}


def late_arrival_deadline_ms(source: KafkaSource) -> int | None:
    """The source's ``late_arrival_deadline`` in ms (Chalk's duration strings, or a timedelta)."""
    value = source.late_arrival_deadline
    if value is None or value in ("infinity", "all"):
        return None
    if isinstance(value, datetime.timedelta) and value > datetime.timedelta(0):
        return value // datetime.timedelta(milliseconds=1)
    if isinstance(value, str) and value and _DURATION.sub("", value) == "":
        ms = sum(int(n) * _UNIT_MS[u] for n, u in _DURATION.findall(value))
        if ms > 0:
            return ms
    raise ConfigError(
        f"source {source.label!r}: late_arrival_deadline={value!r} is not a duration; fix: "
        'e.g. "30m", "1h30m", "2d", a timedelta, or "infinity" for no deadline.',
        field="late_arrival_deadline",
    )


def _refuse_unsupported(s: KafkaSource) -> None:
    """Chalk arguments this connector cannot honour: refused in one line, never ignored."""
    where = f"source {s.label!r}"
    if s.msk_iam_auth or s.aws_region is not None or s.aws_role_arn is not None:
        arg = (
            "msk_iam_auth" if s.msk_iam_auth else ("aws_region" if s.aws_region else "aws_role_arn")
        )
        raise ConfigError(
            f"{where}: {arg}= (MSK IAM authentication) is not supported: the Kafka connector "
            'ships no IAM login module; fix: use SASL/SCRAM (sasl_mechanism="SCRAM-SHA-512") '
            "or SSL client certificates on MSK.",
            field=arg,
        )
    if s.integration_variable_override is not None:
        raise ConfigError(
            f"{where}: integration_variable_override= is not supported; fix: pass the settings "
            "as KafkaSource arguments or in conf/flink-job.toml [sources.<name>].",
            field="integration_variable_override",
        )
    mech = s.sasl_mechanism
    if mech is not None and str(mech).upper() not in SASL_MECHANISMS:
        raise ConfigError(
            f"{where}: sasl_mechanism={mech!r} is not supported (GSSAPI needs a Kerberos "
            "setup, OAUTHBEARER a token callback, neither of which a KafkaSource can "
            f"describe); fix: use one of {', '.join(SASL_MECHANISMS)}, or pass the full client "
            "settings (sasl.mechanism, sasl.jaas.config, ...) in additional_kafka_args.",
            field="sasl_mechanism",
        )
