"""Where the jars are: fetched from Maven Central by ``build.sh`` into ``build/jars/``."""

from __future__ import annotations

import os
from pathlib import Path

from flink_job.config import project_root
from flink_job.errors import EnvironmentNotReadyError

__all__ = ["jar_dir", "kafka_broker_classpath", "kafka_connector_jar"]


def jar_dir(kind: str) -> Path:
    """``build/jars/<kind>`` under the project root."""
    return project_root() / "build" / "jars" / kind


def kafka_connector_jar() -> Path:
    """The Flink Kafka SQL connector jar (``FLINK_JOB_KAFKA_CONNECTOR_JAR`` overrides)."""
    env = os.environ.get("FLINK_JOB_KAFKA_CONNECTOR_JAR")
    if env:
        if not Path(env).is_file():
            raise EnvironmentNotReadyError(
                f"FLINK_JOB_KAFKA_CONNECTOR_JAR points at {env}, which does not exist; fix: "
                "unset it and run ./build.sh"
            )
        return Path(env)
    found = sorted(jar_dir("flink").glob("flink-sql-connector-kafka-*.jar"))
    if not found:
        raise EnvironmentNotReadyError(
            f"the Flink Kafka connector jar is missing from {jar_dir('flink')}; fix: run ./build.sh"
        )
    return found[-1]


def kafka_broker_classpath() -> list[Path]:
    """The Kafka broker's jars (for ``flink-job kafka start``)."""
    jars = sorted(jar_dir("kafka").glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise EnvironmentNotReadyError(
            f"the Kafka broker jars are missing from {jar_dir('kafka')}; fix: run ./build.sh"
        )
    return jars
