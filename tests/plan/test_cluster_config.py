"""A job for a cluster carries no path of this machine; local runs use this venv's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flink_job.config import JobOptions
from flink_job.job import flink_configuration

CLIENT_PATHS = (
    "python.executable",
    "python.client.executable",
    "python.pythonpath",
    "pipeline.jars",
    "execution.checkpointing.dir",
)


def settings(options: JobOptions, cluster: bool) -> dict[str, str]:
    return dict(flink_configuration(options, cluster=cluster).to_dict())


def test_a_cluster_job_sends_no_client_path() -> None:
    config = settings(JobOptions(), cluster=True)
    assert not set(CLIENT_PATHS) & set(config), config
    root = str(Path(__file__).resolve().parents[2])
    assert not any(root in v or sys.prefix in v for v in config.values()), config


def test_a_cluster_job_takes_the_given_python_and_checkpoint_dir(tmp_path: Path) -> None:
    options = JobOptions(python_executable="/opt/py/bin/python3", checkpoint_dir=str(tmp_path))
    config = settings(options, cluster=True)
    assert config["python.executable"] == "/opt/py/bin/python3"
    assert config["execution.checkpointing.dir"] == tmp_path.as_uri()


def test_local_runs_use_this_python() -> None:
    config = settings(JobOptions(), cluster=False)
    assert config["python.executable"] == sys.executable


@pytest.mark.parametrize("cluster", [True, False])
def test_max_parallelism_is_explicit(cluster: bool) -> None:
    assert settings(JobOptions(), cluster)["pipeline.max-parallelism"] == "128"
    assert settings(JobOptions(max_parallelism=256), cluster)["pipeline.max-parallelism"] == "256"


@pytest.mark.parametrize("cluster", [True, False])
def test_rocksdb_state_gets_bloom_filters_and_hashmap_state_no_rocksdb_setting(
    cluster: bool,
) -> None:
    rocksdb = settings(JobOptions(state_backend="rocksdb"), cluster)
    assert rocksdb["state.backend.type"] == "rocksdb"
    assert rocksdb["state.backend.rocksdb.use-bloom-filter"] == "true"
    hashmap = settings(JobOptions(state_backend="hashmap"), cluster)
    assert hashmap["state.backend.type"] == "hashmap"
    assert not [k for k in hashmap if k.startswith("state.backend.rocksdb.")], hashmap
