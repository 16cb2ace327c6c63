"""Start jobs: locally on a MiniCluster (``flink-job run``) or on a cluster (``submit``)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Any

from connectors.admin import check_reachable, client_config, ensure_topics
from flink_job._rest import FlinkRest, summarize_java_error
from flink_job.config import (
    JobOptions,
    SourceSettings,
    check_source_names,
    project_root,
    resolve_source,
    run_dir,
)
from flink_job.errors import FlinkJobError
from flink_job.loader import for_environment, load_resolvers
from flink_job.streams import Resolver

__all__ = ["prepare", "run_local", "start_local", "submit"]

COUNTERS = ("eventsIn", "featureRows", "deadLetters", "lateArrivals")
TERMINAL = {"FINISHED", "FAILED", "CANCELED", "ENDED"}


def prepare(
    target: str, options: JobOptions
) -> tuple[list[Resolver[Any, Any]], dict[str, SourceSettings]]:
    """Load resolvers, resolve their sources, check the brokers and create missing topics."""
    resolvers = for_environment(load_resolvers(target), options.environment)
    check_source_names({r.name: r.source for r in resolvers})
    settings = {r.name: resolve_source(r.source, options) for r in resolvers}
    by_brokers: dict[str, tuple[SourceSettings, set[str]]] = {}
    for r in resolvers:
        s = settings[r.name]
        entry = by_brokers.setdefault(s.bootstrap_servers, (s, set()))
        entry[1].update({s.topic, s.dead_letter_topic})
    first = next(iter(by_brokers))
    by_brokers[first][1].add(options.sink_topic)
    for brokers, (s, topics) in by_brokers.items():
        check_reachable(brokers)
        src = next(r.source for r in resolvers if settings[r.name] is s)
        conf = client_config(brokers, s.properties, src.sasl_username, src.sasl_password)
        ensure_topics(conf, topics)
    return resolvers, settings


def explain(cause: str) -> str:
    """Add the fix to JVM failures users meet, in this CLI's terms."""
    if "Cannot map checkpoint/savepoint state" in cause:
        cause = cause.split(" If you want to allow", 1)[0]
        cause += (
            " The savepoint holds state of an operator this job no longer has (a removed or "
            "renamed resolver); fix: add --allow-non-restored-state to drop that state."
        )
    return cause


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class LocalJob:
    """A job running on the MiniCluster of this process's Flink gateway."""

    def __init__(self, client: Any, rest: FlinkRest, job_id: str) -> None:
        self.client = client
        self.rest = rest
        self.job_id = job_id

    def status(self) -> str:
        try:
            return str(self.client.get_job_status().result().name)
        except Exception:
            # The local MiniCluster shuts down once its job has ended.
            return "ENDED"

    def counts(self) -> dict[str, int]:
        return self.rest.counters(self.job_id, COUNTERS)

    def cancel(self) -> None:
        try:
            self.client.cancel().result()
        except Exception:  # already finished or cancelled
            pass


def _local_logging() -> None:
    """Point the gateway JVM's logs at .run/logs with conf/flink/log4j-local.properties."""
    root = project_root()
    log_dir = run_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))
    props = root / "conf" / "flink" / "log4j-local.properties"
    if props.is_file():
        os.environ.setdefault("LOG4J_PROPERTIES", str(props))


def start_local(target: str, options: JobOptions) -> LocalJob:
    """Build the job and start it on a local MiniCluster; returns at once."""
    _local_logging()
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.util.exceptions import TableException

    from flink_job.job import build_job, flink_configuration

    resolvers, _ = prepare(target, options)
    port = _free_port()
    config = flink_configuration(options)
    config.set_string("rest.port", str(port))
    config.set_string("rest.bind-address", "127.0.0.1")
    config.set_string("rest.address", "127.0.0.1")
    env = StreamExecutionEnvironment.get_execution_environment(config)
    try:
        job = build_job(target, options, env=env, resolvers=resolvers)
        client = job.env.execute_async(options.job_name)
    except (TableException, Exception) as e:
        if isinstance(e, FlinkJobError):
            raise
        line = summarize_java_error(str(e)) or f"{type(e).__name__}: {e}"
        raise FlinkJobError(f"could not start the job: {explain(line)}") from None
    return LocalJob(client, FlinkRest(f"127.0.0.1:{port}"), str(client.get_job_id()))


def run_local(target: str, options: JobOptions, quiet: bool = False) -> int:
    """``flink-job run``: start, print live counts until the job ends or Ctrl-C / SIGTERM."""
    job = start_local(target, options)
    print(f"job {job.job_id} running on a local MiniCluster (Ctrl-C stops it)", file=sys.stderr)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    last = ""
    last_cause: str | None = None
    try:
        while True:
            status = job.status()
            if not quiet:
                try:
                    c = job.counts()
                    line = (
                        f"[{status}] events in {c['eventsIn']} | rows out {c['featureRows']} | "
                        f"dead letters {c['deadLetters']}"
                        + (f" | late {c['lateArrivals']}" if c.get("lateArrivals") else "")
                    )
                except FlinkJobError:
                    line = f"[{status}]"
                if line != last:
                    print(line, file=sys.stderr, flush=True)
                    last = line
            if status in ("RESTARTING", "FAILING", "FAILED"):
                cause = job.rest.root_cause(job.job_id)
                if cause and cause != last_cause:
                    print(f"flink-job: job {status.lower()}: {cause}", file=sys.stderr)
                    last_cause = cause
            if status in TERMINAL:
                break
            time.sleep(2)
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr)
        job.cancel()
        return 0
    if status in ("FAILED", "ENDED") and last_cause:
        print(f"flink-job: job failed: {last_cause}", file=sys.stderr)
        return 1
    return 0


def submit(target: str, options: JobOptions, jobmanager: str) -> str:
    """``flink-job submit``: build the job here and submit it to a running cluster's REST
    endpoint (Python files and the connector jar are uploaded with it); returns the job id."""
    from pyflink.datastream import StreamExecutionEnvironment

    from flink_job._rest import FlinkRest
    from flink_job.job import build_job, flink_configuration

    _local_logging()
    FlinkRest(jobmanager).get("/overview")  # one clear line if the cluster is not there
    resolvers, _ = prepare(target, options)
    from pyflink.java_gateway import get_gateway

    from connectors.jars import kafka_connector_jar

    host, _, port = jobmanager.rpartition(":")
    config = flink_configuration(options)
    gateway = get_gateway()
    jar_files = gateway.new_array(gateway.jvm.String, 1)
    jar_files[0] = str(kafka_connector_jar())
    # get_execution_environment() would start a local MiniCluster; the remote environment
    # submits through the cluster's REST endpoint and uploads the jar with the job.
    jvm = gateway.jvm
    restore = (
        jvm.org.apache.flink.runtime.jobgraph.SavepointRestoreSettings.forPath(
            options.from_savepoint, options.allow_non_restored_state
        )
        if options.from_savepoint
        else jvm.org.apache.flink.runtime.jobgraph.SavepointRestoreSettings.none()
    )
    # Explicit restore settings: the remote environment ignores
    # execution.state-recovery.ignore-unclaimed-state from the configuration.
    env = StreamExecutionEnvironment(
        jvm.org.apache.flink.streaming.api.environment.RemoteStreamEnvironment(
            host or "localhost", int(port or 8081), config._j_configuration, jar_files,
            None, restore,
        )
    )  # fmt: skip
    try:
        job = build_job(target, options, env=env, resolvers=resolvers)
        client = job.env.execute_async(options.job_name)
    except Exception as e:
        if isinstance(e, FlinkJobError):
            raise
        line = summarize_java_error(str(e)) or f"{type(e).__name__}: {e}"
        raise FlinkJobError(f"could not submit the job: {explain(line)}") from None
    job_id = str(client.get_job_id())
    _wait_running(FlinkRest(jobmanager), job_id)
    return job_id


def _wait_running(rest: Any, job_id: str, timeout: float = 90.0) -> None:
    """Return once every task of the job runs; raise with the root cause if it fails first
    (e.g. a savepoint holding state of a removed resolver)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = rest.job(job_id)
        state = job.get("state")
        if state == "RUNNING" and all(v["status"] == "RUNNING" for v in job.get("vertices", [])):
            return
        if state in ("FAILED", "FAILING", "RESTARTING", "CANCELED"):
            cause = explain(rest.root_cause(job_id) or "see the cluster logs")
            # Restarts cannot fix these: report now instead of after every restart attempt.
            deterministic = ("Cannot map", "StateSchemaError")
            if state != "RESTARTING" or any(d in cause for d in deterministic):
                raise FlinkJobError(f"job {job_id} {state.lower()}: {cause}")
        time.sleep(1)
    raise FlinkJobError(f"job {job_id} did not reach RUNNING within {timeout:.0f}s")
