"""Where the jars are: fetched from Maven Central by ``./build.sh`` into ``build/jars/``.

``build/jars/flink/`` holds the Flink Kafka SQL connector (a fat jar), ``build/jars/kafka/`` the
Kafka broker (KRaft) with its tools and logging binding. The poms are in ``connectors/maven/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from flink_job.config import project_root
from flink_job.errors import EnvironmentNotReadyError

__all__ = ["jar_dir", "kafka_broker_classpath", "kafka_connector_jar", "project_root"]

_FIX = "run ./build.sh"


def jar_dir(kind: str) -> Path:
    """The jar directory ``build/jars/<kind>`` (``flink`` or ``kafka``) under the project root."""
    return project_root() / "build" / "jars" / kind


def kafka_connector_jar() -> Path:
    """The Flink Kafka SQL connector jar.

    ``FLINK_JOB_KAFKA_CONNECTOR_JAR`` overrides the jar in ``build/jars/flink``.

    Returns:
        The path of the jar.

    Raises:
        EnvironmentNotReadyError: The jar is missing.
    """
    env = os.environ.get("FLINK_JOB_KAFKA_CONNECTOR_JAR")
    if env:
        jar = Path(env).expanduser()
        if not jar.is_file():
            raise EnvironmentNotReadyError(
                f"FLINK_JOB_KAFKA_CONNECTOR_JAR={env} does not exist; "
                f"fix: point it at the jar, or unset it and {_FIX}"
            )
        return jar.resolve()
    folder = jar_dir("flink")
    found = sorted(folder.glob("flink-sql-connector-kafka-*.jar"))
    if not found:
        raise EnvironmentNotReadyError(
            f"the Flink Kafka connector jar (flink-sql-connector-kafka-*.jar) is missing from "
            f"{folder}; fix: {_FIX}"
        )
    return found[-1]


def kafka_broker_classpath() -> list[Path]:
    """The Kafka broker's classpath: every jar in ``build/jars/kafka``.

    Returns:
        The jars, sorted by name.

    Raises:
        EnvironmentNotReadyError: The broker jars are missing.
    """
    folder = jar_dir("kafka")
    jars = sorted(folder.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise EnvironmentNotReadyError(
            f"the Kafka broker jars (kafka_2.13-*.jar and dependencies) are missing from "
            f"{folder}; fix: {_FIX}"
        )
    return jars
