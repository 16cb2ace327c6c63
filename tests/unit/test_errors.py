"""One base exception class; each area a subclass carrying resolver= and field=."""

import pytest

import flink_job
from flink_job.errors import (
    ConfigError,
    EnvironmentNotReadyError,
    FlinkJobError,
    ResolverDefinitionError,
    StateSchemaError,
)


@pytest.mark.parametrize(
    "cls", [ConfigError, EnvironmentNotReadyError, ResolverDefinitionError, StateSchemaError]
)
def test_every_error_is_a_flink_job_error_with_resolver_and_field(cls):
    err = cls("message", resolver="r", field="f")
    assert isinstance(err, FlinkJobError)
    assert (err.resolver, err.field, str(err)) == ("r", "f", "message")
    bare = cls("m")
    assert bare.resolver is None and bare.field is None


def test_errors_also_fit_the_builtin_families_callers_expect():
    assert issubclass(ResolverDefinitionError, TypeError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(EnvironmentNotReadyError, RuntimeError)


def test_errors_are_importable_from_the_top_level():
    assert flink_job.FlinkJobError is FlinkJobError
    assert flink_job.ResolverDefinitionError is ResolverDefinitionError
    assert flink_job.StateSchemaError is StateSchemaError
    assert flink_job.ConfigError is ConfigError
