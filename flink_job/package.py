"""``flink-job package``: a job artifact that any Flink cluster of the pinned version can run,
independent of this machine (no path of it travels with the job).

Layout of the artifact directory::

    main.py           entry point: `flink run -py main.py`, PythonDriver `-py main.py`; builds
                      and submits the job where it runs (:mod:`flink_job.entry`)
    job.json          what to run: the resolver module, the job options, jars, target Python
    lib/              python.files: the resolver module (and --py-files), flink_job, connectors
    requirements.txt  python.requirements: Flink installs these on every TaskManager, offline,
    wheels/           from these wheels (built for the cluster's Python version and platform)
    jars/             pipeline.jars: the Kafka connector jar (and any extra jars)

Why python.requirements with a wheel directory rather than python.archives: the cluster's own
Python (with apache-flink) stays the interpreter, so the artifact holds only what is missing
(~5 MB of wheels instead of a ~600 MB environment with pyflink in it); wheels are chosen for the
cluster's Python at package time (``--python-version``/``--platform``), where a zipped
environment is tied to the interpreter and paths it was built with; and the client side
(`flink run`, PythonDriver) unpacks the same wheels without pip.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from flink_job.config import JobOptions, conf_path, home, run_dir
from flink_job.errors import ConfigError, EnvironmentNotReadyError
from flink_job.loader import import_target

__all__ = ["Artifact", "flink_run_command", "package"]

FORMAT = 1
# What flink_job needs at run time besides apache-flink (pinned to the versions installed here).
THIRD_PARTY = ("pydantic",)
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "_home", "maven")

MAIN = '''"""flink-job packaged job (written by `flink-job package`): builds the job and submits it
from wherever this runs.

    flink run [-d] [-s SAVEPOINT] -pyclientexec PYTHON -py main.py [job flags]   session cluster
    PythonDriver -pyclientexec PYTHON -py main.py [job flags]                     application mode

PYTHON needs only apache-flink: flink_job and the resolvers are in lib/; the other Python
dependencies are unpacked from wheels/ here when PYTHON lacks them, and installed from the
same wheels on every TaskManager by Flink (python.requirements).
"""

import hashlib
import os
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _dependencies():
    sys.path.insert(0, os.path.join(HERE, "lib"))
    try:
        import pydantic  # noqa: F401
        return
    except ImportError:
        pass
    wheels = os.path.join(HERE, "wheels")
    names = sorted(os.listdir(wheels))
    key = hashlib.sha256("\\n".join(names).encode()).hexdigest()[:16]
    target = os.path.join(tempfile.gettempdir(), "flink-job-deps-" + key)
    if not os.path.isdir(target):
        tmp = tempfile.mkdtemp(prefix="flink-job-deps-")
        for name in names:
            with zipfile.ZipFile(os.path.join(wheels, name)) as wheel:
                wheel.extractall(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process unpacked them first
            pass
    sys.path.insert(1, target)


if __name__ == "__main__":
    _dependencies()
    from flink_job.entry import main

    sys.exit(main(HERE, sys.argv[1:]))
'''


def _inside(artifact: Artifact, name: str) -> Path:
    return artifact.root / name


@dataclasses.dataclass(frozen=True)
class Artifact:
    """A packaged job on disk (see the module docstring for the layout)."""

    root: Path
    spec: dict[str, Any]

    # Where its parts are (paths inside root).
    main = property(lambda self: _inside(self, "main.py"))
    lib = property(lambda self: _inside(self, "lib"))
    requirements = property(lambda self: _inside(self, "requirements.txt"))
    wheels = property(lambda self: _inside(self, "wheels"))

    @property
    def jars(self) -> list[Path]:
        return [self.root / j for j in self.spec["jars"]]

    @property
    def module(self) -> str:
        return str(self.spec["module"])

    def options(self) -> JobOptions:
        return JobOptions(**self.spec["options"])

    @classmethod
    def load(cls, root: Path) -> Artifact:
        path = root / "job.json"
        if not path.is_file():
            raise ConfigError(f"{root} is not a flink-job artifact (no job.json)")
        return cls(root, json.loads(path.read_text()))


def package(
    target: str,
    out: str | Path,
    options: JobOptions,
    *,
    python_version: str | None = None,
    platform: str | None = None,
    py_files: Sequence[str] = (),
    jars: Sequence[str | Path] = (),
) -> Artifact:
    """Write the artifact for the resolvers in ``target`` to ``out`` (replaced if it exists).

    Args:
        target: a .py file or a module name (as for ``flink-job run``).
        out: the artifact directory.
        options: job options baked in (flags given to ``main.py`` override them).
        python_version: the cluster's Python as ``3.11`` (default: this Python's).
        platform: a wheel platform tag such as ``manylinux2014_x86_64`` (default: this one).
        py_files: local modules or packages the resolver module imports.
        jars: jars the job needs besides the Kafka connector.
    """
    from connectors.jars import job_jars

    module = import_target(target)
    name = module.__name__
    root = Path(out).resolve()
    tmp = Path(tempfile.mkdtemp(prefix=".flink-job-package-", dir=root.parent))
    try:
        lib = tmp / "lib"
        lib.mkdir()
        _copy_module(module, lib)
        for extra in py_files:
            _copy_into(Path(extra), lib)
        import connectors
        import flink_job

        shutil.copytree(Path(flink_job.__file__).parent, lib / "flink_job", ignore=_SKIP)
        shutil.copytree(Path(connectors.__file__).parent, lib / "connectors", ignore=_SKIP)
        conf = conf_path()
        if conf.is_file():  # per-source settings; the artifact's flink_job reads it as its conf
            (lib / "flink_job" / "_home" / "conf").mkdir(parents=True)
            shutil.copy(conf, lib / "flink_job" / "_home" / "conf" / "flink-job.toml")
        version = python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"
        wheels = _wheels(version, platform)
        shutil.copytree(wheels, tmp / "wheels")
        (tmp / "requirements.txt").write_text(
            "".join(f"{_requirement(w.name)}\n" for w in sorted(wheels.glob("*.whl")))
        )
        (tmp / "jars").mkdir()
        jar_names = []
        for jar in [*job_jars(home()), *map(Path, jars)]:
            if not jar.is_file():
                raise ConfigError(f"jar {jar} does not exist; fix: pass an existing jar")
            shutil.copy(jar, tmp / "jars" / jar.name)
            jar_names.append(f"jars/{jar.name}")
        values = dataclasses.asdict(options)
        values.update(from_savepoint=None, allow_non_restored_state=False)
        spec = {
            "format": FORMAT,
            "module": name,
            "options": values,
            "jars": jar_names,
            "python": {"version": version, "platform": platform or "this client's"},
            "flink": metadata.version("apache-flink"),
        }
        (tmp / "job.json").write_text(json.dumps(spec, indent=2) + "\n")
        (tmp / "main.py").write_text(MAIN)
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Artifact(root, spec)


def _copy_module(module: Any, lib: Path) -> None:
    """The resolver module: its file, or its top-level package if it lives in one."""
    file = getattr(module, "__file__", None)
    if not file:
        raise ConfigError(f"module {module.__name__!r} has no source file to package")
    top = module.__name__.split(".")[0]
    if top == module.__name__:
        shutil.copy(file, lib / Path(file).name)
    else:
        package_dir = Path(sys.modules[top].__file__ or "").parent
        shutil.copytree(package_dir, lib / top, ignore=_SKIP)


def _copy_into(path: Path, lib: Path) -> None:
    if path.is_dir():
        shutil.copytree(path, lib / path.name, ignore=_SKIP)
    elif path.is_file():
        shutil.copy(path, lib / path.name)
    else:
        raise ConfigError(f"--py-files {path}: no such file or directory", field="py_files")


def _requirement(wheel: str) -> str:
    name, version = wheel.split("-")[:2]
    return f"{name}=={version}"


def _wheels(version: str, platform: str | None) -> Path:
    """Wheels of :data:`THIRD_PARTY` and their dependencies for the target Python, fetched with
    pip once and cached under the run directory."""
    pins = [f"{p}=={metadata.version(p)}" for p in THIRD_PARTY]
    key = "-".join([f"py{version}", platform or "native", *pins]).replace("=", "")
    cache = run_dir() / "wheels" / key
    if cache.is_dir() and any(cache.glob("*.whl")):
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache.parent))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--dest", str(tmp), *pins]
    native = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if platform or version != native:
        cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version", version]
        if platform:
            cmd += ["--platform", platform]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentNotReadyError(
            f"could not get wheels of {', '.join(pins)} for Python {version} "
            f"({platform or 'this platform'}): {last}; fix: check --python-version/--platform "
            "and that pip can reach its index (or its cache holds them)"
        )
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)
    return cache


def flink_run_command(
    artifact: Artifact, jobmanager: str | None = None, python: str | None = None
) -> list[str]:
    """The distribution's own ``flink run`` for ``artifact`` (detached)."""
    import pyflink

    flink = Path(pyflink.__file__).parent / "bin" / "flink"
    cmd = [str(flink), "run", "-d"]
    if jobmanager:
        cmd += ["-m", jobmanager]
    return [*cmd, "-pyclientexec", python or sys.executable, "-py", str(artifact.main)]
