"""Start jobs: locally on a MiniCluster (``flink-job run``) or on a cluster (``submit``)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from connectors.admin import check_reachable, client_config, ensure_topics
from flink_job._rest import FlinkRest, summarize_java_error
from flink_job.config import (
    JobOptions,
    SourceSettings,
    check_source_names,
    home,
    job_identity,
    project_root,
    resolve_source,
    run_dir,
)
from flink_job.errors import EnvironmentNotReadyError, FlinkJobError
from flink_job.loader import for_environment, import_target, load_resolvers
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
        client = job.env.execute_async(job.name)
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
        logging.disable(logging.CRITICAL)  # see below: the gateway may be going away already
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
        # A supervisor's SIGTERM often reaches the gateway JVM too: py4j would log a
        # traceback (some on the root logger) for every call it can no longer make, here and
        # at exit. A stop is a normal event: nothing more is logged.
        logging.disable(logging.CRITICAL)
        job.cancel()
        return 0
    if status in ("FAILED", "ENDED") and last_cause:
        print(f"flink-job: job failed: {last_cause}", file=sys.stderr)
        return 1
    return 0


def submit(target: str, options: JobOptions, jobmanager: str) -> str:
    """``flink-job submit``: package the job (:mod:`flink_job.package`), check the cluster's
    Python, build the job here and submit it through the cluster's REST endpoint with the
    artifact's code, wheels and jars; returns the job id. No path of this machine is sent:
    the cluster's python.executable and checkpoint directory apply unless ``options`` set them.
    """
    import tempfile

    from flink_job.package import package

    _local_logging()
    rest = FlinkRest(jobmanager)
    rest.get("/overview")  # one clear line if the cluster is not there
    resolvers, _ = prepare(target, options)
    # Refused before anything runs on the cluster (the Python check below is a job too).
    refuse_duplicate(rest, job_identity(options.job_name, import_target(target).__name__))
    python = python_settings(jobmanager, options)
    with tempfile.TemporaryDirectory(prefix="flink-job-submit-") as tmp:
        artifact = package(target, Path(tmp) / "artifact", options)
        check_cluster_python(jobmanager, options, python, artifact.spec["python"]["version"])
        job_id = _submit_artifact(target, options, jobmanager, artifact, resolvers, python)
    _wait_running(rest, job_id)
    return job_id


def _remote_env(jobmanager: str, config: Any, jars: list[Path], options: JobOptions) -> Any:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.java_gateway import get_gateway

    host, _, port = jobmanager.rpartition(":")
    gateway = get_gateway()
    jvm = gateway.jvm
    jar_files = gateway.new_array(jvm.String, len(jars))
    for i, jar in enumerate(jars):
        jar_files[i] = str(jar)
    settings = jvm.org.apache.flink.runtime.jobgraph.SavepointRestoreSettings
    restore = (
        settings.forPath(options.from_savepoint, options.allow_non_restored_state)
        if options.from_savepoint
        else settings.none()
    )
    # get_execution_environment() would start a local MiniCluster; the remote environment
    # submits through the cluster's REST endpoint and uploads the jars and files with the job.
    # Explicit restore settings: the remote environment ignores
    # execution.state-recovery.ignore-unclaimed-state from the configuration.
    remote = jvm.org.apache.flink.streaming.api.environment.RemoteStreamEnvironment
    j_env = remote(
        host or "localhost", int(port or 8081), config._j_configuration, jar_files, None, restore
    )
    return StreamExecutionEnvironment(j_env)


def _submit_artifact(
    target: str,
    options: JobOptions,
    jobmanager: str,
    artifact: Any,
    resolvers: list[Resolver[Any, Any]],
    python: dict[str, str],
) -> str:
    from connectors.jars import job_jars
    from flink_job.entry import attach
    from flink_job.job import build_job, flink_configuration

    config = flink_configuration(options, cluster=True)
    for key, value in python.items():
        config.set_string(key, value)
    # The jars where they live here, not the temporary artifact's copies: they are also loaded
    # into this process's classloader, which outlives the submission (a later submit in the
    # same process would look for a deleted file).
    jars = job_jars(home())
    env = _remote_env(jobmanager, config, jars, options)
    attach(env, artifact, jars=False)
    env.add_jars(*(j.as_uri() for j in jars))
    try:
        job = build_job(target, options, env=env, resolvers=resolvers)
        refuse_duplicate(FlinkRest(jobmanager), job.name)
        client = job.env.execute_async(job.name)
    except Exception as e:
        if isinstance(e, FlinkJobError):
            raise
        line = summarize_java_error(str(e)) or f"{type(e).__name__}: {e}"
        raise FlinkJobError(f"could not submit the job: {explain(line)}") from None
    return str(client.get_job_id())


# Job states in which a job still holds (or will hold again) its consumer groups and
# transactional ids. A job being cancelled is ending: not counted.
ACTIVE = frozenset(
    {"INITIALIZING", "CREATED", "RUNNING", "FAILING", "RESTARTING", "RECONCILING", "SUSPENDED"}
)


def refuse_duplicate(rest: Any, name: str) -> None:
    """Refuse to start a job named ``name`` while one of that name is active on the cluster:
    both would use the same consumer groups and transactional ids (config.job_identity)."""
    for j in rest.get("/jobs/overview").get("jobs", []):
        if j.get("name") == name and j.get("state") in ACTIVE:
            raise FlinkJobError(
                f"job {name!r} is already {j['state'].lower()} on this cluster (job id "
                f"{j['jid']}); a second one would share its consumer groups and Kafka "
                "transactional ids; fix: stop it first, or give this job another --job-name"
            )


PROBE_NAME = "flink-job: python check"
# Runs on a TaskManager with the job's Python. Defined by exec in a module of its own so that
# cloudpickle ships it by value: the cluster has no flink_job to import it from.
_PROBE = """
def probe(_):
    import sys
    import pyflink.version
    return "%d.%d %s %s" % (sys.version_info[0], sys.version_info[1],
                            pyflink.version.__version__, sys.executable)
"""


# The cluster's Python settings a job carries over. The Python operators read them from the
# job's configuration only (the TaskManagers' own config.yaml is not consulted), so `flink run`
# copies them from the cluster's config.yaml into every job; submit copies them from the
# JobManager's. python.pythonpath matters when the cluster's Python is a venv: thread mode
# embeds libpython, which does not read pyvenv.cfg.
PYTHON_SETTINGS = ("python.executable", "python.pythonpath")


def python_settings(jobmanager: str, options: JobOptions) -> dict[str, str]:
    """The job's Python settings: ``--python-executable`` alone if given, else the cluster's."""
    if options.python_executable:
        return {"python.executable": options.python_executable}
    found = {k: _cluster_setting(jobmanager, k) for k in PYTHON_SETTINGS}
    return {k: v for k, v in found.items() if v}


def check_cluster_python(
    jobmanager: str, options: JobOptions, python: dict[str, str], wheels_for: str
) -> str:
    """Run a one-element job with the job's Python settings on the cluster (in process mode)
    and check that its Python exists, is at least 3.11, matches the Python the wheels were
    packaged for, and has apache-flink of this client's version. Returns
    ``"X.Y flink-version path"``.

    Raises:
        EnvironmentNotReadyError: one line naming the Python and what is wrong (the job itself
            is then not submitted).
    """
    from importlib import metadata

    from pyflink.common import Configuration
    from pyflink.common.typeinfo import Types

    executable = python.get("python.executable", "python, the default")
    where = f"the cluster's Python (python.executable = {executable})"
    fix = (
        "fix: install Python 3.11 with apache-flink=="
        + metadata.version("apache-flink")
        + " there, or pass --python-executable PATH of one"
    )
    config = Configuration()
    # Process mode starts the given Python afresh. Thread mode would not test it: a
    # TaskManager keeps the embedded interpreter of its first Python job for good.
    config.set_string("python.execution-mode", "process")
    for key, value in python.items():
        config.set_string(key, value)
    config.set_string("restart-strategy.type", "none")
    config.set_string("pipeline.name", PROBE_NAME)
    env = _remote_env(jobmanager, config, [], JobOptions())
    env.set_parallelism(1)
    namespace: dict[str, Any] = {"__name__": "flink_job_python_probe"}
    exec(_PROBE, namespace)
    stream = env.from_collection([0], Types.INT()).map(namespace["probe"], Types.STRING())
    try:
        with stream.execute_and_collect(PROBE_NAME) as results:
            found = [str(r) for r in results]
    except Exception as e:
        raise EnvironmentNotReadyError(
            f"{where} cannot run the job: {_probe_cause(e)}; {fix}"
        ) from None
    version, flink, path = found[0].split(" ", 2)
    major, minor = (int(x) for x in version.split("."))
    if (major, minor) < (3, 11):
        raise EnvironmentNotReadyError(f"{where} is Python {version} ({path}): too old; {fix}")
    if version != wheels_for:
        raise EnvironmentNotReadyError(
            f"{where} is Python {version} ({path}), the job's wheels are for {wheels_for}; "
            f"fix: package for it (flink-job package --python-version {version}) or point "
            "--python-executable at a Python " + wheels_for
        )
    ours = metadata.version("apache-flink")
    if flink.split(".")[:2] != ours.split(".")[:2]:
        raise EnvironmentNotReadyError(
            f"{where} has apache-flink {flink} ({path}), this client {ours}; {fix}"
        )
    return found[0]


def _cluster_setting(jobmanager: str, key: str) -> str | None:
    for entry in FlinkRest(jobmanager).get("/jobmanager/config"):
        if entry.get("key") == key:
            return str(entry.get("value"))
    return None


def _probe_cause(e: Exception) -> str:
    text = str(e)
    if "error=2" in text or "No such file or directory" in text:
        return "it does not exist on the TaskManagers"
    if "No module named 'pyflink'" in text or "No module named 'pemja'" in text:
        return "it lacks apache-flink (No module named 'pyflink')"
    return summarize_java_error(text) or f"{type(e).__name__}"


def _wait_running(rest: Any, job_id: str, timeout: float = 90.0, settle: float = 2.0) -> None:
    """Return once every task of the job has run for ``settle`` seconds; raise with the root
    cause if it fails first (e.g. a savepoint holding state of a removed resolver, or restored
    state that does not fit the state class, which fails on the first message after the
    tasks switch to RUNNING)."""
    deadline = time.monotonic() + timeout
    running_since: float | None = None
    while time.monotonic() < deadline:
        job = rest.job(job_id)
        state = job.get("state")
        if state == "RUNNING" and all(v["status"] == "RUNNING" for v in job.get("vertices", [])):
            running_since = running_since or time.monotonic()
            if time.monotonic() - running_since >= settle:
                return
            time.sleep(0.5)
            continue
        running_since = None
        # Region failover restarts failed tasks while the job stays RUNNING: look at the
        # job's exceptions whenever not every task runs.
        cause = explain(rest.root_cause(job_id) or "see the cluster logs")
        # Restarts cannot fix these: report now instead of after every restart attempt.
        deterministic = ("Cannot map", "StateSchemaError")
        if state in ("FAILED", "FAILING", "CANCELED") or any(d in cause for d in deterministic):
            raise FlinkJobError(f"job {job_id} {state.lower()}: {cause}")
        time.sleep(1)
    raise FlinkJobError(f"job {job_id} did not reach RUNNING within {timeout:.0f}s")
