"""The benchmark's accounting (``bench.peers``): a process tree's CPU from /proc includes its
children, a JVM's threads are grouped by their names, an exactly-once output is timed
between its commits, and a target is decided by the median rates, with each round's ratio
alongside."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.peers import (  # noqa: E402
    breakdown,
    commit_window,
    summarize,
    targets,
    thread_group,
    tree,
    tree_cpu_s,
)


def test_tree_cpu_counts_a_busy_child_and_its_exit():
    before = tree_cpu_s(os.getpid())
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\n"
            "while time.process_time() - t < 0.5: pass\ninput()",
        ],
        stdin=subprocess.PIPE,
    )
    try:
        while True:  # until the child has burnt its 0.5 s of CPU and waits for input
            alive = tree_cpu_s(child.pid)
            if alive >= 0.5:
                break
            time.sleep(0.05)
        assert child.pid in tree(os.getpid())
        # CPU times are whole clock ticks (0.01 s): round away the float subtraction's error
        # (1.17 - 0.67 is 0.4999...)
        assert round(tree_cpu_s(os.getpid()) - before, 2) >= 0.5
    finally:
        child.communicate(b"\n", timeout=10)
    # reaped: its CPU moved to this process's cutime/cstime and still counts
    assert round(tree_cpu_s(os.getpid()) - before, 2) >= 0.5


def test_jvm_threads_are_grouped_by_name_and_ended_threads_are_kept():
    assert thread_group("Source: src_tra") == "source"
    assert thread_group("Source Data Fet") == "source"
    assert thread_group("resolve track_u") == "keyed operator/Python"
    assert thread_group("OverAggregate[4") == "keyed operator/Python"
    assert thread_group("flink-job pytho") == "Python thread"
    assert thread_group("kafka-producer-") == "sink"
    assert thread_group("C2 CompilerThre") == "GC/JIT/VM"
    assert thread_group("AsyncOperations") == "checkpoints"
    assert thread_group("flink-scheduler") == "other"
    before = {"7/total": 1.0, "7/8 resolve track_u": 0.5, "7/9 Source: src_tra": 0.25}
    after = {"7/total": 3.0, "7/8 resolve track_u": 1.5, "7/9 Source: src_tra": 0.5}
    # 2 s of JVM CPU over 1,000 events; 1.25 s in live threads, 0.75 s in ended ones
    assert breakdown(before, after, 1000) == {
        "ended threads": 750.0,
        "keyed operator/Python": 1000.0,
        "source": 250.0,
    }


def test_a_transactional_output_is_measured_between_commits_not_into_the_idle_tail():
    # A job processing 60k rows/s and committing every second (bursts read at t = 1..4 s)
    # runs out of input at ~3.4 s: the last commit (4 s) holds the tail, read after idling.
    bursts = [(1.0, 0), (2.0, 60_000), (3.0, 120_000), (4.0, 180_000)]
    total = 204_000
    i, j = commit_window(bursts, total, warmup=0)
    assert (i, j) == (0, 2)
    # rows readable at commit j minus at commit i, over the seconds between them
    rows_i, rows_j = bursts[i + 1][1], bursts[j + 1][1]
    assert (rows_j - rows_i) / (bursts[j][0] - bursts[i][0]) == 60_000
    # the first commit that completes the warm-up opens the window
    assert commit_window(bursts, total, warmup=100_000) == (1, 2)
    # too few commits after the warm-up to measure between them
    assert commit_window(bursts, total, warmup=150_000) is None
    assert commit_window([(1.0, 0)], 5_000, warmup=0) is None
    assert commit_window([], 0, warmup=0) is None


def test_a_target_is_decided_by_the_median_rates_and_reports_each_rounds_ratio():
    def run(rate: float | None) -> dict[str, object]:
        if rate is None:  # a run that gave no verified rate
            return {"verified": False}
        return {"verified": True, "events_per_s": rate}

    runs = {
        "project batched ALO": [run(60.0), run(50.0), run(40.0)],
        "bytewax": [run(50.0), run(None), run(50.0)],
        "project batched EO": [run(52.0), run(49.0), run(62.0)],
        "quix EO": [run(26.0), run(26.0), run(27.0)],
    }
    goals = targets(summarize(runs))
    alo = goals["at-least-once >= 1.2x Bytewax"]
    assert alo["ratio"] == 1.0 and alo["met"] is False  # medians 50 vs 50
    assert alo["per_round"] == [1.2, None, 0.8]
    eo = goals["exactly-once >= 2x Quix Streams exactly-once"]
    assert eo["ratio"] == 2.0 and eo["met"] is True  # medians 52 vs 26
    assert [round(r, 3) for r in eo["per_round"]] == [2.0, 1.885, 2.296]
    # A variant that did not run: not measured, no rounds.
    missing = goals["at-least-once >= 1.2x Bytewax with recovery"]
    assert missing["ratio"] is None and missing["met"] is None and missing["per_round"] == []
