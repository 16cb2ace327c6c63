"""``flink-job kafka start|stop``: a single-node Kafka broker (KRaft) from the Maven jars.

Configuration: ``conf/kafka/server.properties`` and ``conf/kafka/log4j2.properties``. Data,
logs and the pid file live in ``.run/kafka/``. ``start`` is a no-op when the broker already
answers, and waits until it serves metadata.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

from connectors.jars import kafka_broker_classpath
from flink_job._local._proc import read_pid, spawn, tail, terminate
from flink_job.config import project_root
from flink_job.errors import EnvironmentNotReadyError

__all__ = ["bootstrap_servers", "is_running", "start", "stop"]

HOST, PORT = "localhost", 9092


def _run_dir() -> Path:
    return project_root() / ".run" / "kafka"


def bootstrap_servers() -> str:
    return f"{HOST}:{PORT}"


def _answers(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=timeout):
            return True
    except OSError:
        return False


def _serves_metadata(timeout: float = 5.0) -> bool:
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:  # pragma: no cover - confluent-kafka is a dependency
        return _answers()
    admin = AdminClient({"bootstrap.servers": bootstrap_servers(), "error_cb": lambda e: None})
    try:
        admin.list_topics(timeout=timeout)
        return True
    except Exception:
        return False


def is_running() -> bool:
    """Whether a broker answers on the local port (ours or another)."""
    return _answers()


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def start(timeout: float = 90.0) -> str:
    """Start the broker unless it already runs; return the bootstrap servers."""
    run = _run_dir()
    pid_file = run / "kafka.pid"
    if _answers() and _serves_metadata():
        return bootstrap_servers()
    if read_pid(pid_file) is None:
        classpath = os.pathsep.join(str(p) for p in kafka_broker_classpath())
        conf_dir = project_root() / "conf" / "kafka"
        data = run / "data"
        run.mkdir(parents=True, exist_ok=True)
        props = run / "server.properties"
        props.write_text(
            (conf_dir / "server.properties").read_text().replace("${DATA_DIR}", str(data))
        )
        jvm = [
            _java(), "-Xms256m", "-Xmx1g", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={conf_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={run}", "-cp", classpath,
        ]  # fmt: skip
        if not (data / "meta.properties").is_file():
            cluster_id = _cluster_id()
            fmt = subprocess.run(
                [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(props), "--standalone"],
                capture_output=True, text=True,
            )  # fmt: skip
            if fmt.returncode != 0:
                raise EnvironmentNotReadyError(
                    f"formatting Kafka storage in {data} failed: "
                    f"{(fmt.stderr or fmt.stdout).strip().splitlines()[-1:]}"
                )
        spawn([*jvm, "kafka.Kafka", str(props)], run / "kafka.out", pid_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_pid(pid_file) is None and not _answers():
            raise EnvironmentNotReadyError(
                f"the Kafka broker exited at start; last lines of {run / 'broker.log'}:\n"
                + tail(run / "broker.log") + "\n" + tail(run / "kafka.out", 5)
            )
        if _answers() and _serves_metadata():
            return bootstrap_servers()
        time.sleep(0.5)
    raise EnvironmentNotReadyError(
        f"the Kafka broker did not become ready in {timeout:.0f}s; see {run / 'broker.log'}"
    )


def _cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def stop(timeout: float = 30.0) -> None:
    """Stop the broker started by :func:`start` (no-op if it does not run)."""
    terminate(_run_dir() / "kafka.pid", timeout)
