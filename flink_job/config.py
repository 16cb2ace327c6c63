"""Configuration: ``conf/flink-job.toml``, environment overrides, and per-source resolution.

Precedence, highest first: CLI flags / ``JobOptions`` arguments, ``KafkaSource`` arguments,
``FLINK_JOB_*`` environment variables, ``conf/flink-job.toml``, built-in defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from connectors.client import DEFAULT_BOOTSTRAP_SERVERS, SourceSettings, client_properties
from connectors.jars import CHECKOUT, ENV_HOME, INSTALLED, Home
from flink_job._constants import MAX_MESSAGE_BYTES
from flink_job.errors import ConfigError
from flink_job.sources import KafkaSource, Secret

__all__ = [
    "JobOptions",
    "SourceSettings",
    "check_source_names",
    "duration_ms",
    "home",
    "load_conf",
    "project_root",
    "resolve_source",
    "run_dir",
]

DELIVERY_MODES = ("exactly-once", "at-least-once")
EXECUTION_MODES = ("thread", "process")
STARTING_OFFSETS = ("committed", "earliest", "latest")
STATE_BACKENDS = ("hashmap", "rocksdb")

# Flink's duration units (org.apache.flink.util.TimeUtils); a bare number is milliseconds.
_DURATION_UNITS_MS = {
    **dict.fromkeys(("ms", "milli", "millis", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1000),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hour", "hours"), 3_600_000),
    **dict.fromkeys(("d", "day", "days"), 86_400_000),
}


def duration_ms(value: str | int, field: str = "checkpoint_interval") -> int:
    """Milliseconds from a Flink duration (``2s``, ``500 ms``, ``1 min``) or a number of ms.

    Raises:
        ConfigError: ``value`` is neither.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in _DURATION_UNITS_MS):
        raise ConfigError(
            f"{field} is {value!r}; fix: a number of milliseconds or a Flink duration such "
            "as 2s, 500 ms, 1 min",
            field=field,
        )
    return int(match.group(1)) * _DURATION_UNITS_MS[unit or "ms"]


def project_root() -> Path:
    """Where ``conf/`` and ``build/jars/`` are: ``FLINK_JOB_HOME`` if set, else this checkout,
    else the installed package's data (``flink_job/_home``, put into the wheel by
    ``setup.py`` with ``conf/`` and the Kafka connector jar)."""
    return home()[0]


def home() -> Home:
    """:func:`project_root` and where it came from (for error messages; :data:`INSTALLED`
    for an installed package)."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve(), ENV_HOME
    package = Path(__file__).resolve().parent
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf").is_dir():
        return checkout, CHECKOUT
    return package / "_home", INSTALLED


def run_dir() -> Path:
    """Where local runs write (logs, default checkpoints, the local broker and cluster):
    ``.run`` in a checkout or ``FLINK_JOB_HOME``; for an installed package
    ``$XDG_STATE_HOME/flink-job`` (default ``~/.local/state/flink-job``)."""
    root, origin = home()
    if origin == INSTALLED:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state) / "flink-job"
    return root / ".run"


def conf_path() -> Path:
    return Path(os.environ.get("FLINK_JOB_CONF", project_root() / "conf" / "flink-job.toml"))


def load_conf() -> dict[str, Any]:
    """The parsed ``flink-job.toml`` (empty if the file does not exist)."""
    path = conf_path()
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}; fix the file") from None


DEFAULT_JOB_NAME = "flink-job"


def job_identity(job_name: str, module: str) -> str:
    """The name a job runs under, which also names its Kafka consumer groups
    (``flink_job.job.consumer_ids``) and transactional ids: the job name, or - for the
    default name - the default name plus the
    resolver module, so two jobs on defaults never share a consumer group or a transactional
    id (a fenced producer is taken as committed by the connector: data loss)."""
    return f"{job_name}.{module}" if job_name == DEFAULT_JOB_NAME else job_name


def transactional_id_prefix(identity: str, topic: str) -> str:
    """The transactional id prefix of the job's exactly-once sink writing ``topic``."""
    return f"{identity}.{topic}"


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """How to build and run the job. ``from_conf`` fills unset values from conf/env."""

    job_name: str = DEFAULT_JOB_NAME
    bootstrap_servers: str | None = None  # overrides every source's brokers (--bootstrap-servers)
    sink_topic: str = "features"
    dead_letter_topic: str = "dead-letters"
    delivery: str = "exactly-once"
    parallelism: int = 1
    checkpoint_interval_ms: int = 5000
    execution_mode: str = "thread"
    starting_offsets: str = "committed"
    state_backend: str = "hashmap"
    checkpoint_dir: str | None = None
    from_savepoint: str | None = None
    allow_non_restored_state: bool = False
    max_message_bytes: int = MAX_MESSAGE_BYTES
    transaction_timeout_ms: int = 900_000
    # Thread mode: records per Python call of the batched keyed operator (0: one call per
    # record, PyFlink's KeyedProcessFunction) and how long a record may wait for its batch.
    batch_size: int = 1000
    batch_time_ms: int = 20
    # Thread mode's batched operator: Python on a thread of its own, overlapping the task
    # thread's work (input, state, the sink). For TaskManagers with a core to spare; on the
    # 2-core benchmark machine it gained nothing (README, "Seventh round").
    batch_python_thread: bool = False
    default_bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    environment: str | None = None  # --environment: resolvers with environment= run only there
    # A fixed property of a job's state: savepoints restore at any parallelism up to it, and
    # it cannot change without losing the state's key-group layout. Flink's default derives
    # it from the parallelism, so a later scale-up could change it; here it is explicit.
    max_parallelism: int = 128
    # The cluster's Python for the job (python.executable); None: the cluster's own setting.
    python_executable: str | None = None

    @classmethod
    def from_conf(cls, **overrides: Any) -> JobOptions:
        """Options from conf/ and environment, with ``overrides`` (None values ignored) on top."""
        conf = load_conf()
        job = dict(conf.get("job", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(job) - known
        if unknown:
            raise ConfigError(
                f"{conf_path()}: unknown [job] keys: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {**job}
        kafka = conf.get("kafka", {})
        values["default_bootstrap_servers"] = os.environ.get(
            "FLINK_JOB_KAFKA_BOOTSTRAP_SERVERS",
            kafka.get("bootstrap_servers", DEFAULT_BOOTSTRAP_SERVERS),
        )
        for key in (
            "sink_topic",
            "dead_letter_topic",
            "delivery",
            "execution_mode",
            "state_backend",
            "checkpoint_dir",
        ):
            env = os.environ.get(f"FLINK_JOB_{key.upper()}")
            if env:
                values[key] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "checkpoint_interval_ms" in values:
            values["checkpoint_interval_ms"] = duration_ms(values["checkpoint_interval_ms"])
        opts = cls(**values)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values the job cannot run with."""

        def one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise ConfigError(
                    f"{name} is {value!r}; fix: use one of {', '.join(allowed)}", field=name
                )

        one_of("delivery", self.delivery, DELIVERY_MODES)
        one_of("execution_mode", self.execution_mode, EXECUTION_MODES)
        one_of("starting_offsets", self.starting_offsets, STARTING_OFFSETS)
        one_of("state_backend", self.state_backend, STATE_BACKENDS)
        if self.parallelism < 1:
            raise ConfigError(f"parallelism is {self.parallelism}; fix: use 1 or more")
        if self.batch_size < 0:
            raise ConfigError(
                f"batch_size is {self.batch_size}; fix: use 0 (one Python call per record) or "
                "more records per call",
                field="batch_size",
            )
        if self.batch_time_ms < 1:
            raise ConfigError(
                f"batch_time_ms is {self.batch_time_ms}; fix: use 1 ms or more",
                field="batch_time_ms",
            )
        if not 1 <= self.max_parallelism <= 32768:
            raise ConfigError(
                f"max_parallelism is {self.max_parallelism}; fix: use 1..32768 (default 128)",
                field="max_parallelism",
            )
        if self.parallelism > self.max_parallelism:
            raise ConfigError(
                f"parallelism {self.parallelism} is above max_parallelism "
                f"{self.max_parallelism}; fix: lower --parallelism (max_parallelism is fixed for "
                "a job's state: savepoints restore only up to the value they were taken with)",
                field="parallelism",
            )
        if self.checkpoint_interval_ms < 100:
            raise ConfigError(
                f"checkpoint interval is {self.checkpoint_interval_ms} ms; fix: use >= 100 ms",
                field="checkpoint_interval_ms",
            )
        if not self.sink_topic:
            raise ConfigError("sink topic is empty; fix: --sink-topic features")
        if (
            self.delivery == "exactly-once"
            and self.transaction_timeout_ms < 2 * self.checkpoint_interval_ms + 60_000
        ):
            raise ConfigError(
                f"transaction_timeout_ms ({self.transaction_timeout_ms}) is too small for a "
                f"checkpoint interval of {self.checkpoint_interval_ms} ms: transactions would "
                "expire before they commit. Fix: raise transaction_timeout_ms (<= the broker's "
                "transaction.max.timeout.ms) or lower --checkpoint-interval.",
                field="transaction_timeout_ms",
            )

    def checkpoint_path(self) -> Path:
        if not self.checkpoint_dir:
            return run_dir() / "checkpoints"
        path = Path(self.checkpoint_dir)
        return path if path.is_absolute() else project_root() / path


_SOURCE_KEYS = {f.name for f in dataclasses.fields(KafkaSource)} - {"name"}
_SSL_STORES = tuple(k for k in sorted(_SOURCE_KEYS) if k.startswith("ssl_") and k != "ssl_ca_file")


def resolve_source(source: KafkaSource, options: JobOptions) -> SourceSettings:
    """Merge a source's arguments with its ``[sources.<name>]`` entry, env and job options."""
    conf = load_conf().get("sources", {})
    entry: dict[str, Any] = dict(conf.get(source.name, {})) if source.name else {}
    unknown = set(entry) - _SOURCE_KEYS
    if unknown:
        raise ConfigError(
            f"{conf_path()}: [sources.{source.name}] has unknown keys "
            f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(_SOURCE_KEYS))}",
            field=sorted(unknown)[0],
        )
    given = {k: getattr(source, k) for k in _SOURCE_KEYS if getattr(source, k) is not None}
    merged = KafkaSource(name=source.name, **{**entry, **given})
    topic = merged.topic or merged.name
    if not topic:
        raise ConfigError(
            f"source {source.label!r} has no topic; fix: KafkaSource(name=..., topic=...) or "
            f"a [sources.{source.name}] topic in {conf_path()}",
            field="topic",
        )
    brokers: Any = options.bootstrap_servers or merged.bootstrap_server
    if brokers is None:
        brokers = options.default_bootstrap_servers
    if isinstance(brokers, list | tuple):
        brokers = ",".join(brokers)
    has_password = isinstance(merged.sasl_password, Secret) and merged.sasl_password.reveal()
    if bool(merged.sasl_username) != bool(has_password):
        missing = "sasl_password" if merged.sasl_username else "sasl_username"
        raise ConfigError(
            f"source {source.label!r} sets only one of sasl_username and sasl_password; fix: "
            f"set {missing} (a KafkaSource argument or [sources.{source.name}] in {conf_path()})",
            field=missing,
        )
    props = client_properties(
        security_protocol=merged.security_protocol,
        sasl_mechanism=merged.sasl_mechanism,
        sasl_username=merged.sasl_username,
        sasl_password=merged.sasl_password if isinstance(merged.sasl_password, Secret) else None,
        ssl={attr: getattr(merged, attr) for attr in _SSL_STORES},
        ssl_ca_file=merged.ssl_ca_file,
        additional=merged.additional_kafka_args,
    )
    return SourceSettings(
        label=source.label,
        topic=topic,
        bootstrap_servers=str(brokers),
        properties=props,
        dead_letter_topic=merged.dead_letter_queue_topic or options.dead_letter_topic,
        group_id=merged.group_id_prefix,
        max_message_bytes=merged.max_message_bytes or options.max_message_bytes,
        client_id_prefix=merged.client_id_prefix,
    )


def check_source_names(sources: dict[str, KafkaSource]) -> None:
    """Catch a ``[sources.<name>]`` entry that names no source of the job while a source with a
    similar name has no entry (a typo that would silently read the wrong topic).

    ``sources`` maps resolver name -> its source. A source named in code with neither an entry
    nor ``topic=`` reads the topic of its name (the documented default), so only entries close
    to such a name are reported; entries for other modules sharing the file are left alone.
    """
    conf = load_conf().get("sources", {})
    used = {s.name for s in sources.values() if s.name}
    defaulted = {
        s.name: r for r, s in sources.items() if s.name and s.topic is None and s.name not in conf
    }
    for entry in sorted(set(conf) - used):
        near = difflib.get_close_matches(entry, list(defaulted), n=1, cutoff=0.75)
        if near:
            raise ConfigError(
                f"unknown source name {entry!r} in {conf_path()}: [sources.{entry}] names no "
                f"source of this job, and resolver {defaulted[near[0]]!r} reads "
                f"KafkaSource(name={near[0]!r}), which has no entry, so it would read topic "
                f"{near[0]!r}. Fix: rename [sources.{entry}] to [sources.{near[0]}] (sources of "
                f"this job: {', '.join(sorted(used))})",
                resolver=defaulted[near[0]],
                field="name",
            )
