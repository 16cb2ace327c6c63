"""Kafka security settings pass through to the job; secrets never leak.

The local broker has a SASL/PLAIN listener on 9094 (conf/kafka/server.properties).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration import cluster_helpers as ch
from tests.integration.conftest import APPS, ROOT
from tests.integration.kafka_io import create_topic, produce, read_all, unique

APP = str(APPS / "secure_app.py")
RIGHT = "local-test-only-password"


def test_sasl_plain_with_the_right_password_runs_and_logs_no_secret(kafka, run_job, tmp_path):
    source, sink = unique("secure"), unique("features")
    canary = unique("ssl-canary")
    create_topic(kafka, source)
    produce(kafka, source, [(None, json.dumps({"id": f"d{i}"}).encode()) for i in range(20)])
    job = run_job(
        APP,
        "--sink-topic",
        sink,
        "--starting-offsets",
        "earliest",
        conf=f'[sources.secure]\ntopic = "{source}"\n',
        env={"FLINK_JOB_TEST_SASL_PASSWORD": RIGHT, "FLINK_JOB_TEST_SSL_CANARY": canary},
    )
    rows = read_all(kafka, sink, expect=20, timeout=120)
    assert len(rows) == 20, job.output()[-2000:]
    job.stop()
    for secret in (RIGHT, canary):
        assert secret not in job.output()
        for log in (ROOT / ".run" / "logs").glob("*.log*"):
            assert secret not in log.read_text(errors="replace"), f"secret in {log}"


def test_no_secret_in_the_clusters_rest_api_or_logs(cluster, kafka, tmp_path):
    """Submitted to the standalone cluster: the job works over SASL, and neither the password
    nor the SSL canaries appear in anything the cluster serves or writes."""
    source, sink = unique("secure"), unique("features")
    canary = unique("ssl-canary")
    create_topic(kafka, source)
    produce(kafka, source, [(None, json.dumps({"id": f"d{i}"}).encode()) for i in range(20)])
    conf = tmp_path / "flink-job.toml"
    conf.write_text(
        f'[kafka]\nbootstrap_servers = "{kafka}"\n[sources.secure]\ntopic = "{source}"\n'
    )
    env = {"FLINK_JOB_TEST_SASL_PASSWORD": RIGHT, "FLINK_JOB_TEST_SSL_CANARY": canary}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        out = ch.cli(
            "submit",
            APP,
            "--sink-topic",
            sink,
            "--starting-offsets",
            "earliest",
            "--checkpoint-interval",
            "1000",
            "--checkpoint-dir",
            str(tmp_path / "ck"),
            conf=conf,
        )
    job = out.stdout.strip().splitlines()[-1]
    try:
        rows = read_all(kafka, sink, expect=20, timeout=120)
        assert len(rows) == 20
        served = [out.stdout + out.stderr]
        for path in (
            f"/jobs/{job}",
            f"/jobs/{job}/config",
            f"/jobs/{job}/plan",
            f"/jobs/{job}/jobmanager/config",
            f"/jobs/{job}/jobmanager/environment",
            f"/jobs/{job}/exceptions",
            f"/jobs/{job}/checkpoints/config",
            "/jobmanager/config",
            "/jobmanager/environment",
            "/overview",
        ):
            served.append(json.dumps(ch.REST.get(path)))
        for tm in ch.REST.get("/taskmanagers")["taskmanagers"]:
            served.append(json.dumps(ch.REST.get(f"/taskmanagers/{tm['id']}")))
        vertices = ch.REST.job(job)["vertices"]
        assert any("src_mark_seen" in v["name"] for v in vertices)
        for v in vertices:
            served.append(json.dumps(ch.REST.get(f"/jobs/{job}/vertices/{v['id']}")))
        logs = list((ROOT / ".run" / "flink" / "log").glob("*"))
        assert logs, "the cluster writes logs under .run/flink/log"
        for secret in (RIGHT, canary):
            for text in served:
                assert secret not in text, text[:300]
            for log in logs:
                assert secret not in log.read_text(errors="replace"), f"secret in {log}"
    finally:
        ch.cancel(job)


def test_sasl_plain_with_a_wrong_password_fails_fast_with_one_line(kafka, tmp_path):
    source = unique("secure")
    create_topic(kafka, source)
    conf = tmp_path / "flink-job.toml"
    conf.write_text(f'[sources.secure]\ntopic = "{source}"\n')
    wrong = "wrong-canary-password-42"
    out = subprocess.run(
        [sys.executable, "-m", "flink_job.cli", "run", APP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **__import__("os").environ,
            "FLINK_JOB_CONF": str(conf),
            "FLINK_JOB_TEST_SASL_PASSWORD": wrong,
        },
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("flink-job:")]
    assert len(lines) == 1, out.stderr[-2000:]
    assert "authentic" in lines[0].lower() or "sasl" in lines[0].lower(), lines[0]
    assert wrong not in out.stdout + out.stderr
