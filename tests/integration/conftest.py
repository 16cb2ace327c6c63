"""Integration fixtures: the real local Kafka broker (started by the project's own code) and
jobs run as real `flink-job run` processes on a Flink MiniCluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = Path(__file__).parent / "apps"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka() -> str:
    from flink_job._local import kafka as local_kafka

    return local_kafka.start()


class JobProcess:
    """A `flink-job run` subprocess; stopped (SIGTERM, then kill) at teardown."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flink_job.cli", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._fh.close()


def events_source(kafka: str, folder: Path, partitions: int) -> tuple[str, Path]:
    """A fresh source topic and a conf in ``folder`` whose ``[sources.events]`` reads it, with
    its own dead-letter topic: ``(topic, conf)``."""
    from tests.integration.kafka_io import create_topic, unique

    topic = unique("events")
    create_topic(kafka, topic, partitions=partitions)
    conf = folder / "flink-job.toml"
    conf.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n'
        f'[sources.events]\ntopic = "{topic}"\ndead_letter_queue_topic = "{unique("dlq")}"\n'
    )
    return topic, conf


@pytest.fixture
def topics(kafka: str, tmp_path: Path) -> tuple[str, str, Path]:
    """:func:`events_source` with 2 partitions, and a fresh sink topic name:
    ``(source, sink, conf)``."""
    from tests.integration.kafka_io import unique

    source, conf = events_source(kafka, tmp_path, partitions=2)
    return source, unique("features"), conf


@pytest.fixture(autouse=True)
def _no_job_left_on_the_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test on the local cluster, cancel what it left active: a job of the same name
    would be refused by the next test's submit (a failed test may leave one restarting)."""
    yield
    if "cluster" not in request.fixturenames:
        return
    from flink_job._rest import ACTIVE
    from tests.integration import cluster_helpers as ch

    for j in ch.REST.jobs():
        if j.get("state") in ACTIVE:
            ch.cancel(j["jid"])


@pytest.fixture(scope="module")
def cluster(kafka: str) -> str:
    """The standalone Flink cluster (started once; a no-op when it is already running)."""
    from flink_job._local import cluster as local_cluster

    return local_cluster.start()


@pytest.fixture
def run_job(tmp_path: Path, kafka: str) -> Iterator[object]:
    jobs: list[JobProcess] = []

    def start(target: str, *flags: str, conf: str = "", env: dict[str, str] | None = None):
        conf_file = tmp_path / f"flink-job-{len(jobs)}.toml"
        conf_file.write_text(conf)
        full_env = {
            **os.environ,
            "FLINK_JOB_CONF": str(conf_file),
            "FLINK_JOB_KAFKA_BOOTSTRAP_SERVERS": kafka,
            **(env or {}),
        }
        job = JobProcess(
            [
                target,
                "--checkpoint-interval",
                "1000",
                "--checkpoint-dir",
                str(tmp_path / "checkpoints"),
                *flags,
            ],
            full_env,
            tmp_path / f"job-{len(jobs)}.log",
        )
        jobs.append(job)
        return job

    yield start
    for job in jobs:
        job.stop()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
