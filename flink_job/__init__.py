"""Chalk-style stateful stream resolvers, run as Apache Flink jobs.

The user API (this package's top level, ``features``, ``streams``, ``state``) never imports
pyflink; only ``flink_job.job`` and ``flink_job._runtime`` do.
"""

from flink_job.errors import (
    ConfigError,
    EnvironmentNotReadyError,
    FlinkJobError,
    ResolverDefinitionError,
    StateSchemaError,
)
from flink_job.features import DataFrame, Feature, Features, FeatureTime, Primary, feature, features
from flink_job.sources import KafkaSource
from flink_job.state import KeyedState, State
from flink_job.streams import Resolver, stream

__all__ = [
    "ConfigError",
    "DataFrame",
    "EnvironmentNotReadyError",
    "Feature",
    "FeatureTime",
    "Features",
    "FlinkJobError",
    "KafkaSource",
    "KeyedState",
    "Primary",
    "Resolver",
    "ResolverDefinitionError",
    "State",
    "StateSchemaError",
    "feature",
    "features",
    "stream",
]
