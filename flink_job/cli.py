"""``flink-job``: run, submit, stop and inspect resolver jobs; manage local Kafka and Flink.

Errors users will meet print one line on stderr with the fix and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from flink_job._constants import REST_ADDRESS
from flink_job.errors import FlinkJobError

__all__ = ["main"]


def _add_job_flags(p: argparse.ArgumentParser, target: bool = True) -> None:
    if target:
        p.add_argument("target", help="a .py file or a module name holding @stream resolvers")
    p.add_argument("--from-savepoint", metavar="PATH", help="restore state and offsets")
    p.add_argument(
        "--allow-non-restored-state",
        action="store_true",
        help="restore even if the savepoint holds state of resolvers that no longer exist",
    )
    p.add_argument("--bootstrap-servers", metavar="HOST:PORT", help="Kafka brokers (all sources)")
    p.add_argument("--sink-topic", help="topic for feature rows (default: features)")
    p.add_argument("--dead-letter-topic", help="default dead-letter topic")
    p.add_argument("--parallelism", type=int)
    p.add_argument(
        "--checkpoint-interval",
        metavar="DURATION",
        dest="checkpoint_interval_ms",
        help="milliseconds, or a Flink duration: 2s, 500 ms, 1 min (default 5s)",
    )
    p.add_argument(
        "--checkpoint-dir",
        help="where checkpoints go (default: run: .run/checkpoints; submit: the cluster's "
        "execution.checkpointing.dir)",
    )
    p.add_argument("--delivery", choices=["exactly-once", "at-least-once"])
    p.add_argument("--execution-mode", choices=["thread", "process"])
    p.add_argument("--starting-offsets", choices=["committed", "earliest", "latest"])
    p.add_argument("--state-backend", choices=["hashmap", "rocksdb"])
    p.add_argument("--job-name", help="job name; also names consumer groups and transactions")
    p.add_argument(
        "--batch-size",
        type=int,
        help="thread mode: records per Python call (default 1000; 0: one call per record)",
    )
    p.add_argument(
        "--batch-time",
        type=int,
        metavar="MS",
        dest="batch_time_ms",
        help="thread mode: longest wait of a record for its batch (default 20 ms)",
    )
    p.add_argument(
        "--environment",
        metavar="NAME",
        help="run the resolvers declared for this environment (environment=) and those "
        "declared for none",
    )
    p.add_argument(
        "--max-parallelism",
        type=int,
        help="pipeline.max-parallelism (default 128): fixed for a job's state; savepoints "
        "restore at any parallelism up to it",
    )
    p.add_argument(
        "--python-executable",
        metavar="PATH",
        help="the cluster's Python for this job (default: the cluster's python.executable)",
    )


def _options(args: argparse.Namespace) -> Any:
    from flink_job.config import JobOptions

    keys = (
        "from_savepoint",
        "bootstrap_servers",
        "sink_topic",
        "dead_letter_topic",
        "parallelism",
        "checkpoint_interval_ms",
        "checkpoint_dir",
        "delivery",
        "execution_mode",
        "starting_offsets",
        "state_backend",
        "job_name",
        "environment",
        "max_parallelism",
        "python_executable",
        "batch_size",
        "batch_time_ms",
    )
    values = {k: getattr(args, k, None) for k in keys}
    if getattr(args, "allow_non_restored_state", False):
        values["allow_non_restored_state"] = True
    return JobOptions.from_conf(**values)


def _cmd_resolvers(args: argparse.Namespace) -> int:
    from flink_job.describe import describe_resolvers
    from flink_job.loader import load_resolvers

    resolvers = load_resolvers(args.target)
    described = describe_resolvers(resolvers)
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        for d in described:
            print(f"{d['name']}")
            print(f"  source:   {d['source']} (topic {d['topic']})")
            print(f"  message:  {d['message']}")
            print(f"  keys:     {d['keys'] or 'Kafka record key'}")
            print(f"  keyed:    {d['keyed']}")
            if d["state"]:
                fields = ", ".join(f"{n}: {t}" for n, t in d["state"]["fields"].items())
                print(f"  state:    {d['state']['class']} ({fields})")
            else:
                print("  state:    none")
            print(f"  output:   {', '.join(d['output'])}")
            if d["owner"]:
                print(f"  owner:    {d['owner']}")
            if d["timestamp"]:
                print(f"  timestamp: {d['timestamp']} (the feature rows' Kafka timestamp)")
            if d["late_arrival_deadline_ms"] is not None:
                late = d["late_arrival_deadline_ms"]
                print(f"  late:     older than {late} ms skipped and counted (lateArrivals)")
            envs = d["environments"]
            where = ", ".join(envs) + " (--environment)" if envs else "every environment"
            print(f"  runs in:  {where}")
            for arg, value in d["ignored"].items():
                print(f"  ignored:  {arg}={value} (no meaning on Flink)")
            for ns, fc in d["feature_classes"].items():
                opts = ", ".join(f"{k}={v}" for k, v in fc["options"].items())
                print(f"  features {ns}: {opts or '-'}")
                for n, given in fc["features"].items():
                    print(f"    {n}: {', '.join(f'{k}={v}' for k, v in given.items())}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from flink_job.launch import run_local

    return run_local(args.target, _options(args), quiet=args.quiet)


def _cmd_submit(args: argparse.Namespace) -> int:
    from flink_job.launch import submit

    job_id = submit(args.target, _options(args), args.jobmanager)
    print(job_id)
    return 0


def _cmd_package(args: argparse.Namespace) -> int:
    from flink_job.package import flink_run_command, package

    artifact = package(
        args.target,
        args.output,
        _options(args),
        python_version=args.python_version,
        platform=args.platform,
        py_files=args.py_files or (),
        jars=args.jars or (),
    )
    print(f"packaged {artifact.module} into {artifact.root}", file=sys.stderr)
    print("run it on a session cluster with the distribution's own CLI:", file=sys.stderr)
    print(shlex.join(flink_run_command(artifact, args.jobmanager)))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from flink_job._rest import FlinkRest

    print(FlinkRest(args.jobmanager).stop_with_savepoint(args.job_id, args.savepoint_dir))
    return 0


def _cmd_kafka(args: argparse.Namespace) -> int:
    from flink_job._local import kafka

    if args.action == "start":
        print(kafka.start())
    else:
        kafka.stop()
    return 0


def _cmd_cluster(args: argparse.Namespace) -> int:
    from flink_job._local import cluster

    if args.action == "start":
        print(cluster.start(taskmanagers=args.taskmanagers, slots=args.slots))
    else:
        cluster.stop()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from flink_job.demo import demo

    return demo(events=args.events)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flink-job", description="Chalk-style stateful stream resolvers on Apache Flink"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run resolvers on a local Flink MiniCluster (blocking)")
    _add_job_flags(p)
    p.add_argument("--quiet", action="store_true", help="no live counts")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("submit", help="submit resolvers to a Flink cluster; prints the job id")
    _add_job_flags(p)
    p.add_argument("--jobmanager", default=REST_ADDRESS, metavar="HOST:PORT")
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser(
        "package",
        help="write a deployable job artifact (flink run, application mode); prints the "
        "flink run command",
    )
    _add_job_flags(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="artifact directory")
    p.add_argument("--python-version", metavar="X.Y", help="the cluster's Python (default: this)")
    p.add_argument(
        "--platform",
        metavar="TAG",
        help="wheel platform, e.g. manylinux2014_x86_64 (default: this)",
    )
    p.add_argument(
        "--py-files", action="append", metavar="PATH", help="a local module or package to ship"
    )
    p.add_argument("--jar", action="append", dest="jars", metavar="JAR", help="an extra jar")
    p.add_argument("--jobmanager", metavar="HOST:PORT", help="for the printed flink run command")
    p.set_defaults(func=_cmd_package)

    p = sub.add_parser("stop", help="stop a job with a savepoint; prints the savepoint path")
    p.add_argument("job_id")
    p.add_argument("--savepoint-dir", required=True)
    p.add_argument("--jobmanager", default=REST_ADDRESS, metavar="HOST:PORT")
    p.set_defaults(func=_cmd_stop)

    p = sub.add_parser("resolvers", help="list resolvers: source, keys, state, output")
    p.add_argument("target")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_resolvers)

    p = sub.add_parser("kafka", help="the local single-node Kafka broker (KRaft)")
    p.add_argument("action", choices=["start", "stop"])
    p.set_defaults(func=_cmd_kafka)

    p = sub.add_parser("cluster", help="the local standalone Flink cluster")
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--taskmanagers", type=int, default=1, metavar="N", help="(start) default 1")
    p.add_argument(
        "--slots", type=int, metavar="S", help="(start) slots per TaskManager (default: conf's 4)"
    )
    p.set_defaults(func=_cmd_cluster)

    p = sub.add_parser("demo", help="local broker + sample logins + the example resolver")
    p.add_argument("--events", type=int, default=2000)
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except FlinkJobError as e:
        print(f"flink-job: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
