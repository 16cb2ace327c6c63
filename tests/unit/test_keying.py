"""Which resolvers are keyed on the JVM (the string at a path) and which in Python.

The JVM path is taken only when the JSON string at the path is, provably, the validated key:
anything that could make them differ (parse=, several keys, a non-str key, aliases,
validators, string-changing model settings, constrained types) keeps the Python key selector.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from flink_job import KafkaSource
from flink_job._keying import json_key_path
from flink_job.features import Features, features
from flink_job.streams import stream

SRC = KafkaSource(name="ev", topic="ev")


@features
class User:
    id: str
    n: int


def _resolver(event_type: type, path: str = "user_id", **kw: Any):  # type: ignore[no-untyped-def]
    def fn(e: Any) -> Features[User.id]:
        return User(id="x")

    fn.__annotations__["e"] = event_type
    return stream(source=SRC, keys={path: User.id}, **kw)(fn)


class Plain(BaseModel):
    user_id: str


class OptionalKey(BaseModel):
    user_id: str | None = None


class Inner(BaseModel):
    id: str


class Nested(BaseModel):
    user: Inner | None = None


def test_plain_string_keys_are_json_paths() -> None:
    assert json_key_path(_resolver(Plain)) == "$.user_id"
    assert json_key_path(_resolver(OptionalKey)) == "$.user_id"
    assert json_key_path(_resolver(Nested, "user.id")) == "$.user.id"


class IntKey(BaseModel):
    user_id: int


class Aliased(BaseModel):
    user_id: str = Field(alias="userId")


class Validated(BaseModel):
    user_id: str

    @field_validator("user_id")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()


class ModelValidated(BaseModel):
    user_id: str

    @model_validator(mode="before")
    @classmethod
    def _unwrap(cls, v: Any) -> Any:
        return v


class Lowered(BaseModel):
    model_config = ConfigDict(str_to_lower=True)
    user_id: str


class Stripped(BaseModel):
    user_id: Annotated[str, pydantic.StringConstraints(strip_whitespace=True)]


class CamelCase(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel)
    user_id: str


class InnerAliased(BaseModel):
    id: str = Field(validation_alias="ID")


class NestedAliased(BaseModel):
    user: InnerAliased


@pytest.mark.parametrize(
    "event_type",
    [IntKey, Aliased, Validated, ModelValidated, Lowered, Stripped, CamelCase],
)
def test_keys_that_validation_may_change_stay_in_python(event_type: type) -> None:
    assert json_key_path(_resolver(event_type)) is None


def test_nested_aliases_parse_and_several_keys_stay_in_python() -> None:
    assert json_key_path(_resolver(NestedAliased, "user.id")) is None
    parsed = _resolver(
        Plain,
        parse=lambda raw: Plain(user_id=raw.user_id),
    )
    assert json_key_path(parsed) is None
