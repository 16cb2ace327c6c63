"""Run a packaged job (:mod:`flink_job.package`) where it lands: the artifact's ``main.py``
calls :func:`main` under `flink run` or PythonDriver (application mode), with the cluster's
Python. It builds the job from the artifact's resolver module and options and submits it
through the environment Flink provides there, shipping the artifact's code, wheels and jars.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flink_job.config import JobOptions, duration_ms
from flink_job.errors import FlinkJobError
from flink_job.package import Artifact

__all__ = ["attach", "main"]


def attach(env: Any, artifact: Artifact, jars: bool = True) -> None:
    """Ship the artifact with the job: its ``lib/`` (python.files), its wheels
    (python.requirements, installed offline on every TaskManager) and its jars."""
    env.add_python_file(str(artifact.lib))
    env.set_python_requirements(str(artifact.requirements), str(artifact.wheels))
    if jars:
        env.add_jars(*(j.as_uri() for j in artifact.jars))


def _overrides(argv: Sequence[str]) -> dict[str, Any]:
    from flink_job.cli import _add_job_flags

    parser = argparse.ArgumentParser(prog="main.py", description="a packaged flink-job job")
    _add_job_flags(parser, target=False)
    args = parser.parse_args(argv)
    values = {k: v for k, v in vars(args).items() if v is not None and v is not False}
    if "checkpoint_interval_ms" in values:
        values["checkpoint_interval_ms"] = duration_ms(values["checkpoint_interval_ms"])
    return values


def options_for(artifact: Artifact, argv: Sequence[str]) -> JobOptions:
    """The artifact's options with the flags given to ``main.py`` on top."""
    options = dataclasses.replace(artifact.options(), **_overrides(argv))
    options.validate()
    return options


def main(home: str, argv: Sequence[str]) -> int:
    """Build and submit the packaged job; prints its id."""
    from pyflink.datastream import StreamExecutionEnvironment

    from flink_job.job import build_job, flink_configuration

    try:
        artifact = Artifact.load(Path(home))
        options = options_for(artifact, argv)
        config = flink_configuration(options, cluster=True)
        env = StreamExecutionEnvironment.get_execution_environment(config)
        attach(env, artifact)
        job = build_job(artifact.module, options, env=env)
        client = job.env.execute_async(job.name)
    except FlinkJobError as e:
        print(f"flink-job: error: {e}", file=sys.stderr)
        return 2
    print(f"flink-job: job {client.get_job_id()} submitted ({job.name})", flush=True)
    return 0
