"""A/B of the per-record operator's Python work between source trees, in instructions.

    python -m bench.operator_ab TREE [TREE ...]     e.g. a worktree of the base and this one

Drives ``flink_job._runtime.Resolve.process_element`` (thread mode, state key computed on the
JVM: the job's path for the benchmark resolver) with stand-ins for Flink's runtime context,
keyed state and context, over the benchmark's login events (1k keys), and counts the CPU
instructions it executes per event under valgrind's cachegrind: the difference of a run over
N2 and one over N1 events, minus the same difference without the loop (the setup that grows
with N). Instruction counts repeat exactly from run to run (PYTHONHASHSEED=0), where timings
on this shared 2-core machine drift by ±30%: this is how a structural change of the operator
is shown to cost nothing. What the JVM adds around the call is the same code in both trees
unless the job's configuration changed; ``bench.flink_runs`` measures that end to end.

Each TREE must hold ``flink_job`` and ``bench/workload.py``; ``--timed`` prints CPU
microseconds per event (median of 5 rounds, no valgrind) instead.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

N1, N2 = 2_000, 12_000
KEYS = 1_000


# -- the stand-ins for Flink (what Resolve.open and process_element call) -------------------
class _Counter:
    def inc(self, n: int = 1) -> None:
        pass


class _Metrics:
    def counter(self, name: str) -> _Counter:
        return _Counter()

    def add_group(self, *names: str) -> _Metrics:
        return self


class _Ctx:
    key: str | None = None

    def get_current_key(self) -> str | None:
        return self.key


class _KeyedCell:
    """One keyed state of any shape: value()/update() and get()/update() by the current key."""

    def __init__(self, ctx: _Ctx) -> None:
        self._ctx = ctx
        self._by_key: dict[Any, Any] = {}
        self._state = self  # thread mode reads the raw Java list state behind the wrapper

    def value(self) -> Any:
        return self._by_key.get(self._ctx.key)

    get = value

    def update(self, v: Any) -> None:
        self._by_key[self._ctx.key] = v


class _RuntimeContext:
    def __init__(self, ctx: _Ctx) -> None:
        self._ctx = ctx

    def get_metrics_group(self) -> _Metrics:
        return _Metrics()

    def get_state(self, descriptor: Any) -> _KeyedCell:
        return _KeyedCell(self._ctx)

    get_list_state = get_state

    def get_index_of_this_subtask(self) -> int:
        return 0

    def get_number_of_parallel_subtasks(self) -> int:
        return 1


def _work(n: int) -> tuple[Any, _Ctx, list[tuple[tuple[Any, ...], str]]]:
    """The operator (opened) and ``n`` message tuples with the state key each is routed by."""
    import random

    from bench import workload
    from flink_job import _runtime
    from flink_job._core import RawMessage

    ref = _runtime.ResolverRef(
        module="bench.workload",
        file=None,
        name="track_unique_ips",
        topic="bench-logins",
        json_key_path="$.user_id",
        execution_mode="thread",
    )
    core = ref.core()
    rnd = random.Random(1)  # workload.events' draws: the user of each event without parsing it
    keys: dict[str, str] = {}
    msgs = []
    for i, value in enumerate(workload.events(n, KEYS)):
        user = f"user-{rnd.randrange(KEYS)}"
        rnd.randrange(64)
        if user not in keys:
            raw = RawMessage(value, None, "bench-logins", 0, i, None, ())
            keys[user] = core.decode(raw).key
        # The message tuple: key, value, partition, offset, headers, absent (no record key),
        # timestamp.
        msgs.append(((b"", value, 0, i, {}, 1, 1_700_000_000_000 + i), keys[user]))
    ctx = _Ctx()
    op = _runtime.Resolve(ref)
    op.open(_RuntimeContext(ctx))
    return op, ctx, msgs


def _drive(op: Any, ctx: _Ctx, msgs: list[tuple[tuple[Any, ...], str]]) -> None:
    process = op.process_element
    for value, key in msgs:
        ctx.key = key
        for _ in process(value, ctx):
            pass


def _child(tree: str, mode: str, n: int) -> None:
    """In a fresh interpreter: ``flink_job`` from ``tree``; mode loop, setup or timed."""
    sys.path.insert(0, tree)
    import flink_job

    assert str(Path(flink_job.__file__).resolve()).startswith(str(Path(tree).resolve()))
    if mode != "timed":
        op, ctx, msgs = _work(n)
        if mode == "loop":
            _drive(op, ctx, msgs)
        return
    rounds = []
    for _ in range(5):
        op, ctx, msgs = _work(n)
        t0 = time.process_time()
        _drive(op, ctx, msgs)
        rounds.append((time.process_time() - t0) / n * 1e6)
    print(f"{tree}: {sorted(rounds)[2]:.2f} µs CPU per event (median of 5)", flush=True)


def _run_child(tree: str, mode: str, n: int, valgrind: bool) -> str:
    cmd = [sys.executable, "-m", "bench.operator_ab", tree, "--child", mode, "-n", str(n)]
    if valgrind:
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
        cmd += [sys.executable, "-m", "bench.operator_ab", tree, "--child", mode, "-n", str(n)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return done.stderr if valgrind else done.stdout


def _instructions(tree: str, mode: str, n: int) -> int:
    out = _run_child(tree, mode, n, valgrind=True)
    match = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if match is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{out[-2000:]}")
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--timed", action="store_true", help="CPU µs per event, no valgrind")
    parser.add_argument("--child", choices=("loop", "setup", "timed"), help=argparse.SUPPRESS)
    parser.add_argument("-n", type=int, default=N2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.trees[0], args.child, args.n)
        return
    results = {}
    for tree in args.trees:
        if args.timed:
            print(_run_child(tree, "timed", N2, valgrind=False).strip(), flush=True)
            continue
        loop = _instructions(tree, "loop", N2) - _instructions(tree, "loop", N1)
        setup = _instructions(tree, "setup", N2) - _instructions(tree, "setup", N1)
        results[tree] = per_event = (loop - setup) / (N2 - N1)
        print(f"{tree}: {per_event:,.0f} instructions per event", flush=True)
    if len(results) > 1:
        first, *others = results
        for tree in others:
            print(f"{tree} / {first}: {results[tree] / results[first]:.3f}")


if __name__ == "__main__":
    main()
