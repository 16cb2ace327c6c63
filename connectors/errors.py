"""The project's error base and the error for a missing environment piece (a jar, the broker).

They are defined here, in the layer under ``flink_job``, so that ``connectors`` raises the very
classes users catch; :mod:`flink_job.errors` re-exports them with the other error classes
(``__module__`` names that public home, so tracebacks and reprs read ``flink_job.errors``).
"""

from __future__ import annotations

__all__ = ["EnvironmentNotReadyError", "FlinkJobError"]


class FlinkJobError(Exception):
    """Base class of every error this project raises for a user mistake or environment problem."""

    __module__ = "flink_job.errors"

    def __init__(
        self, message: str, *, resolver: str | None = None, field: str | None = None
    ) -> None:
        self.resolver = resolver
        self.field = field
        super().__init__(message)


class EnvironmentNotReadyError(FlinkJobError, RuntimeError):
    """Something the job needs is missing: a jar, the broker, the cluster. The message says how
    to get it (usually ``./build.sh``)."""

    __module__ = "flink_job.errors"
