"""A Flink cluster that is not this checkout, for the deployment tests.

Its Python is a second environment at another path holding only ``apache-flink`` (no
flink-job, no pydantic), created once and cached under ``build/test-envs/``. Its JobManager and
TaskManagers run from that environment's Flink distribution, with their own configuration
(``python.executable`` pointing at that Python), inside a mount namespace in which the folder
holding this checkout (``/work`` here) is an empty tmpfs: anything that still relies on a path
of the client (its venv, its site-packages, its checkout) fails there. The namespace is held
open by one ``sleep`` process; every cluster command enters it with ``nsenter``. Ports differ
from the local cluster's (REST 8181, RPC 6223), so both can run at once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from flink_job._rest import FlinkRest

ROOT = Path(__file__).resolve().parents[2]
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"
ENV_DIR = ROOT / "build" / "test-envs" / f"flink-only-py{PY.replace('.', '')}"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def flink_only_python() -> Path:
    """The cached environment with only apache-flink (created on first use: a few minutes)."""
    ready = ENV_DIR / ".ready"
    if ready.is_file():
        return ENV_DIR
    if not flink_home(ENV_DIR).is_dir():  # created under another name, renamed when complete
        _create_env()
    # Thread mode on a standalone cluster needs flink-python in lib/ (FLINK-37727): part of
    # this cluster's own setup, like its config's parent-first pemja pattern.
    home = flink_home(ENV_DIR)
    for jar in (home / "opt").glob("flink-python-*.jar"):
        shutil.copy(jar, home / "lib" / jar.name)
    ready.write_text(f"apache-flink=={metadata.version('apache-flink')}\n")
    return ENV_DIR


def _create_env() -> None:
    tmp = ENV_DIR.with_name(ENV_DIR.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter, not this venv
    subprocess.run([base, "-m", "venv", str(tmp)], check=True)
    flink = metadata.version("apache-flink")
    subprocess.run(
        [str(tmp / "bin" / "python"), "-m", "pip", "install", "-q", f"apache-flink=={flink}"],
        check=True,
    )
    shutil.rmtree(ENV_DIR, ignore_errors=True)
    tmp.rename(ENV_DIR)


def flink_home(python_env: Path) -> Path:
    return python_env / "lib" / f"python{PY}" / "site-packages" / "pyflink"


def hidden_root(base: Path) -> Path:
    """The top-level folder holding the checkout (``/work``), unless the cluster's own files
    live under it too: then the checkout alone."""
    top = ROOT.parents[len(ROOT.parents) - 2]
    return ROOT if base.is_relative_to(top) else top


class Namespace:
    """A private mount namespace: ``binds`` mounted (source -> target), then an empty tmpfs
    over ``hidden``. Held open by a ``sleep`` until :meth:`close`."""

    def __init__(self, binds: dict[Path, Path], hidden: Path) -> None:
        script = "set -e\n"
        for source, target in binds.items():
            target.mkdir(parents=True, exist_ok=True)
            script += f"mount --bind '{source}' '{target}'\n"
        script += f"mount -t tmpfs -o size=1m flink-job-hidden '{hidden}'\necho ready\n"
        script += "exec sleep infinity\n"
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.close()
            raise RuntimeError(f"could not set up the mount namespace (got {line!r})")

    def command(self, *cmd: str) -> list[str]:
        return ["nsenter", "-t", str(self.proc.pid), "-m", "--", *cmd]

    def run(
        self, *cmd: str, env: dict[str, str], timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*cmd), env=env, capture_output=True, text=True, timeout=timeout
        )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _config(base: Path, rest: int, rpc: int, python: Path) -> str:
    text = (ROOT / "conf" / "flink" / "config.yaml").read_text()
    text = text.replace("${CHECKPOINT_DIR}", str(base / "checkpoints"))
    text = text.replace("${SAVEPOINT_DIR}", str(base / "savepoints"))
    replaced = {
        "rest.port": str(rest),
        "jobmanager.rpc.port": str(rpc),
        "taskmanager.numberOfTaskSlots": "2",
        "taskmanager.memory.process.size": "1600m",
        "jobmanager.memory.process.size": "1024m",
    }
    lines = [
        f"{line.split(':', 1)[0]}: {replaced[line.split(':', 1)[0]]}"
        if line.split(":", 1)[0] in replaced
        else line
        for line in text.splitlines()
    ]
    lines.append(f"python.executable: {python}")
    # A venv: thread mode embeds libpython, which does not read pyvenv.cfg.
    lines.append(f"python.pythonpath: {python.parent.parent}/lib/python{PY}/site-packages")
    return "\n".join(lines) + "\n"


class ForeignCluster:
    """JobManager + TaskManagers of the flink-only environment, in a namespace without the
    checkout. ``base`` (outside the checkout's top folder) holds its config, logs, pid files,
    checkpoints and savepoints; the environment is bind-mounted to ``base/python``."""

    def __init__(self, base: Path, rest: int = 8181, rpc: int = 6223) -> None:
        self.base = base
        self.rest_port = rest
        self.rest = FlinkRest(f"localhost:{rest}")
        self.python_env = base / "python"
        self.python = self.python_env / "bin" / "python"
        self.home = flink_home(self.python_env)
        self.ns = Namespace({flink_only_python(): self.python_env}, hidden_root(base))
        self._rpc = rpc
        self._started: list[Path] = []  # pid dirs of what was started

    def env(
        self, name: str = "session", rest: int | None = None, rpc: int | None = None
    ) -> dict[str, str]:
        """The environment of the cluster's commands (and a config of its own, ``name``)."""
        conf = self.base / name / "conf"
        if not conf.is_dir():
            conf.mkdir(parents=True)
            (conf / "config.yaml").write_text(
                _config(self.base, rest or self.rest_port, rpc or self._rpc, self.python)
            )
            shutil.copy(ROOT / "conf" / "flink" / "log4j.properties", conf)
            (self.base / name / "log").mkdir()
        return {
            # Its Python first on PATH, as on a host or image set up for PyFlink: pemja's
            # embedded interpreter finds its home through the `python` on PATH.
            "PATH": f"{self.python.parent}:{CLEAN_PATH}",
            "HOME": os.environ.get("HOME", "/root"),
            "FLINK_CONF_DIR": str(conf),
            "FLINK_LOG_DIR": str(self.base / name / "log"),
            "FLINK_PID_DIR": str(self.base / name),
            **({"JAVA_HOME": os.environ["JAVA_HOME"]} if "JAVA_HOME" in os.environ else {}),
        }

    def script(self, name: str, *args: str, env: dict[str, str]) -> None:
        done = self.ns.run("bash", str(self.home / "bin" / name), *args, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed: {done.stderr[-2000:]}")
        if Path(env["FLINK_PID_DIR"]) not in self._started:
            self._started.append(Path(env["FLINK_PID_DIR"]))

    def checkout_visible(self) -> bool:
        return (
            self.ns.run("test", "-e", str(ROOT / "pyproject.toml"), env=self.env()).returncode == 0
        )

    def start(self, taskmanagers: int = 2, timeout: float = 180) -> None:
        env = self.env()
        self.script("jobmanager.sh", "start", env=env)
        for _ in range(taskmanagers):
            self.script("taskmanager.sh", "start", env=env)
        wait_ready(self.rest, taskmanagers, timeout)

    def stop(self) -> None:
        """Stop everything started (by pid), then release the namespace."""
        self.stop_started(*self._started)
        self.ns.close()

    def stop_started(self, *folders: Path) -> None:
        """Stop the processes whose pid files are in ``folders`` (TERM, then KILL)."""
        pids = []
        for folder in folders:
            for f in folder.glob("flink-*.pid"):
                pids += [int(p) for p in f.read_text().split() if p.strip().isdigit()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_ready(rest: FlinkRest, taskmanagers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if int(rest.call("GET", "/overview", timeout=2).get("taskmanagers", 0)) >= taskmanagers:
                return
        except Exception:
            pass
        time.sleep(1)
    raise AssertionError(f"{rest.base}: {taskmanagers} TaskManagers not registered in {timeout}s")
