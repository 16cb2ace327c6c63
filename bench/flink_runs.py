"""One benchmark run on a Flink MiniCluster, in a fresh process (one JVM per run).

    python -m bench.flink_runs VARIANT N KEYS   -> prints a JSON line {"seconds": ..., ...}

Variants: ``project`` (this project's compiled resolver: the same SQL projection, keying and
keyed operator the job builds after its Kafka table; thread mode's batched operator),
``project-per-record`` (the same with PyFlink's per-record KeyedProcessFunction, as before
batching), ``project-pykey`` (the same with the
Python key selector, the general keying path), ``baseline-thread`` / ``baseline-process`` (a
hand-written KeyedProcessFunction with a pickled ValueState, as one would write it in PyFlink),
``baseline-value-only-thread|process`` (the same reading only the value, as a string: no
dead-letter provenance), ``project-generated`` (``project`` on events generated on the JVM,
for the growth runs), ``project-process``, and ``floor`` (a keyed operator that does
nothing: the engine's own per-record cost with this source).
The source is an in-memory collection of the same JSON bytes for every variant, as rows with
the Kafka table's columns (the value-only baselines get the value text); the sink discards.
After a warm-up job, the same job runs on N and on 3N events in one JVM; the rate is
2N / (t(3N) - t(N)), which cancels job startup and teardown.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _env(mode: str):  # type: ignore[no-untyped-def]
    import os

    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment

    from flink_job.config import JobOptions
    from flink_job.job import flink_configuration

    # FLINK_JOB_BENCH_BACKEND=rocksdb|hashmap: the state backend (default: the job's default).
    backend = os.environ.get("FLINK_JOB_BENCH_BACKEND")
    options = JobOptions(execution_mode=mode, checkpoint_interval_ms=60_000)
    if backend:
        options = dataclasses.replace(options, state_backend=backend)
    config = flink_configuration(options)
    # FLINK_JOB_BENCH_OBJECT_REUSE=false: the job without object reuse (an A/B of that setting).
    reuse = os.environ.get("FLINK_JOB_BENCH_OBJECT_REUSE")
    if reuse:
        config.set_string("pipeline.object-reuse", reuse)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        config.set_string("rest.port", str(s.getsockname()[1]))
    config.set_string("rest.bind-address", "127.0.0.1")
    assert isinstance(config, Configuration)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    env.set_parallelism(1)
    return env


def _batch_options():  # type: ignore[no-untyped-def]
    """JobOptions with the batch settings from FLINK_JOB_BENCH_BATCH=size,ms[,python-thread]
    (else defaults; ``python-thread``: the batched operator's Python on a thread of its own)."""
    import os

    from flink_job.config import JobOptions

    spec = os.environ.get("FLINK_JOB_BENCH_BATCH")
    if not spec:
        return JobOptions()
    size, ms, *where = spec.split(",")
    return JobOptions(
        batch_size=int(size), batch_time_ms=int(ms), batch_python_thread=where == ["python-thread"]
    )


def _source(env, values: list[bytes]):  # type: ignore[no-untyped-def]
    from pyflink.common import Row
    from pyflink.common.typeinfo import Types

    from flink_job._runtime import BYTES

    row_type = Types.ROW_NAMED(
        ["k", "v", "topic", "partition", "offset", "ts", "headers"],
        [
            BYTES,
            BYTES,
            Types.STRING(),
            Types.INT(),
            Types.LONG(),
            Types.LONG(),
            Types.MAP(Types.STRING(), BYTES),
        ],
    )
    rows = [Row(None, v, "bench", 0, i, 0, {}) for i, v in enumerate(values)]
    return env.from_collection(rows, type_info=row_type)


def build(variant: str, values: list[bytes]):  # type: ignore[no-untyped-def]
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ValueStateDescriptor

    mode = "process" if variant.endswith("process") else "thread"

    env = _env(mode)
    src = _source(env, values)
    if variant.startswith("project"):
        from pyflink.table import StreamTableEnvironment

        from bench.workload import track_unique_ips
        from flink_job.job import batching, resolver_ref, resolver_stream

        # Exactly what the job builds after its Kafka table: the same SQL projection, keying
        # and keyed operator, over an in-memory table with the Kafka table's columns.
        # ``project`` is thread mode's default (the batched operator); ``project-per-record``
        # the same with one Python call per record (PyFlink's KeyedProcessFunction).
        t_env = StreamTableEnvironment.create(env)
        t_env.create_temporary_view("bench_raw", t_env.from_data_stream(src))
        # The Kafka table's `ts` is a TIMESTAMP_LTZ(3) (the record timestamp).
        t_env.create_temporary_view(
            "bench_source",
            t_env.sql_query(
                "SELECT k, v, topic, `partition`, `offset`, TO_TIMESTAMP_LTZ(ts, 3) AS ts, "
                "headers FROM bench_raw"
            ),
        )
        ref = resolver_ref(track_unique_ips, "bench.workload", None, mode, None, "bench")
        if variant.startswith("project-pykey"):  # the general path: a Python key selector
            ref = dataclasses.replace(ref, json_key_path=None)
        per_record = "per-record" in variant or mode == "process"
        batch = None if per_record else batching(_batch_options())
        out = resolver_stream(t_env, "bench_source", ref, batch)
    elif variant == "floor":

        class Nothing(KeyedProcessFunction):
            def process_element(self, value, ctx):  # type: ignore[no-untyped-def]
                yield value[1]

        out = src.key_by(lambda r: "k", key_type=Types.STRING()).process(
            Nothing(), output_type=Types.PRIMITIVE_ARRAY(Types.BYTE())
        )
    elif variant.startswith("baseline-value-only"):
        # A hand-written job as users often write it: the record value alone, as a string
        # (no key, headers or offsets, so no dead-letter provenance), keyed by a Python lambda.
        texts = env.from_collection([v.decode() for v in values], type_info=Types.STRING())

        class UniqueText(KeyedProcessFunction):
            def open(self, ctx: RuntimeContext) -> None:
                self.ips = ctx.get_state(ValueStateDescriptor("ips", Types.PICKLED_BYTE_ARRAY()))

            def process_element(self, value, ctx):  # type: ignore[no-untyped-def]
                event = json.loads(value)
                ips = self.ips.value() or set()
                ips.add(event["ip_address"])
                self.ips.update(ips)
                yield json.dumps(
                    {"user.id": event["user_id"], "user.unique_ip_count": len(ips)}
                ).encode()

        out = texts.key_by(lambda t: json.loads(t)["user_id"], key_type=Types.STRING()).process(
            UniqueText(), output_type=Types.PRIMITIVE_ARRAY(Types.BYTE())
        )
    else:

        class Unique(KeyedProcessFunction):  # the hand-written baseline
            def open(self, ctx: RuntimeContext) -> None:
                self.ips = ctx.get_state(ValueStateDescriptor("ips", Types.PICKLED_BYTE_ARRAY()))

            def process_element(self, value, ctx):  # type: ignore[no-untyped-def]
                event = json.loads(value[1])
                ips = self.ips.value() or set()
                ips.add(event["ip_address"])
                self.ips.update(ips)
                yield json.dumps(
                    {"user.id": event["user_id"], "user.unique_ip_count": len(ips)}
                ).encode()

        out = src.key_by(lambda r: json.loads(r[1])["user_id"], key_type=Types.STRING()).process(
            Unique(), output_type=Types.PRIMITIVE_ARRAY(Types.BYTE())
        )
    return _discarding(env, out)


def _discarding(env, out):  # type: ignore[no-untyped-def]
    """End ``out`` in a Java discarding sink: no extra Python operator after the measured one."""
    from pyflink.java_gateway import get_gateway

    discard = get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink()
    out._j_data_stream.sinkTo(discard)
    env.add_python_file(str(ROOT / "bench"))
    return env


def build_generated(count: int, keys: int):  # type: ignore[no-untyped-def]
    """``project`` over events generated on the JVM (datagen + SQL), not an in-memory Python
    collection: for millions of keys, where building the collection is what fails. Every key
    appears once in each ``keys`` events (7919 is a prime not dividing ``keys``)."""
    from pyflink.table import StreamTableEnvironment

    from bench.workload import track_unique_ips
    from flink_job.job import batching, resolver_ref, resolver_stream

    assert keys % 7919, "keys must not be a multiple of 7919"
    env = _env("thread")
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(
        "CREATE TEMPORARY TABLE gen (id BIGINT) WITH ('connector' = 'datagen', "
        "'fields.id.kind' = 'sequence', 'fields.id.start' = '0', "
        f"'fields.id.end' = '{count - 1}')"
    )
    t_env.create_temporary_view(
        "bench_source",
        t_env.sql_query(
            "SELECT CAST(NULL AS BYTES) AS k, CAST(JSON_OBJECT("
            f"'user_id' VALUE CONCAT('user-', CAST(MOD(id * 7919, {keys}) AS STRING)), "
            "'ip_address' VALUE CONCAT('10.0.0.', CAST(MOD(id * 31, 64) AS STRING))) "
            "AS BYTES) AS v, "
            "'bench' AS topic, CAST(0 AS INT) AS `partition`, id AS `offset`, "
            "TO_TIMESTAMP_LTZ(0, 3) AS ts, CAST(NULL AS MAP<STRING, BYTES>) AS headers FROM gen"
        ),
    )
    ref = resolver_ref(track_unique_ips, "bench.workload", None, "thread", None, "bench")
    out = resolver_stream(t_env, "bench_source", ref, batching(_batch_options()))
    return _discarding(env, out)


def process_tree_cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by ``pid`` (default: this process) and all its
    descendants that are still running, from /proc. With the MiniCluster that is the JVM
    (where thread mode's Python runs too) plus this client."""
    import os

    pid = pid or os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        p = pending.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        pending.extend(int(c) for c in children)
    return total


class _TaskThreadCpu:
    """CPU seconds of the keyed operator's task threads (named "resolve ..." by Flink; Linux
    keeps 15 characters of a thread name), sampled from /proc every 20 ms while a job runs:
    the operator's own cost, apart from the source, JIT and GC threads. A thread's last
    <= 20 ms after its final sample are not counted."""

    def __init__(self) -> None:
        import threading

        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import os

        tick = os.sysconf("SC_CLK_TCK")
        for child in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
            for task in Path(f"/proc/{child}/task").glob("*"):
                try:
                    if not (task / "comm").read_text().startswith("resolve"):
                        continue
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                self.seen[f"{child}/{task.name}"] = (int(fields[11]) + int(fields[12])) / tick

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def __enter__(self) -> _TaskThreadCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total(self) -> float:
        return sum(self.seen.values())


def timed(variant: str, values: list[bytes] | tuple[int, int]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (process tree) and CPU seconds of the keyed operator's task
    thread of one job run."""
    env = build_generated(*values) if isinstance(values, tuple) else build(variant, values)
    c0 = process_tree_cpu_s()
    t0 = time.perf_counter()
    with _TaskThreadCpu() as task:
        env.execute(f"bench-{variant}")
    return time.perf_counter() - t0, process_tree_cpu_s() - c0, task.total


def main() -> None:
    variant, n, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sys.path.insert(0, str(ROOT))
    from bench.workload import events

    if variant == "project-generated":
        timed(variant, (100, keys))  # warm-up: JVM, classes, Python imports
        (t1, c1, k1), (t3, c3, k3) = timed(variant, (n, keys)), timed(variant, (3 * n, keys))
    else:
        values = events(3 * n, keys)
        timed(variant, values[:100])
        (t1, c1, k1), (t3, c3, k3) = timed(variant, values[:n]), timed(variant, values)
    rate = 2 * n / max(t3 - t1, 1e-9)
    # CPU per event counts only this run's own work, so it holds on a shared, busy machine
    # where wall-clock rates do not.
    cpu_us = (c3 - c1) / (2 * n) * 1e6
    task_us = (k3 - k1) / (2 * n) * 1e6  # the keyed task thread (its startup cancels out)
    print(
        json.dumps(
            {
                "variant": variant,
                "n": n,
                "keys": keys,
                "t_n": t1,
                "t_3n": t3,
                "events_per_s": rate,
                "cpu_us_per_event": cpu_us,
                "task_thread_cpu_us_per_event": task_us,
            }
        )
    )


if __name__ == "__main__":
    main()
