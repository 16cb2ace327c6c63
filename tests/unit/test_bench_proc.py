"""The benchmark's CPU accounting from /proc (``bench.peers``): a process tree's CPU includes
its children, and a JVM's threads are grouped by their names."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.peers import breakdown, thread_group, tree, tree_cpu_s  # noqa: E402


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
        assert tree_cpu_s(os.getpid()) - before >= 0.5
    finally:
        child.communicate(b"\n", timeout=10)
    # reaped: its CPU moved to this process's cutime/cstime and still counts
    assert tree_cpu_s(os.getpid()) - before >= 0.5


def test_jvm_threads_are_grouped_by_name_and_ended_threads_are_kept():
    assert thread_group("Source: src_tra") == "source"
    assert thread_group("Source Data Fet") == "source"
    assert thread_group("resolve track_u") == "keyed operator/Python"
    assert thread_group("OverAggregate[4") == "keyed operator/Python"
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
