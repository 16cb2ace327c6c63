"""A single-node Kafka broker (KRaft) for development and tests, run from the Maven jars.

``./build.sh`` fetches the jars into ``build/jars/kafka``. Configuration is
``conf/kafka/server.properties`` (listeners and ports live only there) and
``conf/kafka/log4j2.properties``. Everything the broker writes is under ``.run/kafka/``:

- ``server.properties``: the effective configuration (``${DATA_DIR}`` filled in),
- ``data/``: the log directory (KRaft metadata and topics), formatted once,
- ``broker.log``: the broker's log; ``kafka.out``: its stdout/stderr,
- ``kafka.pid``: the pid of the broker process.

:func:`start` is idempotent: it returns at once when the broker already serves, adopts a broker
of this checkout that outlived its pid file, and ignores stale pid files.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from connectors.admin import serves_metadata
from connectors.jars import kafka_broker_classpath
from flink_job.config import home, project_root, run_dir
from flink_job.errors import EnvironmentNotReadyError

__all__ = ["bootstrap_servers", "is_running", "start", "stop"]

_MAIN_CLASS = "kafka.Kafka"
_JVM_OPTS = [
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
]


def _run_dir() -> Path:
    return run_dir() / "kafka"


def _conf_dir() -> Path:
    return project_root() / "conf" / "kafka"


def _pid_file() -> Path:
    return _run_dir() / "kafka.pid"


def _effective_props() -> Path:
    return _run_dir() / "server.properties"


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        props[key.strip()] = value.strip()
    return props


def _address() -> tuple[str, int]:
    """Host and port of the client listener, from ``advertised.listeners`` in the conf."""
    conf = _conf_dir() / "server.properties"
    props = _read_properties(conf)
    controllers = set(props.get("controller.listener.names", "CONTROLLER").split(","))
    for listener in props.get("advertised.listeners", "").split(","):
        name, sep, hostport = listener.strip().partition("://")
        if not sep or name in controllers:
            continue
        host, _, port = hostport.rpartition(":")
        if host and port.isdigit():
            return host, int(port)
    raise EnvironmentNotReadyError(
        f"{conf} has no client listener in advertised.listeners (e.g. "
        "PLAINTEXT://localhost:9092); fix the file"
    )


def bootstrap_servers() -> str:
    """The broker's bootstrap servers, e.g. ``localhost:9092`` (from the conf).

    Returns:
        ``host:port`` of the client listener.
    """
    host, port = _address()
    return f"{host}:{port}"


def _port_open(timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(_address(), timeout=timeout):
            return True
    except OSError:
        return False


def _serves_metadata(timeout: float) -> bool:
    """Whether a metadata request succeeds (a TCP connect if confluent_kafka is missing)."""
    served = serves_metadata(bootstrap_servers(), timeout)
    return _port_open(timeout) if served is None else served


def is_running() -> bool:
    """Whether a Kafka broker serves on the configured client listener.

    Returns:
        True if the port accepts connections and answers a metadata request.
    """
    return _port_open() and _serves_metadata(5.0)


# --- the broker process ---------------------------------------------------------------------


def _cmdline(pid: int) -> list[str] | None:
    """The command line of a live, non-zombie process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return None
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_our_broker(pid: int) -> bool:
    """Whether ``pid`` is a broker of this checkout (``kafka.Kafka`` with our properties)."""
    cmd = _cmdline(pid)
    return cmd is not None and _MAIN_CLASS in cmd and str(_effective_props()) in cmd


def _broker_pid() -> int | None:
    """The pid of this checkout's broker: from the pid file, else found in /proc.

    A stale pid file (process gone, or the pid reused by another program) is removed; a broker
    found without a pid file (e.g. the file was deleted) gets its pid file back.
    """
    pid_file = _pid_file()
    try:
        pid: int | None = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None and _is_our_broker(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_our_broker(int(entry.name)):
            pid_file.parent.mkdir(parents=True, exist_ok=True)
            pid_file.write_text(f"{entry.name}\n")
            return int(entry.name)
    return None


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise EnvironmentNotReadyError(
            "java is not installed (the Kafka broker needs Java 17+); fix: install a JDK 17 "
            "or set JAVA_HOME"
        )
    return found


def _jvm(run: Path) -> list[str]:
    classpath = os.pathsep.join(str(p) for p in kafka_broker_classpath(home()))
    return [
        _java(),
        *_JVM_OPTS,
        f"-Dlog4j2.configurationFile={_conf_dir() / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={run}",
        "-cp",
        classpath,
    ]


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _errors(path: Path, offset: int, limit: int = 4) -> list[str]:
    """The first ERROR/FATAL entries written to ``path`` after ``offset``, with their exception."""
    try:
        with path.open("rb") as fh:
            if offset <= fh.seek(0, os.SEEK_END):
                fh.seek(offset)
            else:  # the log rolled over
                fh.seek(0)
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    found: list[str] = []
    for i, line in enumerate(lines):
        if "] ERROR " in line or "] FATAL " in line:
            found.append(line)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if nxt and not nxt.startswith(("[", "\t", " ")):
                found.append(f"  {nxt}")
            if len(found) >= 2 * limit:
                break
    return found


def _logs_hint(run: Path, log_offset: int = 0) -> str:
    """The broker's errors since ``log_offset`` (or the end of its log) and the end of stdout."""
    broker_log, out = run / "broker.log", run / "kafka.out"
    errors = _errors(broker_log, log_offset)
    parts = (
        [f"errors in {broker_log}:", *errors]
        if errors
        else [
            f"last lines of {broker_log}:",
            *(_tail(broker_log, 15) or ["(empty)"]),
        ]
    )
    stdout = _tail(out, 10)
    if stdout:
        parts += [f"last lines of {out}:", *stdout]
    return "\n" + "\n".join(f"  {line}" for line in parts)


def _cluster_id() -> str:
    """A random cluster id as ``kafka-storage random-uuid`` makes it (base64url, 22 chars)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka avoids ids that look like command-line flags
            return cid


def _write_properties(run: Path) -> Path:
    template = _conf_dir() / "server.properties"
    props = _effective_props()
    text = template.read_text().replace("${DATA_DIR}", str(run / "data"))
    props.write_text(
        f"# Generated from {template} by flink_job._local.kafka; edit that file instead.\n{text}"
    )
    return props


def _format_storage(run: Path, props: Path) -> None:
    """Format the KRaft log directory unless it already is."""
    if (run / "data" / "meta.properties").is_file():
        return
    cmd = [*_jvm(run), "kafka.tools.StorageTool", "format", "-t", _cluster_id()]
    cmd += ["-c", str(props), "--standalone"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        output = (done.stderr + done.stdout).strip().splitlines()[-10:]
        raise EnvironmentNotReadyError(
            f"formatting the Kafka log directory {run / 'data'} failed (exit {done.returncode}); "
            f"fix: delete {run / 'data'} and run start again. Output:\n  " + "\n  ".join(output)
        )


def _spawn(run: Path, props: Path) -> subprocess.Popen[bytes]:
    with (run / "kafka.out").open("ab") as out:
        proc = subprocess.Popen(
            [*_jvm(run), _MAIN_CLASS, str(props)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run,
            start_new_session=True,  # detached: survives the Python process and its Ctrl-C
        )
    _pid_file().write_text(f"{proc.pid}\n")
    return proc


@contextlib.contextmanager
def _start_lock(run: Path) -> Iterator[None]:
    """Serialize concurrent ``start`` calls (e.g. parallel test workers) on this checkout."""
    with (run / "start.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(timeout: float = 60.0) -> str:
    """Start the broker unless it already serves, and wait until it serves metadata.

    Args:
        timeout: Seconds to wait for the broker to become ready.

    Returns:
        The bootstrap servers, ``localhost:9092`` with the shipped conf.

    Raises:
        EnvironmentNotReadyError: Jars or java missing, formatting failed, or the broker exited
            or did not become ready in time (the message shows the end of its logs).
    """
    if is_running():
        _broker_pid()  # re-create a lost pid file if the broker is ours
        return bootstrap_servers()
    run = _run_dir()
    run.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with _start_lock(run):
        proc: subprocess.Popen[bytes] | None = None
        pid = _broker_pid()
        log_offset = _log_size(run / "broker.log")
        if pid is None and not _port_open():
            props = _write_properties(run)
            _format_storage(run, props)
            proc = _spawn(run, props)
            pid = proc.pid
        # Otherwise our broker is starting (maybe by a concurrent start), or another process
        # holds the port: wait for it to serve, at least once even if the lock took long.
        while True:
            if _port_open() and _serves_metadata(2.0):
                return bootstrap_servers()
            gone = proc.poll() is not None if proc else pid is not None and not _is_our_broker(pid)
            if gone:
                _pid_file().unlink(missing_ok=True)
                raise EnvironmentNotReadyError(
                    f"the Kafka broker exited while starting; see {run / 'broker.log'}"
                    + _logs_hint(run, log_offset)
                )
            if time.monotonic() >= deadline:
                break
            time.sleep(0.3)
    if pid is None:
        raise EnvironmentNotReadyError(
            f"port {bootstrap_servers()} is taken by a process that does not answer as a Kafka "
            "broker; fix: stop that process, or change the ports in conf/kafka/server.properties"
        )
    raise EnvironmentNotReadyError(
        f"the Kafka broker (pid {pid}) did not become ready within {timeout:.0f}s; it is left "
        f"running: see {run / 'broker.log'}, or stop it with `flink-job kafka stop`"
        + _logs_hint(run, log_offset)
    )


def stop(timeout: float = 30.0) -> None:
    """Stop this checkout's broker: SIGTERM, then SIGKILL after ``timeout`` (no-op if none).

    Args:
        timeout: Seconds to wait for a clean shutdown before killing the process.
    """
    pid = _broker_pid()
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_our_broker(pid):
        time.sleep(0.2)
    if _is_our_broker(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 10
        while time.monotonic() < kill_deadline and _is_our_broker(pid):
            time.sleep(0.1)
    _pid_file().unlink(missing_ok=True)
