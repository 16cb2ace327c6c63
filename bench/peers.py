"""This project against its peers, end to end on the same workload and the same local broker.

    python -m bench.peers [--events 200000] [--keys 1000] [--rounds 2] [--variants a,b,...]
                          [--warmup 0] [--probes 50] [--reader lazy|parse] [--out bench/results]

Variants (every one once per round, rounds interleaved, the order reversed every other round):

- ``project batched ALO|EO``: this project's job (``bench/workload.py``, thread mode's batched
  operator), at-least-once and exactly-once, hashmap, checkpoint every second;
- ``project per-record ALO|EO``: the same with one Python call per record (batch size 0);
- ``project python-thread ALO|EO``: the batched operator with Python on a thread of its own
  (``batch_python_thread = true``);
- ``quix ALO|EO``: Quix Streams (``group_by`` + stateful ``apply``, commit every second);
- ``bytewax`` / ``bytewax recovery``: Bytewax (``key_on`` + ``stateful_map``, 1 worker),
  without and with recovery (snapshot every second);
- ``flink-sql ALO|EO``: Flink SQL on the same Kafka tables (``COUNT(DISTINCT) OVER``, JVM only).

Quix Streams and Bytewax run in a bench-only virtualenv (``bench.peers_env``, created with pip
on first use). For each run the benchmark preloads the same events (the seed's unique-IP
workload) into a fresh topic, starts the variant as a subprocess (its own session), reads the
output topic (``read_committed``) and counts the run only if the last row of every key carries
that key's true unique-IP count. It reports the sustained rate (first to last output row;
exactly-once: between commits, below), CPU per event of the variant's process tree and of
the broker (utime+stime from /proc, sampled at the same moments), the CPU per event of this
benchmark's own reader, and for JVM variants the JVM's CPU by thread group (source, keyed
operator/Python, sink, GC/JIT, other).
Results go to ``OUT/peers.json``.

The reader shares the machine with the variant and the broker, so it does as little as it can
while the rows arrive: it keeps each row's bytes and counts them, and parses them (JSON, the
last count per key) only once as many rows as events have arrived, after it has taken the
last sample; if the counts are not right yet (a duplicate row made the number early) it goes
on reading and checks again. Parsing each row as it arrived (``--reader parse``, the default
until 2026-12-01) cost ~5-8 µs of CPU per event (~2 now), taken from the 2 cores that a job with
several busy threads (this project's JVM) needs more than a single-threaded peer does.

An exactly-once variant's rows become readable only when its transaction commits (once per
checkpoint or commit interval, every second here), so they arrive in bursts, and after the
last event the job idles until the next commit. Its rate is measured between commits: from
the first commit that completes the warm-up to the last commit before the final one, rows
made readable over the seconds between those commits (CPU over the same samples). Measured
from the first row to the last, a run of a few seconds gets up to a second of idle waiting
for the last commit, and the rows of a commit read before the window opens. When a run has
fewer than three commits after the warm-up, the first-to-last-row rate is used.

``--warmup W`` puts W more events of the same workload before the measured ones in the same
topic: every variant processes them first, and the rate and CPU are measured from the first
row after them to the last (the output is still verified over all W + N events). A JVM
compiles its hot code during the first ~200k events here (~12 s of C2 compiler CPU for this
project's job, ~2.5 s for Flink SQL's), which a job that runs for hours pays once; the
Python peers have no such warm-up. Without ``--warmup`` the rates include it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "project batched ALO"
# Rows arriving after a pause this long start a new burst (an exactly-once output's commit).
# The reader polls every POLL_S, so a burst is timed to within a poll. It reads a commit's
# rows (~50k here) in well under the commit interval, so commits do not run together.
BURST_GAP_S = 0.25
POLL_S = 0.05
VARIANTS = [
    "project batched ALO",
    "project batched EO",
    "project per-record ALO",
    "project per-record EO",
    "project python-thread ALO",
    "project python-thread EO",
    "quix ALO",
    "quix EO",
    "bytewax",
    "bytewax recovery",
    "flink-sql ALO",
    "flink-sql EO",
]
PEERS = {"quix ALO", "quix EO", "bytewax", "bytewax recovery"}


# ---- CPU from /proc -------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> list[str]:
    return path.read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (children of every thread), from /proc."""
    found, pending = [], [pid]
    while pending:
        p = pending.pop()
        found.append(p)
        pending.extend(_children(p))
    return found


def tree_cpu_s(pid: int) -> float:
    """CPU seconds so far of ``pid``'s process tree: utime+stime of every live process (all
    its threads, live and ended) plus what its reaped children used (cutime+cstime)."""
    total = 0.0
    for p in tree(pid):
        try:
            f = _stat(Path(f"/proc/{p}/stat"))
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15]) / _TICK
    return total


def thread_group(name: str) -> str:
    """The part of a JVM a thread belongs to, from its (15-character) Linux name."""
    if name.startswith(("Source", "Legacy Source", "kafka-coordinat")):
        return "source"
    if name.startswith("flink-job pyth"):  # the batched operator's Python thread
        return "Python thread"
    if name.startswith(("resolve", "OverAggregate", "KeyedProcess", "Calc", "python")):
        return "keyed operator/Python"
    if name.startswith(("kafka-producer", "Sink", "Writer", "features")):
        return "sink"
    if name.startswith("AsyncOperations"):
        return "checkpoints"
    if name.startswith(("GC ", "G1 ", "C1 ", "C2 ", "VM ", "Sweeper")):
        return "GC/JIT/VM"
    return "other"


def jvm_threads(pid: int) -> dict[str, float]:
    """CPU seconds so far of every thread of every ``java`` process in ``pid``'s tree, keyed
    "pid/tid name", plus "pid/total" for each JVM (its ended threads count there only)."""
    out: dict[str, float] = {}
    for p in tree(pid):
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() != "java":
                continue
            out[f"{p}/total"] = sum(int(x) for x in _stat(Path(f"/proc/{p}/stat"))[11:13]) / _TICK
        except OSError:
            continue
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                cpu = sum(int(x) for x in _stat(task / "stat")[11:13]) / _TICK
            except OSError:
                continue
            out[f"{p}/{task.name} {name}"] = cpu
    return out


def breakdown(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """CPU µs per event by thread group between two :func:`jvm_threads` samples; "ended
    threads" is what the JVM used beyond its live threads (threads that ended meanwhile)."""
    groups: dict[str, float] = {}
    totals = 0.0
    threads = 0.0
    for key, cpu in after.items():
        delta = cpu - before.get(key, 0.0)
        if key.endswith("/total"):
            totals += delta
            continue
        threads += delta
        group = thread_group(key.split(" ", 1)[1])
        groups[group] = groups.get(group, 0.0) + delta
    if totals > threads:
        groups["ended threads"] = totals - threads
    return {g: s / events * 1e6 for g, s in sorted(groups.items())}


def top_threads(before: dict[str, float], after: dict[str, float], k: int = 8) -> list[str]:
    deltas = [
        (after[key] - before.get(key, 0.0), key.split(" ", 1)[1])
        for key in after
        if not key.endswith("/total")
    ]
    return [f"{name}: {d:.2f}s" for d, name in sorted(deltas, reverse=True)[:k] if d > 0]


# ---- one run ----------------------------------------------------------------------------------


def commit_window(
    bursts: list[tuple[float, int]], total: int, warmup: int
) -> tuple[int, int] | None:
    """The bursts (indices ``i < j``) bounding the busy window of a transactional output.

    ``bursts`` holds, per burst of rows (a commit), the time its first rows were read and the
    rows read before it; ``total`` is all rows read. The rows of burst ``k`` and all before
    it are what the job processed before that commit's checkpoint, readable from the burst's
    time on. Burst ``i`` is the first whose rows reach the end of the warm-up; ``j`` the one
    before the last: the last commit comes after the job ran out of input, up to a commit
    interval later. None when there are not two commits between them to measure.
    """
    after = [b for _, b in bursts[1:]] + [total]
    i = next((k for k, rows in enumerate(after) if rows >= warmup), None)
    j = len(bursts) - 2
    if i is None or j <= i:
        return None
    return i, j


def _command(
    variant: str, bootstrap: str, src: str, sink: str, work: Path
) -> tuple[list[str], dict[str, str], Path]:
    """The subprocess of ``variant``: argv, extra environment, working directory."""
    project = [sys.executable, "-m", "bench.peer_project", src, sink]
    if variant.startswith("project"):
        delivery = "at-least-once" if variant.endswith("ALO") else "exactly-once"
        batch = (
            "0"
            if "per-record" in variant
            else "python-thread"
            if "python-thread" in variant
            else "default"
        )
        return [*project, delivery, batch], {}, ROOT
    if variant.startswith("flink-sql"):
        delivery = "at-least-once" if variant.endswith("ALO") else "exactly-once"
        return (
            [sys.executable, "-m", "bench.peer_flink_sql", bootstrap, src, sink, delivery],
            {},
            ROOT,
        )
    from bench import peers_env

    python = str(peers_env.python())
    if variant.startswith("quix"):
        guarantee = "at-least-once" if variant.endswith("ALO") else "exactly-once"
        script = str(ROOT / "bench" / "peer_quix.py")
        return [python, script, bootstrap, src, sink, guarantee, str(work / "state")], {}, ROOT
    env = {"BENCH_BOOTSTRAP": bootstrap, "BENCH_SOURCE": src, "BENCH_SINK": sink}
    argv = [python, "-m", "bytewax.run", "peer_bytewax:flow", "-w", "1"]
    if variant == "bytewax recovery":
        recovery = work / "recovery"
        recovery.mkdir()
        subprocess.run(
            [python, "-m", "bytewax.recovery", str(recovery), "1"], check=True, timeout=120
        )
        argv += ["-r", str(recovery), "-s", "1", "-b", "0"]
    return argv, env, ROOT / "bench"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the variant's whole session (it was started as its own session leader)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 20)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            # the JVM of a PyFlink client may outlive it briefly: make sure the group is gone
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
        time.sleep(1)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_variant(
    variant: str,
    bootstrap: str,
    broker_pid: int,
    values: list[bytes],
    truth: dict[str, int],
    probes: int,
    logs: Path,
    timeout_s: float,
    warmup: int = 0,
    reader: str = "lazy",
) -> dict[str, Any]:
    """One run of ``variant`` over ``values``, measured after the first ``warmup`` rows.

    ``reader="lazy"`` keeps each row's bytes and parses them only once every row has arrived,
    after the last sample (see ``--reader``); ``"parse"`` parses each row as it is read."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    from bench.topics import preload
    from connectors.admin import ensure_topics

    run = uuid.uuid4().hex[:6]
    slug = variant.replace(" ", "-").replace("/", "")
    src, sink = f"peers-in-{run}", f"peers-out-{slug}-{run}"
    ensure_topics({"bootstrap.servers": bootstrap}, [src, sink])
    preload(bootstrap, src, values)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})  # latency probes
    n = len(values)
    work = logs / f"{slug}-{run}"
    work.mkdir(parents=True, exist_ok=True)
    argv, extra_env, cwd = _command(variant, bootstrap, src, sink, work)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"peers-{run}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(sink, 0, 0)])
    log = (work / "output.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **extra_env, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    result: dict[str, Any] = {"variant": variant, "n": n - warmup, "verified": False}
    result["reader"] = reader
    try:
        last_count: dict[str, int] = {}
        pending: list[bytes] = []  # rows read, not parsed yet

        def settle() -> None:
            for value in pending:
                row = json.loads(value)
                last_count[row["user.id"]] = row["user.unique_ip_count"]
            pending.clear()

        seen = 0
        first = last = None
        at_first: dict[str, Any] = {}
        at_last: dict[str, Any] = {}

        def sample() -> dict[str, Any]:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return {
                "t": time.monotonic(),
                "tree": tree_cpu_s(proc.pid),
                "broker": tree_cpu_s(broker_pid),
                "reader": usage.ru_utime + usage.ru_stime,
                "jvm": jvm_threads(proc.pid),
                "rows": seen,
            }

        transactional = variant.endswith(" EO")
        bursts: list[dict[str, Any]] = []  # a sample when a burst's first rows were read
        read_at = 0.0
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            batch = consumer.consume(1000, POLL_S)
            good = [m for m in batch if not m.error()]
            pending.extend([m.value() for m in good])
            if reader == "parse":
                settle()
            if good:
                now = time.monotonic()
                if transactional and now - read_at > BURST_GAP_S:
                    bursts.append(sample())  # its "rows": those read before the burst
                read_at = now
                seen += len(good)
                if first is None:
                    first = time.monotonic()
                if not at_first and seen > warmup:
                    at_first = sample()
                if seen >= n:
                    # Sampled before the rows are parsed: a lazy reader parses outside the
                    # measured window (and goes on reading if a duplicate made seen >= n early).
                    candidate = sample()
                    settle()
                    if last_count == truth:
                        at_last = candidate
                        last = at_last["t"]
                        break
            elif proc.poll() is not None:
                break
        result["rows"] = seen
        result["startup_s"] = (first - started) if first else None
        if first is None or last is None or not at_first or last <= at_first["t"]:
            result["error"] = (
                f"{'exited ' + str(proc.returncode) if proc.poll() is not None else 'timed out'}"
                f" after {seen} of {n} rows"
            )
            return result
        # The rows after the first one (after the first sample's with a warm-up), in the
        # seconds between the two samples; for a transactional output, between commits.
        timeline = [(b["t"], b["rows"]) for b in bursts]
        window = commit_window(timeline, seen, warmup) if transactional else None
        if window is not None:
            i, j = window
            # Readable at commit k: the rows before burst k + 1 (sampled when k was read).
            at_first = {**bursts[i], "rows": bursts[i + 1]["rows"]}
            at_last = {**bursts[j], "rows": bursts[j + 1]["rows"]}
            last = at_last["t"]
            result["measured"] = f"between commits ({j - i} intervals)"
        else:
            result["measured"] = "first to last row"
        rows = at_last["rows"] - (at_first["rows"] if warmup or window else 1)
        if rows <= 0:  # a run that cannot give a rate does not count
            result["error"] = "all measured rows arrived at once; measure more events"
            return result
        result["verified"] = True
        result["events_per_s"] = rows / (last - at_first["t"])
        result["cpu_us_per_event"] = (at_last["tree"] - at_first["tree"]) / rows * 1e6
        result["broker_cpu_us_per_event"] = (at_last["broker"] - at_first["broker"]) / rows * 1e6
        result["reader_cpu_us_per_event"] = (at_last["reader"] - at_first["reader"]) / rows * 1e6
        if at_last["jvm"]:
            result["jvm_cpu_us_per_event"] = breakdown(at_first["jvm"], at_last["jvm"], rows)
            result["jvm_top_threads"] = top_threads(at_first["jvm"], at_last["jvm"])
        if probes and variant == BASELINE:
            result.update(_latency(producer, consumer, src, run, probes))
        return result
    finally:
        _stop(proc)
        log.close()
        consumer.close()
        _delete_topics(bootstrap, run)
        if not result.get("verified"):
            result["log_tail"] = (work / "output.log").read_text(errors="replace")[-2000:]


def _latency(producer: Any, consumer: Any, src: str, run: str, probes: int) -> dict[str, Any]:
    """Event-to-row latency of probe events sent one by one after the backlog drained."""
    latencies = []
    for i in range(probes):
        probe = f"probe-{run}-{i}"
        t0 = time.monotonic()
        producer.produce(src, json.dumps({"user_id": probe, "ip_address": "1.2.3.4"}).encode())
        producer.flush(10)
        while time.monotonic() - t0 < 30:
            m = consumer.poll(0.01)
            if m is not None and not m.error() and probe.encode() in (m.value() or b""):
                latencies.append(time.monotonic() - t0)
                break
    latencies.sort()
    if not latencies:
        return {"latency_probes": 0}
    return {
        "latency_probes": len(latencies),
        "latency_p50_s": statistics.median(latencies),
        "latency_p99_s": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def _delete_topics(bootstrap: str, run: str) -> None:
    """Delete this run's topics (its input, output and a peer's internal topics)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        names = [t for t in admin.list_topics(timeout=10).topics if run in t]
        if names:
            for f in admin.delete_topics(names, operation_timeout=30).values():
                f.result()
    except Exception as e:  # a leftover topic costs disk space, not correctness
        print(f"could not delete topics of run {run}: {e}", file=sys.stderr)


# ---- the benchmark ----------------------------------------------------------------------------


def _median(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get("verified") and r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    base = _median(runs.get(BASELINE, []), "events_per_s")
    for variant, results in runs.items():
        rate = _median(results, "events_per_s")
        s: dict[str, Any] = {
            "rounds": len(results),
            "verified_rounds": sum(1 for r in results if r.get("verified")),
            "all_verified": all(r.get("verified") for r in results),
            "events_per_s": rate,
            "events_per_s_runs": [r.get("events_per_s") for r in results],
            "ratio_to_project_batched_alo": rate / base if rate and base else None,
        }
        for key in (
            "cpu_us_per_event",
            "broker_cpu_us_per_event",
            "reader_cpu_us_per_event",
            "latency_p50_s",
            "latency_p99_s",
            "startup_s",
        ):
            s[key] = _median(results, key)
        groups = {g for r in results for g in r.get("jvm_cpu_us_per_event", {})}
        if groups:
            s["jvm_cpu_us_per_event"] = {
                g: statistics.median(
                    [r["jvm_cpu_us_per_event"].get(g, 0.0) for r in results if r.get("verified")]
                    or [0.0]
                )
                for g in sorted(groups)
            }
        summary[variant] = s
    return summary


def targets(summary: dict[str, Any]) -> dict[str, Any]:
    """Each target's ratio of the two variants' median rates (what decides met or missed),
    and the ratio within each round (``per_round``; None where either run gave no rate): the
    host's speed drifts within a run, and the rounds show how far that moves the ratio."""

    def rate(v: str) -> float | None:
        return summary.get(v, {}).get("events_per_s")

    def ratio(a: str, b: str) -> float | None:
        ra, rb = rate(a), rate(b)
        return ra / rb if ra and rb else None

    def per_round(a: str, b: str) -> list[float | None]:
        runs_a = summary.get(a, {}).get("events_per_s_runs", [])
        runs_b = summary.get(b, {}).get("events_per_s_runs", [])
        return [x / y if x and y else None for x, y in zip(runs_a, runs_b, strict=False)]

    out = {}
    for name, a, b, goal in (
        ("at-least-once >= 1.2x Bytewax", BASELINE, "bytewax", 1.2),
        ("at-least-once >= 1.2x Bytewax with recovery", BASELINE, "bytewax recovery", 1.2),
        ("exactly-once >= 2x Quix Streams exactly-once", "project batched EO", "quix EO", 2.0),
    ):
        r = ratio(a, b)
        out[name] = {
            "ratio": r,
            "met": (r >= goal) if r is not None else None,
            "per_round": per_round(a, b),
        }
    return out


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "—" if x is None else format(x, spec)


def print_table(summary: dict[str, Any], goals: dict[str, Any]) -> None:
    print(
        f"{'variant':<24} {'events/s':>9} {'ratio':>6} {'CPU µs/ev':>9} {'broker':>7} "
        f"{'reader':>7}  verified"
    )
    for variant, s in summary.items():
        print(
            f"{variant:<24} {_fmt(s['events_per_s']):>9} "
            f"{_fmt(s['ratio_to_project_batched_alo'], '.2f'):>6} "
            f"{_fmt(s['cpu_us_per_event'], '.1f'):>9} "
            f"{_fmt(s['broker_cpu_us_per_event'], '.1f'):>7} "
            f"{_fmt(s['reader_cpu_us_per_event'], '.1f'):>7}  "
            f"{s['verified_rounds']}/{s['rounds']}"
        )
    print("\nJVM CPU µs per event by thread group (medians):")
    for variant, s in summary.items():
        if "jvm_cpu_us_per_event" in s:
            parts = ", ".join(f"{g} {v:.1f}" for g, v in s["jvm_cpu_us_per_event"].items())
            print(f"  {variant}: {parts}")
    b = summary.get(BASELINE, {})
    if b.get("latency_p50_s") is not None:
        print(
            f"\n{BASELINE} latency p50 {b['latency_p50_s'] * 1000:.0f} ms, "
            f"p99 {b['latency_p99_s'] * 1000:.0f} ms"
        )
    print("\ntargets:")
    for name, t in goals.items():
        met = {True: "met", False: "missed", None: "not measured"}[t["met"]]
        rounds = ", ".join(_fmt(r, ".2f") for r in t.get("per_round", []))
        print(
            f"  {name}: {_fmt(t['ratio'], '.2f')}x ({met})"
            + (f"; per round {rounds}" if rounds else "")
        )


def _load() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument(
        "--warmup", type=int, default=0, help="events processed before the measured ones"
    )
    parser.add_argument("--probes", type=int, default=50, help="latency probes (batched ALO)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument(
        "--reader",
        choices=("lazy", "parse"),
        default="lazy",
        help="lazy (default): keep the output rows' bytes and parse them for the check after "
        "the last one arrives, outside the measured window; parse: parse each row as it is "
        "read (the runs before 2026-12-01's tenth round)",
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; known: {VARIANTS}")

    from bench import peers_env
    from bench.workload import events
    from flink_job._local import kafka

    if PEERS & set(variants):
        try:
            print(f"peers env: {peers_env.ensure()}", file=sys.stderr)
        except peers_env.PeersEnvUnavailable as e:
            print(f"bench.peers: {e}", file=sys.stderr)
            return 2
    bootstrap = kafka.start()
    broker_pid = kafka._broker_pid()
    if broker_pid is None:  # a broker on the port that another checkout started
        print(
            f"bench.peers: the broker at {bootstrap} is not this checkout's (its CPU cannot be "
            "measured); fix: stop it and let the benchmark start the local one",
            file=sys.stderr,
        )
        return 2
    # The warm-up events come first; the same seed would repeat the measured ones' draws.
    values = events(args.warmup, args.keys, seed=2) + events(args.events, args.keys)
    ips: dict[str, set[str]] = {}
    for v in values:
        event = json.loads(v)
        ips.setdefault(event["user_id"], set()).add(event["ip_address"])
    truth = {u: len(s) for u, s in ips.items()}
    out = Path(args.out)
    logs = out / "peers-logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    loads = [_load()]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for round_no in range(args.rounds):
        order = variants if round_no % 2 == 0 else list(reversed(variants))
        for variant in order:
            r = run_variant(
                variant,
                bootstrap,
                broker_pid,
                values,
                truth,
                args.probes,
                logs,
                args.timeout,
                args.warmup,
                args.reader,
            )
            r["round"] = round_no + 1
            r["load_after"] = _load()
            loads.append(r["load_after"])
            runs[variant].append(r)
            shown = _fmt(r.get("events_per_s"))
            status = "verified" if r["verified"] else f"NOT VERIFIED ({r.get('error')})"
            print(
                f"round {round_no + 1} {variant}: {shown} events/s, "
                f"CPU {_fmt(r.get('cpu_us_per_event'), '.1f')} µs/event "
                f"(broker {_fmt(r.get('broker_cpu_us_per_event'), '.1f')}), "
                f"startup {_fmt(r.get('startup_s'), '.1f')} s, {status}, "
                f"measured {r.get('measured', '-')}",
                file=sys.stderr,
            )
            _write(out, args, loads, started, runs)  # partial results survive an interruption
    result = _write(out, args, loads, started, runs)
    summary, goals = result["summary"], result["targets"]
    print(
        f"{args.events} events (after {args.warmup} warm-up events), {args.keys} keys, "
        f"{args.rounds} rounds; load average (1 min) "
        f"{min(x[0] for x in loads):.1f}-{max(x[0] for x in loads):.1f}; "
        f"{result['seconds'] / 60:.1f} min\n"
    )
    print_table(summary, goals)
    return 0 if all(s["all_verified"] for s in summary.values()) else 1


def _write(
    out: Path,
    args: argparse.Namespace,
    loads: list[list[float]],
    started: float,
    runs: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    from bench import peers_env

    summary = summarize({v: r for v, r in runs.items() if r})
    goals = targets(summary)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "events": args.events,
        "warmup_events": args.warmup,
        "keys": args.keys,
        "rounds": args.rounds,
        "reader": args.reader,
        "peers": peers_env.PINS,
        "load_average_1m_during": [x[0] for x in loads],
        "seconds": time.monotonic() - started,
        "summary": summary,
        "targets": goals,
        "runs": runs,
    }
    (out / "peers.json").write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(main())
