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
from connectors.jars import job_jars
from flink_job._constants import Counter
from flink_job._rest import (
    TERMINAL,
    FlinkRest,
    explain,
    remote_environment,
    summarize_java_error,
)
from flink_job.config import (
    JobOptions,
    SourceSettings,
    home,
    project_root,
    run_dir,
)
from flink_job.errors import EnvironmentNotReadyError, FlinkJobError
from flink_job.loader import Loaded, load

__all__ = ["prepare", "run_local", "start_local", "submit"]

# What the progress line shows.
COUNTERS = (Counter.EVENTS_IN, Counter.FEATURE_ROWS, Counter.DEAD_LETTERS, Counter.LATE_ARRIVALS)


def prepare(target: str, options: JobOptions) -> Loaded:
    """Load the target and resolve its sources (once: hand the result to ``build_job``),
    check the brokers and create missing topics."""
    loaded = load(target, options)
    resolvers, settings = loaded.resolvers, loaded.sources
    by_brokers: dict[str, tuple[SourceSettings, set[str]]] = {}
    for r in resolvers:
        s = settings[r.name]
        _, topics = by_brokers.setdefault(s.bootstrap_servers, (s, set()))
        topics.update({s.topic, s.dead_letter_topic})
    first = next(iter(by_brokers))
    _, first_topics = by_brokers[first]
    first_topics.add(options.sink_topic)
    for brokers, (s, topics) in by_brokers.items():
        check_reachable(brokers)
        src = next(r.source for r in resolvers if settings[r.name] is s)
        conf = client_config(brokers, s.properties, src.sasl_username, src.sasl_password)
        ensure_topics(conf, topics)
    return loaded


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

    from flink_job.job import build_job, flink_configuration

    loaded = prepare(target, options)
    port = _free_port()
    config = flink_configuration(options)
    config.set_string("rest.port", str(port))
    config.set_string("rest.bind-address", "127.0.0.1")
    config.set_string("rest.address", "127.0.0.1")
    env = StreamExecutionEnvironment.get_execution_environment(config)
    try:
        job = build_job(loaded, options, env=env)
    except Exception as e:
        raise _start_error(e, "could not start the job") from None
    client = _execute(job, "could not start the job")
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
                        f"[{status}] events in {c[Counter.EVENTS_IN]} | "
                        f"rows out {c[Counter.FEATURE_ROWS]} | "
                        f"dead letters {c[Counter.DEAD_LETTERS]}"
                        + (
                            f" | late {c[Counter.LATE_ARRIVALS]}"
                            if c.get(Counter.LATE_ARRIVALS)
                            else ""
                        )
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


# How long ``submit`` from a savepoint waits for the first message to reach the resolvers.
_FIRST_RECORD_S = 60.0


def submit(target: str, options: JobOptions, jobmanager: str) -> str:
    """``flink-job submit``: package the job (:mod:`flink_job.package`), build it here, refuse
    it if a job of its name is active on the cluster, check the cluster's Python, and submit
    it through the cluster's REST endpoint with the artifact's code, wheels and jars; returns
    the job id. A refused submit starts nothing on the cluster (the Python check is a job
    too). No path of this machine is sent: the cluster's python.executable and checkpoint
    directory apply unless ``options`` set them.
    """
    import tempfile

    from flink_job.package import package

    _local_logging()
    rest = FlinkRest(jobmanager)
    rest.get("/overview")  # one clear line if the cluster is not there
    loaded = prepare(target, options)
    python = python_settings(rest, options)
    with tempfile.TemporaryDirectory(prefix="flink-job-submit-") as tmp:
        artifact = package(target, Path(tmp) / "artifact", options)
        job = _build_for_cluster(loaded, options, jobmanager, artifact, python)
        rest.refuse_duplicate(job.name)
        check_cluster_python(jobmanager, options, python, artifact.spec["python"]["version"])
        rest.refuse_duplicate(job.name)  # again: the check took a while
        job_id = str(_execute(job, "could not submit the job").get_job_id())
    # Restored state is decoded at each key's first message: from a savepoint, wait for one.
    wait = _FIRST_RECORD_S if options.from_savepoint else 0.0
    if not rest.wait_running(job_id, first_record=wait):
        print(
            f"flink-job: job {job_id} is running, but no message has reached its resolvers "
            f"within {wait:.0f}s; restored state is checked at each key's first message: watch "
            "`flink-job status`",
            file=sys.stderr,
        )
    return job_id


def _build_for_cluster(
    loaded: Loaded,
    options: JobOptions,
    jobmanager: str,
    artifact: Any,
    python: dict[str, str],
) -> Any:
    """The job, built here on an environment that submits to ``jobmanager`` (nothing runs
    until it is executed)."""
    from flink_job.entry import attach
    from flink_job.job import build_job, flink_configuration

    config = flink_configuration(options, cluster=True)
    for key, value in python.items():
        config.set_string(key, value)
    # The jars where they live here, not the temporary artifact's copies: they are also loaded
    # into this process's classloader, which outlives the submission (a later submit in the
    # same process would look for a deleted file).
    jars = job_jars(home())
    env = remote_environment(
        jobmanager, config, jars, options.from_savepoint, options.allow_non_restored_state
    )
    attach(env, artifact, jars=False)
    env.add_jars(*(j.as_uri() for j in jars))
    try:
        return build_job(loaded, options, env=env)
    except Exception as e:
        raise _start_error(e, "could not submit the job") from None


def _execute(job: Any, failed: str) -> Any:
    """Start the built ``job`` under its name; returns its ``JobClient``."""
    try:
        return job.env.execute_async(job.name)
    except Exception as e:
        raise _start_error(e, failed) from None


def _start_error(e: Exception, failed: str) -> FlinkJobError:
    """``e`` if it is ours, else one line with the JVM's cause and its fix."""
    if isinstance(e, FlinkJobError):
        return e
    line = summarize_java_error(str(e)) or f"{type(e).__name__}: {e}"
    return FlinkJobError(f"{failed}: {explain(line)}")


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


def python_settings(rest: FlinkRest, options: JobOptions) -> dict[str, str]:
    """The job's Python settings: ``--python-executable`` alone if given, else the cluster's."""
    if options.python_executable:
        return {"python.executable": options.python_executable}
    found = {k: rest.setting(k) for k in PYTHON_SETTINGS}
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
    env = remote_environment(jobmanager, config, [])
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


def _probe_cause(e: Exception) -> str:
    text = str(e)
    if "error=2" in text or "No such file or directory" in text:
        return "it does not exist on the TaskManagers"
    if "No module named 'pyflink'" in text or "No module named 'pemja'" in text:
        return "it lacks apache-flink (No module named 'pyflink')"
    return summarize_java_error(text) or f"{type(e).__name__}"
