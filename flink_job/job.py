"""Compile resolvers into a PyFlink job.

Per resolver::

    Kafka table source (key, value, topic, partition, offset, timestamp, headers)
      -> to_data_stream -> key_by(state key: re-key mapping or record key, typed STRING)
      -> keyed operator (state: the state envelope as bytes) -> feature rows
                                          \\-> side output: dead letters
    (thread mode: the batched JVM operator of connectors/java, one Python call per batch;
    process mode or --batch-size 0: PyFlink's per-record KeyedProcessFunction)
    feature rows of every resolver -> one Kafka sink (sink topic)
    dead letters -> a Kafka sink per dead-letter topic

Operator uids derive from resolver names (``<resolver>/source``, ``<resolver>/key``,
``<resolver>/resolve``) and sink topics (``sink/<topic>``), so savepoints survive code changes
that keep the names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import site
import sys
from pathlib import Path
from typing import Any

from pyflink.common import Configuration
from pyflink.common.typeinfo import Types
from pyflink.datastream import DataStream, OutputTag, StreamExecutionEnvironment
from pyflink.datastream.data_stream import KeyedStream
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment, Table

from connectors import jars
from connectors.kafka_tables import sink_table_ddl, source_table_ddl
from flink_job._constants import MAX_MESSAGE_BYTES, RESTART_ATTEMPTS, RESTART_DELAY
from flink_job._keying import json_key_defaults, json_key_path
from flink_job._runtime import FallbackKey, KeyOf, Resolve, ResolverRef
from flink_job._wire import (
    DEAD_LETTERS,
    DEAD_TYPE,
    KEY_TYPE,
    MSG_SQL,
    MSG_TYPE,
    ROW_FIELDS,
    ROW_SQL,
    ROW_TYPE,
    UNKEYABLE,
)
from flink_job.config import (
    JobOptions,
    SourceSettings,
    home,
    job_identity,
    transactional_id_prefix,
)
from flink_job.errors import ConfigError
from flink_job.loader import Loaded, file_digest, load
from flink_job.streams import Resolver

__all__ = [
    "Batching",
    "BuiltJob",
    "batching",
    "build_job",
    "dead_letters",
    "json_key_spec",
    "resolver_ref",
    "resolver_stream",
    "uid",
]


def consumer_ids(settings: SourceSettings, job_name: str, resolver: str) -> tuple[str, str | None]:
    """The consumer group id and client id prefix of ``resolver``'s source.

    Chalk's ``group_id_prefix`` / ``client_id_prefix`` are prefixes: ``<prefix><job>.<resolver>``,
    so two resolvers reading one source never share a consumer group.
    """
    suffix = f"{job_name}.{resolver}"
    group = f"{settings.group_id}{suffix}" if settings.group_id else f"flink-job.{suffix}"
    client = f"{settings.client_id_prefix}{suffix}" if settings.client_id_prefix else None
    return group, client


def uid(*parts: str) -> str:
    """A stable operator uid from names."""
    return "/".join(parts)


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


@dataclasses.dataclass
class BuiltJob:
    """A job ready to execute: its environments and what it reads and writes."""

    env: StreamExecutionEnvironment
    t_env: StreamTableEnvironment
    options: JobOptions
    resolvers: list[Resolver[Any, Any]]
    sources: dict[str, SourceSettings]  # resolver name -> its source
    sink_topics: list[str]  # the feature topic first, then dead-letter topics
    name: str = ""  # what the job runs under (config.job_identity)

    def plan(self) -> str:
        """The execution plan JSON (``env.get_execution_plan()``)."""
        return str(self.env.get_execution_plan())


def _site_packages() -> list[str]:
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


def flink_configuration(options: JobOptions, cluster: bool = False) -> Configuration:
    """The Flink configuration for ``options``.

    Local runs (MiniCluster, ``cluster=False``) use this process's Python, site-packages,
    checkpoint directory and connector jar. A job for a cluster (``cluster=True``) carries no
    path of this machine: the cluster's own ``python.executable`` and
    ``execution.checkpointing.dir`` apply unless ``options`` set them, and the code and jars
    travel with the job (:mod:`flink_job.package`).
    """
    config = Configuration()
    config.set_string("python.execution-mode", options.execution_mode)
    if not cluster:
        # Workers must run this venv's python, or they cannot import pyflink (or the resolvers).
        python = options.python_executable or sys.executable
        config.set_string("python.executable", python)
        config.set_string("python.client.executable", sys.executable)
        # Thread mode embeds libpython in the JVM; it does not read the venv's pyvenv.cfg, so
        # the venv's site-packages must be put on its path explicitly.
        config.set_string("python.pythonpath", os.pathsep.join(_site_packages()))
        config.set_string("pipeline.jars", ";".join(j.as_uri() for j in jars.job_jars(home())))
    elif options.python_executable:
        config.set_string("python.executable", options.python_executable)
    config.set_string("execution.checkpointing.interval", f"{options.checkpoint_interval_ms} ms")
    config.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    if not cluster or options.checkpoint_dir:
        config.set_string("execution.checkpointing.dir", options.checkpoint_path().as_uri())
    config.set_string(
        "execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION"
    )
    config.set_string("state.backend.type", options.state_backend)
    if options.state_backend == "rocksdb":
        # Every batch reads the state of each of its keys once, and a key's first message
        # reads a key that does not exist yet. Without a Bloom filter such a miss reads
        # blocks of every file whose key range may hold the key; with one, most misses end
        # at the filter. At 1M keys (a new key per event) this cut the keyed thread's state
        # work per event by about 40%, and at 1k keys changed nothing: see README ->
        # Benchmarks.
        # Filters are per file: state written without them restores and reads as before.
        config.set_string("state.backend.rocksdb.use-bloom-filter", "true")
    config.set_string("pipeline.max-parallelism", str(options.max_parallelism))
    config.set_string("restart-strategy.type", "fixed-delay")
    config.set_string("restart-strategy.fixed-delay.attempts", str(RESTART_ATTEMPTS))
    config.set_string("restart-strategy.fixed-delay.delay", RESTART_DELAY)
    if options.from_savepoint:
        config.set_string("execution.state-recovery.path", options.from_savepoint)
        config.set_string(
            "execution.state-recovery.ignore-unclaimed-state",
            str(options.allow_non_restored_state).lower(),
        )
    config.set_string("pipeline.name", options.job_name)
    # Chained operators hand records on without a deep copy (Flink SQL's runtime operators are
    # written for this; every operator of the job emits a new object per record, and the only
    # one that keeps records, the batched keyed operator, reads them from the network, never
    # from a chained operator). Saves a copy of every row (with its headers map) per chained
    # SQL stage: see README -> Benchmarks.
    config.set_string("pipeline.object-reuse", "true")
    return config


def build_job(
    target: str | Loaded,
    options: JobOptions,
    env: StreamExecutionEnvironment | None = None,
    resolvers: list[Resolver[Any, Any]] | None = None,
) -> BuiltJob:
    """Build the job for the resolvers of ``target``: a .py file or a module name (loaded
    here, with its sources resolved; ``resolvers`` picks some of them), or what
    ``launch.prepare`` already loaded and resolved."""
    loaded = target if isinstance(target, Loaded) else load(target, options, resolvers)
    module, resolvers, sources = loaded.module, loaded.resolvers, loaded.sources
    file = loaded.file

    if env is None:
        env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(options))
    env.set_parallelism(options.parallelism)
    env.set_max_parallelism(options.max_parallelism)
    name = job_identity(options.job_name, module.__name__)
    if file:
        env.add_python_file(file)
    t_env = StreamTableEnvironment.create(env)

    rows: list[Table] = []
    dead: dict[str, list[DataStream]] = {}
    for r in resolvers:
        settings = sources[r.name]
        ref = resolver_ref(
            r,
            module.__name__,
            file,
            options.execution_mode,
            settings.max_message_bytes,
            settings.topic,
        )
        table = f"src_{_ident(r.name)}"
        group_id, client_id = consumer_ids(settings, name, r.name)
        ddl = source_table_ddl(table, settings, group_id, options.starting_offsets, client_id)
        t_env.execute_sql(ddl.sql)
        out = resolver_stream(t_env, table, ref, batching(options))
        _set_source_uid(out, uid(r.name, "source"))
        # The `resolver` header is a constant: added here, on the JVM, not per row in Python.
        t_env.create_temporary_view(f"rows_{_ident(r.name)}", t_env.from_data_stream(out))
        rows.append(
            t_env.sql_query(
                f"SELECT {ROW_SQL}, "
                f"MAP['resolver', CAST({_sql_str(r.name)} AS BYTES)] AS headers "
                f"FROM rows_{_ident(r.name)}"
            )
        )
        dead.setdefault(settings.dead_letter_topic, []).append(dead_letters(out))

    statements = t_env.create_statement_set()
    sink_topics = [options.sink_topic, *dead]
    if options.sink_topic in dead:
        raise ConfigError(
            f"the dead-letter topic and the sink topic are both {options.sink_topic!r}; "
            "fix: choose different topics"
        )
    brokers = options.bootstrap_servers or next(iter(sources.values())).bootstrap_servers
    first_props = next(iter(sources.values())).properties
    outputs: list[tuple[str, Table]] = [(options.sink_topic, _union_all(rows))]
    for topic, streams in dead.items():
        stream = streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]
        outputs.append((topic, t_env.from_data_stream(stream)))
    for topic, output in outputs:
        table = f"sink_{_ident(topic)}"  # not `name`: that is the job's (transactional ids too)
        t_env.execute_sql(
            sink_table_ddl(
                table,
                topic,
                brokers,
                first_props,
                options.delivery,
                transactional_id_prefix=transactional_id_prefix(name, topic),
                transaction_timeout_ms=options.transaction_timeout_ms,
                timestamp=topic == options.sink_topic,
            ).sql
        )
        statements.add_insert(table, output)
    statements.attach_as_datastream()
    _set_sink_uids(env, {f"sink_{_ident(t)}": uid("sink", t) for t in sink_topics})
    return BuiltJob(env, t_env, options, resolvers, sources, sink_topics, name)


def resolver_stream(
    t_env: StreamTableEnvironment, table: str, ref: ResolverRef, batch: Batching | None = None
) -> DataStream:
    """Key and resolve the rows of source ``table`` (k, v, topic, partition, offset, ts,
    headers). Feature rows out; dead letters on ``DEAD_LETTERS`` (see :func:`dead_letters`).

    With ``batch`` (thread mode) the keyed operator is the batched JVM operator
    (:func:`_batched_resolve`), else PyFlink's per-record ``KeyedProcessFunction``
    (:class:`flink_job._runtime.Resolve`). Both keep the same state, uid and outputs.

    When ``ref.keyed_in_java`` a JVM function computes the state key (see
    :func:`_keyed_on_the_jvm` and :mod:`flink_job._keying`) and the keyed operator is the only
    Python operator; otherwise a Python key selector (``<resolver>/key``) computes it.
    """
    if ref.keyed_in_java:
        keyed = _keyed_on_the_jvm(t_env, table, ref)
    else:
        messages = t_env.to_append_stream(
            t_env.sql_query(f"SELECT {MSG_SQL} FROM {table}"), MSG_TYPE
        )
        keyed = messages.key_by(KeyOf(ref), key_type=KEY_TYPE)
        keyed._j_data_stream.getTransformation().getInputs().get(0).setUid(uid(ref.name, "key"))
    if batch is not None:
        return _batched_resolve(keyed, ref, batch)
    return (
        keyed.process(Resolve(ref), output_type=ROW_TYPE)
        .name(f"resolve {ref.name}")
        .uid(uid(ref.name, "resolve"))
    )


def _keyed_on_the_jvm(t_env: StreamTableEnvironment, table: str, ref: ResolverRef) -> KeyedStream:
    """Key by the string at the key path, on the JVM, exactly as Python would key.

    One SQL projection builds the message tuple (as for Python keying); the JVM function
    ``flinkjob.operators.JsonStateKey`` (``connectors/java``) reads each message once with
    Jackson and gives its state key: the string at the path (``state_key``-escaped; the
    last of duplicate members, as pydantic reads them), the default's key when a member on
    the path is absent, and UNKEYABLE only for a message pydantic refuses anyway (no value,
    over the size limit, not an object, null or no string on the path, a lone surrogate).
    What Jackson cannot read goes to Python (FallbackKey), which decides.
    """
    messages = t_env.to_append_stream(t_env.sql_query(f"SELECT {MSG_SQL} FROM {table}"), MSG_TYPE)
    spec = json_key_spec(ref)
    jvm = _operators_jvm(messages._j_data_stream)
    fallback_tag = OutputTag(f"flink-job-key-fallback-{ref.name}", MSG_TYPE)
    j_fallback = fallback_tag.get_java_output_tag()
    keyed_type = Types.ROW_NAMED(["state_key", "msg"], [KEY_TYPE, MSG_TYPE])
    j_keyed = (
        messages._j_data_stream.process(
            jvm.flinkjob.operators.JsonStateKey(spec, j_fallback),
            keyed_type.get_java_type_info(),
        )
        .name(f"key {ref.name}")
        .uid(uid(ref.name, "key-jvm"))
    )
    on_jvm = DataStream(j_keyed)
    in_python = (
        DataStream(j_keyed.getSideOutput(j_fallback))
        .map(FallbackKey(ref), output_type=keyed_type)
        .name(f"key {ref.name} (fallback)")
        .uid(uid(ref.name, "key-fallback"))
    )
    with_key = on_jvm.union(in_python)
    # What DataStream.key_by builds after its Python AddKey operator: key by field 0 of
    # Row(key, message); the keyed Python operator gets the message and the key.
    j_with_key = with_key._j_data_stream.keyBy(
        get_gateway().jvm.KeyByKeySelector(), Types.ROW([KEY_TYPE]).get_java_type_info()
    )
    return KeyedStream(j_with_key, MSG_TYPE, with_key)


def json_key_spec(ref: ResolverRef) -> str:
    """What ``flinkjob.operators.JsonStateKey`` is built from: the key path's names, the key
    of a message where each is absent (None: UNKEYABLE), the size limit, and UNKEYABLE."""
    assert ref.json_key_path is not None
    return json.dumps(
        {
            "path": ref.json_key_path.removeprefix("$.").split("."),
            "defaults": [key for _, key in ref.json_key_defaults],
            "limit": ref.max_message_bytes or MAX_MESSAGE_BYTES,
            "unkeyable": UNKEYABLE,
        }
    )


# -- the batched keyed operator (thread mode; flink_job._batch, connectors/java) -------------
BATCHED_OPERATOR = "flinkjob.operators.BatchedResolveOperator"


@dataclasses.dataclass(frozen=True)
class Batching:
    """How the batched operator batches: at most ``size`` records per Python call, and no
    record waits longer than ``time_ms`` for its batch; ``python_thread``: Python runs on a
    thread of its own, overlapping the task thread's work on the next and previous batch."""

    size: int
    time_ms: int
    python_thread: bool = False


def batching(options: JobOptions) -> Batching | None:
    """The batching for ``options``: thread mode with ``batch_size`` > 0; None means PyFlink's
    per-record operator (always in process mode)."""
    if options.execution_mode != "thread" or options.batch_size <= 0:
        return None
    return Batching(options.batch_size, options.batch_time_ms, options.batch_python_thread)


def _ships_operators_jar(pipeline_jars: str) -> bool:
    """Whether ``pipeline.jars`` (``;``-separated URIs) already holds the operators jar (then
    env.add_jars put it on the client's class loader too)."""
    names = (uri.rstrip("/").rsplit("/", 1)[-1] for uri in pipeline_jars.split(";") if uri)
    return any(n.startswith("flink-job-operators-") and n.endswith(".jar") for n in names)


def _operators_jvm(j_stream: Any) -> Any:
    """The JVM view, with the job's operators jar (connectors/java) loadable by the client."""
    from pyflink.util.java_utils import add_jars_to_context_class_loader, get_j_env_configuration

    config = get_j_env_configuration(j_stream.getExecutionEnvironment())
    if not _ships_operators_jar(str(config.toMap().get("pipeline.jars") or "")):
        # A packaged job (flink_job.entry) ships the artifact's copy and has no build/ here.
        add_jars_to_context_class_loader([jars.operators_jar(home()).as_uri()])
    return get_gateway().jvm


def _batched_resolve(keyed: KeyedStream, ref: ResolverRef, batch: Batching) -> DataStream:
    from pyflink.util.java_utils import get_j_env_configuration

    j_stream = keyed._j_data_stream
    jvm = _operators_jvm(j_stream)
    config = jvm.org.apache.flink.configuration.Configuration(
        get_j_env_configuration(j_stream.getExecutionEnvironment())
    )
    spec = json.dumps(dataclasses.asdict(ref)).encode()
    operator = jvm.flinkjob.operators.BatchedResolveOperator(
        config,
        spec,
        DEAD_LETTERS.tag_id,
        DEAD_TYPE.get_java_type_info(),
        batch.size,
        batch.time_ms,
        len(ROW_FIELDS),
        batch.python_thread,
    )
    out = DataStream(
        j_stream.transform(f"resolve {ref.name}", ROW_TYPE.get_java_type_info(), operator)
    )
    return out.name(f"resolve {ref.name}").uid(uid(ref.name, "resolve"))


def dead_letters(out: DataStream) -> DataStream:
    """The dead letters of a resolver stream from :func:`resolver_stream`. The batched operator
    emits them as Java rows already: no Python identity map (what ``get_side_output`` adds)."""
    j_out = out._j_data_stream
    factory = j_out.getTransformation().getOperatorFactory()
    operator = factory.getOperator() if hasattr(factory, "getOperator") else None
    if operator is not None and operator.getClass().getName() == BATCHED_OPERATOR:
        return DataStream(j_out.getSideOutput(DEAD_LETTERS.get_java_output_tag()))
    return out.get_side_output(DEAD_LETTERS)


def resolver_ref(
    r: Resolver[Any, Any],
    module: str,
    file: str | None,
    execution_mode: str,
    max_message_bytes: int | None = None,
    topic: str = "",
) -> ResolverRef:
    """How workers find ``r`` (its module's name, file and content digest), and how its
    messages are keyed."""
    loaded = sys.modules.get(module)
    source = file or getattr(loaded, "__file__", None)
    digest = file_digest(Path(source)) if source and Path(source).is_file() else None
    path = json_key_path(r)
    defaults = json_key_defaults(r) if path else ()
    return ResolverRef(
        module,
        file,
        r.name,
        max_message_bytes,
        execution_mode,
        topic,
        path,
        defaults,
        digest=digest,
    )


def _union_all(tables: list[Table]) -> Table:
    out = tables[0]
    for t in tables[1:]:
        out = out.union_all(t)
    return out


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _set_source_uid(ds: DataStream, value: str) -> None:
    """Give the table source (found upstream of the conversion) a stable uid."""
    pending = [ds._j_data_stream.getTransformation()]
    while pending:
        t = pending.pop()
        if "Source" in t.getClass().getSimpleName():
            t.setUid(value)
            return
        pending.extend(t.getInputs())
    raise RuntimeError("no source transformation found upstream of the Kafka table")


def _set_sink_uids(env: StreamExecutionEnvironment, uids: dict[str, str]) -> None:
    for t in env._j_stream_execution_environment.getTransformations():
        name = str(t.getName())
        for table, value in uids.items():
            if table in name and "Sink" in t.getClass().getSimpleName():
                t.setUid(value)
