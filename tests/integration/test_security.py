"""Kafka security settings pass through to the job; secrets never leak.

The local broker has a SASL/PLAIN listener on 9094 (conf/kafka/server.properties).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.integration.conftest import APPS, ROOT
from tests.integration.kafka_io import create_topic, produce, read_all, unique

APP = str(APPS / "secure_app.py")
RIGHT = "local-test-only-password"


def test_sasl_plain_with_the_right_password_runs_and_logs_no_secret(kafka, run_job, tmp_path):
    source, sink = unique("secure"), unique("features")
    create_topic(kafka, source)
    produce(kafka, source, [(None, json.dumps({"id": f"d{i}"}).encode()) for i in range(20)])
    job = run_job(
        APP, "--sink-topic", sink, "--starting-offsets", "earliest",
        conf=f'[sources.secure]\ntopic = "{source}"\n',
        env={"FLINK_JOB_TEST_SASL_PASSWORD": RIGHT},
    )  # fmt: skip
    rows = read_all(kafka, sink, expect=20, timeout=120)
    assert len(rows) == 20, job.output()[-2000:]
    job.stop()
    assert RIGHT not in job.output()
    for log in (ROOT / ".run" / "logs").glob("*.log"):
        assert RIGHT not in log.read_text(errors="replace"), f"password in {log}"


def test_sasl_plain_with_a_wrong_password_fails_fast_with_one_line(kafka, tmp_path):
    source = unique("secure")
    create_topic(kafka, source)
    conf = tmp_path / "flink-job.toml"
    conf.write_text(f'[sources.secure]\ntopic = "{source}"\n')
    wrong = "wrong-canary-password-42"
    out = subprocess.run(
        [sys.executable, "-m", "flink_job.cli", "run", APP],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "FLINK_JOB_CONF": str(conf),
             "FLINK_JOB_TEST_SASL_PASSWORD": wrong},
    )  # fmt: skip
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("flink-job:")]
    assert len(lines) == 1, out.stderr[-2000:]
    assert "authentic" in lines[0].lower() or "sasl" in lines[0].lower(), lines[0]
    assert wrong not in out.stdout + out.stderr
