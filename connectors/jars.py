"""Where the jars are: fetched from Maven Central by ``./build.sh`` into ``build/jars/`` of a
project home (the checkout, ``FLINK_JOB_HOME``, or an installed package's data), which the
caller passes in as a :data:`Home` (``flink_job.config.home()``).

``build/jars/flink/`` holds the Flink Kafka SQL connector (a fat jar), ``build/jars/kafka/`` the
Kafka broker (KRaft) with its tools and logging binding. The poms are in ``connectors/maven/``.
``build/jars/operators/`` holds the job's own operators, built from ``connectors/java/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from connectors.errors import EnvironmentNotReadyError

__all__ = [
    "CHECKOUT",
    "ENV_HOME",
    "INSTALLED",
    "Home",
    "jar_dir",
    "job_jars",
    "kafka_broker_classpath",
    "kafka_connector_jar",
    "operators_jar",
]

# A project home: its folder and how it was found. The ways, for error messages and fixes:
Home = tuple[Path, str]
ENV_HOME = "FLINK_JOB_HOME"
CHECKOUT = "this checkout"
INSTALLED = "the installed package (FLINK_JOB_HOME is not set)"


def jar_dir(home: Home, kind: str) -> Path:
    """The jar directory ``build/jars/<kind>`` (``flink``, ``kafka`` or ``operators``) under the
    project home."""
    return home[0] / "build" / "jars" / kind


def kafka_connector_jar(home: Home) -> Path:
    """The Flink Kafka SQL connector jar's path: ``FLINK_JOB_KAFKA_CONNECTOR_JAR``, else the
    one in ``build/jars/flink`` (EnvironmentNotReadyError if missing)."""
    return _find_jar(
        home,
        "FLINK_JOB_KAFKA_CONNECTOR_JAR",
        "to use the jar fetched by ./build.sh",
        "flink",
        "the Flink Kafka connector jar",
        "flink-sql-connector-kafka-*.jar",
        f", found through {home[1]}",
    )


def operators_jar(home: Home) -> Path:
    """The path of the job's own operators jar (from ``connectors/java``):
    ``FLINK_JOB_OPERATORS_JAR``, else the one in ``build/jars/operators``
    (EnvironmentNotReadyError if missing)."""
    return _find_jar(
        home,
        "FLINK_JOB_OPERATORS_JAR",
        f"and {_fix(home)}",
        "operators",
        "the flink-job operators jar",
        "flink-job-operators-*.jar",
    )


def _find_jar(
    home: Home, env_var: str, unset: str, kind: str, what: str, pattern: str, where: str = ""
) -> Path:
    """The jar ``env_var`` names, else the newest ``pattern`` in ``build/jars/<kind>``;
    EnvironmentNotReadyError naming the fix if there is none."""
    env = os.environ.get(env_var)
    if env:
        jar = Path(env).expanduser()
        if not jar.is_file():
            raise EnvironmentNotReadyError(
                f"{env_var}={env} does not exist; fix: point it at the jar, or unset it {unset}"
            )
        return jar.resolve()
    folder = jar_dir(home, kind)
    found = sorted(folder.glob(pattern))
    if not found:
        raise EnvironmentNotReadyError(
            f"{what} ({pattern}) is missing from {folder}{where}; fix: {_fix(home)}"
        )
    return found[-1]


def job_jars(home: Home) -> list[Path]:
    """Every jar a job needs on the cluster (``pipeline.jars``): the Kafka connector and the
    job's own operators (the batched keyed operator), shipped by ``flink-job package`` and
    ``submit``, loaded by local runs. Add a jar the job needs here."""
    return [kafka_connector_jar(home), operators_jar(home)]


def _fix(home: Home) -> str:
    origin = home[1]
    if origin == CHECKOUT:
        return "run ./build.sh"
    if origin.startswith(ENV_HOME):
        return "run ./build.sh in that folder, or point FLINK_JOB_HOME at a checkout that did"
    return (
        "set FLINK_JOB_KAFKA_CONNECTOR_JAR to the jar, or FLINK_JOB_HOME to a checkout where "
        "./build.sh fetched it, or reinstall from such a checkout (its wheel carries the jar)"
    )


def kafka_broker_classpath(home: Home) -> list[Path]:
    """The Kafka broker's classpath: every jar in ``build/jars/kafka``.

    Returns:
        The jars, sorted by name.

    Raises:
        EnvironmentNotReadyError: The broker jars are missing.
    """
    folder = jar_dir(home, "kafka")
    jars = sorted(folder.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise EnvironmentNotReadyError(
            f"the Kafka broker jars (kafka_2.13-*.jar and dependencies) are missing from "
            f"{folder}, found through {home[1]}; fix: {_fix(home)}"
        )
    return jars
