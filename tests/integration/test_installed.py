"""Installed, not checked out: a built wheel of flink-job, installed elsewhere, works from any
directory and finds its default conf and the connector jar without this checkout.

Building the wheel needs pip to get the build backend (setuptools>=68, pyproject.toml) from its
index or cache: in a network namespace without network it fails at setup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
        check=True,
        cwd=wheels,
    )
    target = tmp_path_factory.mktemp("site")
    wheel = next(wheels.glob("flink_job-*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    return target


def flink_job(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Dependencies (pyflink, pydantic) from this venv; flink_job only from the installed copy
    # (PYTHONPATH comes before this venv's editable install of the checkout).
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLINK_JOB_")}
    env.update(PYTHONPATH=str(installed), XDG_STATE_HOME=str(cwd / "state"))
    return subprocess.run(
        [str(installed / "bin" / "flink-job"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_installed_flink_job_packages_a_job_from_another_directory(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(ROOT / "examples" / "logins.py", work / "logins.py")
    where = subprocess.run(
        [sys.executable, "-c", "import flink_job.config as c; print(c.__file__, c.home()[0])"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        check=True,
    )
    module, home = where.stdout.split()
    assert module.startswith(str(installed)) and home.startswith(str(installed)), where.stdout
    done = flink_job(installed, work, "package", "logins.py", "-o", "job")
    assert done.returncode == 0, done.stderr
    jars = list((work / "job" / "jars").glob("flink-sql-connector-kafka-*.jar"))
    assert len(jars) == 1
    assert (work / "job" / "lib" / "flink_job" / "_home" / "conf" / "flink-job.toml").is_file()


def test_installed_without_the_jar_names_where_it_looked_and_the_fix(installed, tmp_path):
    for jar in (installed / "flink_job" / "_home" / "build" / "jars" / "flink").glob("*.jar"):
        jar.unlink()
    shutil.copy(ROOT / "examples" / "logins.py", tmp_path / "logins.py")
    done = flink_job(installed, tmp_path, "package", "logins.py", "-o", "job")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "installed package" in lines[0] and "FLINK_JOB_HOME" in lines[0], lines[0]
    assert "FLINK_JOB_KAFKA_CONNECTOR_JAR" in lines[0]
