"""The benchmark still works (quick mode). Its numbers are not asserted: speed is measured in
bench/, never as timed assertions in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
