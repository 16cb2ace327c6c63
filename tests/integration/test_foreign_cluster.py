"""Deploying to a Flink cluster that is not this checkout (issue 11).

The cluster (:mod:`tests.integration.foreign_cluster`) runs a second Python environment with
only apache-flink, its own config, JobManager + 2 TaskManagers x 2 slots, in a mount namespace
where this checkout does not exist. Everything the job needs must travel with it. Output is
read with read_committed and checked exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration import cluster_helpers as ch
from tests.integration.conftest import APPS, events_source, wait_for
from tests.integration.foreign_cluster import ForeignCluster
from tests.integration.kafka_io import create_topic, produce, read_all, unique

if os.geteuid() != 0:  # CI runs as root on this machine kind
    pytest.skip("the foreign cluster needs root (mount namespaces)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
APP = str(APPS / "count_events.py")
USERS = 10


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("foreign")


@pytest.fixture(scope="module")
def foreign(workdir: Path, kafka: str) -> Iterator[ForeignCluster]:
    cluster = ForeignCluster(workdir / "cluster")
    try:
        assert not cluster.checkout_visible(), "the checkout must not be visible to the cluster"
        cluster.start(taskmanagers=2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def source(kafka: str, tmp_path: Path) -> tuple[str, Path]:
    return events_source(kafka, tmp_path, partitions=4)


def cli(
    *args: str, conf: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flink_job.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FLINK_JOB_CONF": str(conf), **(env or {})},
    )


def submit(cluster: ForeignCluster, conf: Path, *flags: str) -> str:
    done = cli(
        "submit",
        APP,
        "--jobmanager",
        f"localhost:{cluster.rest_port}",
        "--checkpoint-interval",
        "1s",
        *flags,
        conf=conf,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def stop(cluster: ForeignCluster, job: str, conf: Path) -> str:
    """``flink-job stop`` with a savepoint; returns the savepoint's path."""
    done = cli(
        "stop",
        job,
        "--jobmanager",
        f"localhost:{cluster.rest_port}",
        "--savepoint-dir",
        str(cluster.base / "savepoints"),
        conf=conf,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def package(artifact: Path, sink: str, job_name: str, conf: Path) -> str:
    """``flink-job package`` of the app, reading from earliest; returns the printed command."""
    done = cli(
        "package",
        APP,
        "-o",
        str(artifact),
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        "--checkpoint-interval",
        "1s",
        "--job-name",
        job_name,
        conf=conf,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def counts(kafka: str, topic: str, expect: int) -> dict[str, list[int]]:
    rows = read_all(kafka, topic, expect=expect, timeout=180)
    out: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        v = json.loads(r.value)
        out[v["user.id"]].append(v["user.events"])
    assert len(rows) == expect, f"{len(rows)} rows, expected {expect}"
    return {u: sorted(c) for u, c in out.items()}


def exact(first: int, last: int) -> dict[str, list[int]]:
    return {f"u{u}": list(range(first, last + 1)) for u in range(USERS)}


def job_names(cluster: ForeignCluster) -> list[str]:
    return [j["name"] for j in cluster.rest.get("/jobs/overview")["jobs"]]


def test_submit_stop_with_savepoint_and_rescale_2_to_1_and_4(foreign, kafka, source, tmp_path):
    topic, conf = source
    produce(kafka, topic, ch.events(users=USERS, per_user=5))
    sink = unique("features")
    job = submit(
        foreign,
        conf,
        "--parallelism",
        "2",
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        "--job-name",
        unique("p2"),
    )
    assert counts(kafka, sink, expect=USERS * 5) == exact(1, 5)
    # The job carried no client path (its Python, site-packages, checkout, checkpoints).
    details = foreign.rest.job(job)
    shown = json.dumps([foreign.rest.get(f"/jobs/{job}/config"), details])
    assert str(ROOT.parent) not in shown, shown
    assert {v["maxParallelism"] for v in details["vertices"]} == {128}, details["vertices"]
    savepoint = stop(foreign, job, conf)

    produce(kafka, topic, ch.events(users=USERS, per_user=5, start=5))
    # Both restores start from the one savepoint and write to the same sink (its uid derives
    # from the topic): counts 6..10 once per restore, after 1..5 of the first job.
    expected = exact(1, 5)
    for parallelism in ("1", "4"):
        job = submit(
            foreign,
            conf,
            "--parallelism",
            parallelism,
            "--sink-topic",
            sink,
            "--from-savepoint",
            savepoint,
            "--job-name",
            unique(f"p{parallelism}"),
        )
        expected = {u: sorted(c + list(range(6, 11))) for u, c in expected.items()}
        rows = sum(len(c) for c in expected.values())
        assert counts(kafka, sink, expect=rows) == expected
        assert max(v["parallelism"] for v in foreign.rest.job(job)["vertices"]) == int(parallelism)
        # Stopped with a savepoint (not cancelled): no open transaction holds back readers.
        stop(foreign, job, conf)


def ch_wait_gone(cluster: ForeignCluster, job: str) -> None:
    wait_for(
        lambda: cluster.rest.job(job)["state"] in ("CANCELED", "FINISHED", "FAILED"),
        60,
        f"job {job} to end",
    )


def test_packaged_artifact_runs_with_the_distributions_flink_run(foreign, kafka, source, tmp_path):
    topic, conf = source
    sink = unique("features")
    create_topic(kafka, sink)
    artifact = tmp_path / "artifact"
    printed = package(artifact, sink, unique("flink-run"), conf)
    assert printed.split()[1:3] == ["run", "-d"] and printed.endswith(f"-py {artifact}/main.py")
    produce(kafka, topic, ch.events(users=USERS, per_user=4))
    # The distribution's own CLI and the cluster's Python (no flink-job, no pydantic), in the
    # namespace without the checkout; job flags after main.py override the packaged options.
    run = foreign.ns.run(
        str(foreign.home / "bin" / "flink"),
        "run",
        "-d",
        "-m",
        f"localhost:{foreign.rest_port}",
        "-pyclientexec",
        str(foreign.python),
        "-py",
        str(artifact / "main.py"),
        "--parallelism",
        "2",
        env=foreign.env(),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    job = next(line.split()[2] for line in run.stdout.splitlines() if "flink-job: job" in line)
    try:
        assert counts(kafka, sink, expect=USERS * 4) == exact(1, 4)
    finally:
        foreign.rest.call("PATCH", f"/jobs/{job}?mode=cancel")
        ch_wait_gone(foreign, job)


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        (["--python-executable", "/nonexistent/bin/python3"], {}, "does not exist"),
        (["--python-executable", getattr(sys, "_base_executable", "")], {}, "lacks apache-flink"),
        ([], {"FLINK_JOB_KAFKA_CONNECTOR_JAR": "/nonexistent/connector.jar"}, "connector.jar"),
    ],
    ids=["python-nowhere", "python-without-apache-flink", "missing-jar"],
)
def test_bad_setups_fail_submit_with_one_line_and_submit_nothing(
    foreign, kafka, source, flags, env, expected
):
    _, conf = source
    name = unique("bad")
    done = cli(
        "submit",
        APP,
        "--jobmanager",
        f"localhost:{foreign.rest_port}",
        "--job-name",
        name,
        *flags,
        conf=conf,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flink-job: error:"), done.stderr[-3000:]
    assert expected in lines[0]
    assert name not in job_names(foreign)


def test_application_mode_runs_the_artifact_through_python_driver(foreign, kafka, source, tmp_path):
    """standalone-job.sh + PythonDriver: what the Kubernetes Operator runs (deploy/)."""
    topic, conf = source
    sink = unique("features")
    create_topic(kafka, sink)
    artifact = tmp_path / "artifact"
    package(artifact, sink, unique("application"), conf)
    produce(kafka, topic, ch.events(users=USERS, per_user=3))
    env = foreign.env("application", rest=8191, rpc=6233)
    try:
        foreign.script(
            "standalone-job.sh",
            "start",
            "--job-classname",
            "org.apache.flink.client.python.PythonDriver",
            "-pyclientexec",
            str(foreign.python),
            "-py",
            str(artifact / "main.py"),
            env=env,
        )
        foreign.script("taskmanager.sh", "start", env=env)
        assert counts(kafka, sink, expect=USERS * 3) == exact(1, 3)
    finally:
        foreign.stop_started(foreign.base / "application")
