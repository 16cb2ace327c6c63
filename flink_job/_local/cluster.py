"""``flink-job cluster start|stop``: a standalone Flink cluster from the PyFlink package.

JobManager + TaskManager are the pip package's own scripts (``pyflink/bin``), configured by
``conf/flink/config.yaml`` (copied, with paths filled in, to ``.run/flink/conf``); logs and
pid files live in ``.run/flink``. REST listens on ``_constants.REST_ADDRESS`` (localhost:8081).
Operations on the running cluster (jobs, savepoints) are :mod:`flink_job._rest`'s.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

from flink_job._constants import REST_ADDRESS
from flink_job._rest import FlinkRest
from flink_job.config import project_root, run_dir
from flink_job.errors import EnvironmentNotReadyError

__all__ = [
    "rest_address",
    "start",
    "start_taskmanager",
    "stop",
    "taskmanager_pids",
]

REST = REST_ADDRESS


def rest_address() -> str:
    return REST


def _flink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def _run_dir() -> Path:
    return run_dir() / "flink"


def _env(slots: int | None = None) -> dict[str, str]:
    run = _run_dir()
    conf = run / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    src = project_root() / "conf" / "flink"
    text = (src / "config.yaml").read_text()
    text = text.replace("${CHECKPOINT_DIR}", str(run / "checkpoints"))
    text = text.replace("${SAVEPOINT_DIR}", str(run / "savepoints"))
    # The cluster's own Python: this venv's, whose PyFlink distribution the cluster runs from.
    # Jobs carry it over (flink-job submit, flink run read it from here). Thread mode embeds
    # libpython, which does not read the venv's pyvenv.cfg: site-packages go on its path.
    site_packages = [p for p in site.getsitepackages() if Path(p).is_dir()]
    text += f"\npython.executable: {sys.executable}\n"
    text += f"python.pythonpath: {os.pathsep.join(site_packages)}\n"
    if slots is not None:
        text = re.sub(
            r"(?m)^taskmanager\.numberOfTaskSlots:.*$",
            f"taskmanager.numberOfTaskSlots: {slots}",
            text,
        )
    (conf / "config.yaml").write_text(text)
    shutil.copy(src / "log4j.properties", conf / "log4j.properties")
    (run / "log").mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        FLINK_CONF_DIR=str(conf),
        FLINK_LOG_DIR=str(run / "log"),
        FLINK_PID_DIR=str(run),
        FLINK_HOME=str(_flink_home()),
    )
    return env


def _prepare_distribution() -> None:
    """Thread mode on a standalone cluster needs flink-python in lib/ (FLINK-37727)."""
    home = _flink_home()
    for jar in (home / "opt").glob("flink-python-*.jar"):
        target = home / "lib" / jar.name
        if not target.exists():
            shutil.copy(jar, target)


def _script(name: str, *args: str, slots: int | None = None) -> None:
    bin_dir = _flink_home() / "bin"
    result = subprocess.run(
        ["bash", str(bin_dir / name), *args], env=_env(slots), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise EnvironmentNotReadyError(
            f"{name} {' '.join(args)} failed: {(result.stderr or result.stdout).strip()[-500:]}"
        )


def _ready(taskmanagers: int = 1) -> bool:
    try:
        overview = FlinkRest(REST).call("GET", "/overview", timeout=2)
    except EnvironmentNotReadyError:
        return False
    return int(overview.get("taskmanagers", 0)) >= taskmanagers


def _pids(kind: str) -> list[int]:
    pids = []
    for f in _run_dir().glob(f"flink-*-{kind}.pid"):
        for line in f.read_text().split():
            try:
                pid = int(line)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError):
                continue
            if _is_zombie(pid):  # killed, not yet reaped: gone for our purposes
                continue
            pids.append(pid)
    return pids


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def taskmanager_pids() -> list[int]:
    """Pids of running TaskManagers started by this project."""
    return _pids("taskexecutor")


def start(timeout: float = 120.0, taskmanagers: int = 1, slots: int | None = None) -> str:
    """Start the JobManager and TaskManagers up to ``taskmanagers`` (each with ``slots`` slots,
    default ``conf/flink/config.yaml``'s); wait until that many are registered. Running ones
    are kept: a no-op when enough run."""
    if taskmanagers < 1 or (slots is not None and slots < 1):
        raise EnvironmentNotReadyError(
            f"--taskmanagers {taskmanagers} --slots {slots}: fix: use 1 or more of each"
        )
    if _ready(taskmanagers):
        return REST
    _prepare_distribution()
    if not _pids("standalonesession"):
        _script("jobmanager.sh", "start", slots=slots)
    for _ in range(taskmanagers - len(taskmanager_pids())):
        _script("taskmanager.sh", "start", slots=slots)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ready(taskmanagers):
            return REST
        time.sleep(1)
    raise EnvironmentNotReadyError(
        f"the Flink cluster did not become ready in {timeout:.0f}s; see {_run_dir() / 'log'}"
    )


def start_taskmanager(timeout: float = 120.0) -> None:
    """Start one more TaskManager (e.g. after one was killed) and wait until it registers."""
    rest = FlinkRest(REST)
    before = {tm["id"] for tm in rest.get("/taskmanagers")["taskmanagers"]}
    _script("taskmanager.sh", "start")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = {tm["id"] for tm in rest.get("/taskmanagers")["taskmanagers"]}
        if now - before:
            return
        time.sleep(1)
    raise EnvironmentNotReadyError("the new TaskManager did not register in time")


def stop() -> None:
    """Stop every TaskManager and the JobManager started by this project."""
    for kind in ("taskexecutor", "standalonesession"):
        for pid in _pids(kind):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (_pids("taskexecutor") or _pids("standalonesession")):
        time.sleep(0.5)
    for pid in _pids("taskexecutor") + _pids("standalonesession"):
        os.kill(pid, signal.SIGKILL)
    for f in _run_dir().glob("flink-*.pid"):
        f.unlink()
