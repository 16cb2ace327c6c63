"""Errors users can meet. One base class; each area has a subclass.

Every error carries ``resolver=`` and ``field=`` where they apply, and its message says what is
wrong, where, what was received and how to fix it.
"""

from __future__ import annotations


class FlinkJobError(Exception):
    """Base class of every error this project raises for a user mistake or environment problem."""

    def __init__(
        self, message: str, *, resolver: str | None = None, field: str | None = None
    ) -> None:
        self.resolver = resolver
        self.field = field
        super().__init__(message)


class ResolverDefinitionError(FlinkJobError, TypeError):
    """A resolver, feature class or state class is defined wrongly (raised at import time)."""


class StateSchemaError(FlinkJobError):
    """Stored state cannot be restored into the current state class."""


class ConfigError(FlinkJobError, ValueError):
    """Configuration (conf/, flags, environment, sources) is invalid or incomplete."""


class EnvironmentNotReadyError(FlinkJobError, RuntimeError):
    """Something the job needs is missing: a jar, the broker, the cluster. The message says how
    to get it (usually ``./build.sh``)."""


class IgnoredArgumentWarning(UserWarning):
    """A Chalk argument that has no meaning on Flink was accepted and is ignored."""
