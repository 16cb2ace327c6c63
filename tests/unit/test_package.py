"""`flink-job package`: the artifact holds everything a cluster needs, and nothing of here."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from flink_job.config import JobOptions
from flink_job.entry import options_for
from flink_job.errors import ConfigError
from flink_job.package import Artifact, flink_run_command, package

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "logins.py"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    helper = tmp_path_factory.mktemp("helpers") / "ip_tools.py"
    helper.write_text("def octets(ip):\n    return ip.split('.')\n")
    out = tmp_path_factory.mktemp("artifact") / "job"
    options = JobOptions(sink_topic="rows", parallelism=2, checkpoint_interval_ms=2000)
    return package(str(EXAMPLE), out, options, py_files=[str(helper)])


def test_the_artifact_holds_code_wheels_jars_and_the_entry_point(artifact: Artifact) -> None:
    root = artifact.root
    assert (root / "lib" / "logins.py").read_bytes() == EXAMPLE.read_bytes()
    assert (root / "lib" / "ip_tools.py").is_file()
    for package_dir in ("flink_job", "connectors"):
        assert (root / "lib" / package_dir / "__init__.py").is_file()
    assert not list((root / "lib").rglob("__pycache__"))
    # The Kafka connector and the job's own operators (the batched keyed operator).
    assert [j.name for j in artifact.jars] == [
        "flink-sql-connector-kafka-5.0.0-2.2.jar",
        "flink-job-operators-1.jar",
    ]
    assert all(j.is_file() for j in artifact.jars)
    assert "flink_job.entry" in artifact.main.read_text()


def test_requirements_pin_exactly_the_shipped_wheels(artifact: Artifact) -> None:
    pins = artifact.requirements.read_text().split()
    wheels = sorted(artifact.wheels.glob("*.whl"))
    assert len(pins) == len(wheels) and any(p.startswith("pydantic==") for p in pins)
    for pin, wheel in zip(sorted(pins), wheels, strict=True):
        name, version = pin.split("==")
        assert wheel.name.startswith(f"{name}-{version}-")
        assert zipfile.is_zipfile(wheel)
    assert not any(p.lower().startswith(("apache", "flink")) for p in pins)


def test_job_json_holds_the_module_and_options_and_no_savepoint(artifact: Artifact) -> None:
    spec = json.loads((artifact.root / "job.json").read_text())
    assert spec["module"] == "logins"
    assert spec["options"]["sink_topic"] == "rows"
    assert spec["options"]["from_savepoint"] is None
    assert artifact.options().parallelism == 2


def test_flags_given_to_main_override_the_packaged_options(artifact: Artifact) -> None:
    options = options_for(artifact, ["--parallelism", "4", "--checkpoint-interval", "1s"])
    assert (options.parallelism, options.checkpoint_interval_ms) == (4, 1000)
    assert options.sink_topic == "rows"


def test_the_printed_command_is_the_distributions_flink_run(artifact: Artifact) -> None:
    cmd = flink_run_command(artifact, "host:8081", "/usr/bin/python3")
    assert cmd[0].endswith("pyflink/bin/flink") and Path(cmd[0]).is_file()
    assert cmd[1:] == [
        "run",
        "-d",
        "-m",
        "host:8081",
        "-pyclientexec",
        "/usr/bin/python3",
        "-py",
        str(artifact.main),
    ]


def test_a_missing_py_file_or_jar_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        package(str(EXAMPLE), tmp_path / "a", JobOptions(), py_files=["/nonexistent/x.py"])
    with pytest.raises(ConfigError, match="does not exist"):
        package(str(EXAMPLE), tmp_path / "b", JobOptions(), jars=["/nonexistent/x.jar"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
