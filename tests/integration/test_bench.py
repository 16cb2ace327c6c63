"""The benchmark still works (quick mode). Its numbers are not asserted: speed is measured in
bench/, never as timed assertions in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_mode_produces_table_json_and_chart(kafka, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["ratios"]) == {
        "project / baseline thread",
        "project / baseline process",
        "project / pure-Python ceiling",
        "batched / per-record",
        "CPU: pure-Python ceiling / project",
        "CPU: per-record / batched",
        "task CPU: per-record / batched",
        "task CPU: pure-Python ceiling / batched",
    }
    # CPU per event is reported for each variant (quick runs are too short for its value).
    variants = {"project", "project-per-record", "pure-Python ceiling", "baseline-thread"}
    assert variants <= set(results["cpu_us_per_event"])
    assert all(v["median"] > 0 for v in results["operator"].values())
    targets = results["targets"]
    assert len(targets) == 4 and all(isinstance(t["met"], bool) for t in targets.values())
    assert "targets:" in out.stdout
    assert results["end_to_end"]["rows"] == results["end_to_end"]["n"]
    assert (tmp_path / "throughput.png").stat().st_size > 1000
    assert "project / baseline thread" in out.stdout


def test_peers_command_verifies_every_variant_and_reports_rates_and_cpu(kafka, tmp_path):
    """``bench.peers`` on a small workload: one variant of each system (this project's batched
    job, Quix Streams exactly-once, Bytewax with recovery, Flink SQL), every output verified
    (last row per key = the true count) and a rate, CPU per event (process tree and broker)
    and, for the JVM variants, CPU by thread group reported for each."""
    sys.path.insert(0, str(ROOT))
    from bench import peers_env

    try:
        peers_env.ensure()  # pip from the package index on first use
    except peers_env.PeersEnvUnavailable as e:
        pytest.skip(f"the bench-only peers env cannot be created: {e}")
    variants = ["project batched ALO", "quix EO", "bytewax recovery", "flink-sql ALO"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.peers",
            "--events",
            "2000",
            "--rounds",
            "1",
            "--probes",
            "3",
            "--timeout",
            "300",
            "--variants",
            ",".join(variants),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((tmp_path / "peers.json").read_text())
    summary = results["summary"]
    assert list(summary) == variants
    for variant, s in summary.items():
        assert s["all_verified"] and s["verified_rounds"] == 1, variant
        assert s["events_per_s"] > 0 and s["ratio_to_project_batched_alo"] > 0, variant
        # CPU is sampled at the first and the last row; on 2,000 events a transactional
        # peer may commit all its rows at once, within one clock tick: present, maybe 0.
        assert s["cpu_us_per_event"] >= 0 and s["broker_cpu_us_per_event"] >= 0, variant
        assert s["reader_cpu_us_per_event"] >= 0, variant
    # Where the JVM's CPU goes (per thread, from /proc): this project's source and keyed
    # operator threads are both found and named; Flink SQL's JVM is measured too. A small run
    # may not give each thread a clock tick (10 ms): the source chain uses ~4 µs per event,
    # 8 ms for 2,000 events, so only the two together must show CPU.
    groups = summary["project batched ALO"]["jvm_cpu_us_per_event"]
    assert "source" in groups and "keyed operator/Python" in groups, groups
    assert groups["source"] >= 0 and groups["keyed operator/Python"] >= 0, groups
    keyed = groups["keyed operator/Python"] + groups.get("Python thread", 0)
    assert groups["source"] + keyed > 0, groups
    assert sum(summary["flink-sql ALO"]["jvm_cpu_us_per_event"].values()) > 0
    base = summary["project batched ALO"]
    assert base["cpu_us_per_event"] > 0 and base["broker_cpu_us_per_event"] > 0
    assert base["ratio_to_project_batched_alo"] == 1.0
    assert 0 < base["latency_p50_s"] <= base["latency_p99_s"]
    assert all(r["rows"] >= 2000 for runs in results["runs"].values() for r in runs)
    assert set(results["targets"]) and "targets:" in out.stdout
