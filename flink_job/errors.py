"""Errors users can meet. One base class; each area has a subclass.

Every error carries ``resolver=`` and ``field=`` where they apply, and its message says what is
wrong, where, what was received and how to fix it.
"""

from __future__ import annotations

# The base and EnvironmentNotReadyError live under flink_job's dependency, connectors/, which
# raises them too (missing jars, unreachable brokers); they are public here.
from connectors.errors import EnvironmentNotReadyError, FlinkJobError

__all__ = [
    "ConfigError",
    "EnvironmentNotReadyError",
    "FlinkJobError",
    "IgnoredArgumentWarning",
    "ResolverDefinitionError",
    "StateSchemaError",
]


class ResolverDefinitionError(FlinkJobError, TypeError):
    """A resolver, feature class or state class is defined wrongly (raised at import time)."""


class StateSchemaError(FlinkJobError):
    """Stored state cannot be restored into the current state class."""


class ConfigError(FlinkJobError, ValueError):
    """Configuration (conf/, flags, environment, sources) is invalid or incomplete."""


class IgnoredArgumentWarning(UserWarning):
    """A Chalk argument that has no meaning on Flink was accepted and is ignored."""
