"""Drive the standalone cluster through the project's CLI, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flink_job._constants import REST_ADDRESS
from flink_job._rest import FlinkRest

ROOT = Path(__file__).resolve().parents[2]
REST = FlinkRest(REST_ADDRESS)


def cli(*args: str, conf: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLINK_JOB_CONF": str(conf)}
    result = subprocess.run(
        [sys.executable, "-m", "flink_job.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"flink-job {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result


def submit(target: str, *flags: str, conf: Path, checkpoints: Path) -> str:
    out = cli(
        "submit",
        target,
        "--checkpoint-interval",
        "1000",
        "--checkpoint-dir",
        str(checkpoints),
        *flags,
        conf=conf,
    )
    return out.stdout.strip().splitlines()[-1]


def stop(job_id: str, savepoints: Path, conf: Path) -> str:
    return cli("stop", job_id, "--savepoint-dir", str(savepoints), conf=conf).stdout.strip()


def state(job_id: str) -> str:
    return str(REST.job(job_id)["state"])


def cancel(job_id: str) -> None:
    """Cancel the job and wait until it has ended (the next test may submit the same module:
    an active job of that name would be refused)."""
    try:
        REST.call("PATCH", f"/jobs/{job_id}?mode=cancel")
        wait_state(job_id, {"CANCELED", "FINISHED", "FAILED"}, timeout=60)
    except Exception:
        pass


def wait_state(job_id: str, states: set[str], timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = state(job_id)
        if s in states:
            return s
        time.sleep(1)
    raise AssertionError(f"job {job_id} not in {states} after {timeout}s (is {state(job_id)})")


def events(users: int, per_user: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [
        (f"u{u}".encode(), json.dumps({"user_id": f"u{u}", "seq": s}).encode())
        for s in range(start, start + per_user)
        for u in range(users)
    ]
