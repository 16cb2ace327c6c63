"""`flink-job cluster start --taskmanagers N --slots S`: the local cluster scaled out."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.cluster_helpers import REST, ROOT


def flink_job(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flink_job.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cluster_start_with_taskmanagers_and_slots() -> None:
    flink_job("cluster", "stop")  # a cluster left by other tests has its own shape
    try:
        done = flink_job("cluster", "start", "--taskmanagers", "2", "--slots", "2")
        assert done.returncode == 0, done.stderr
        overview = REST.get("/overview")
        assert (overview["taskmanagers"], overview["slots-total"]) == (2, 4)
        # A no-op when enough run.
        again = flink_job("cluster", "start", "--taskmanagers", "2", "--slots", "2")
        assert again.returncode == 0, again.stderr
        assert REST.get("/overview")["taskmanagers"] == 2
    finally:
        flink_job("cluster", "stop")
