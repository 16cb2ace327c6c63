"""Type introspection shared by the definition checks, keying, the state codec and
``describe``: which classes have fields, what those fields are, and unwrapping of
``X | None`` and ``Annotated[...]``. Pure Python (no pyflink)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import pydantic

# What field_type gives for a name that is not a field.
MISSING: Any = object()


def is_model(tp: Any) -> bool:
    """A pydantic model class."""
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def is_dataclass_type(tp: Any) -> bool:
    """A dataclass (the class, not an instance)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def has_fields(tp: Any) -> bool:
    """A class whose values are made of named fields: a pydantic model or a dataclass."""
    return is_model(tp) or is_dataclass_type(tp)


def fields_of(cls: type) -> dict[str, Any]:
    """Field name -> resolved annotation, for a dataclass or pydantic model."""
    if is_model(cls):
        return {n: f.annotation for n, f in cls.model_fields.items()}  # type: ignore[attr-defined]
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def field_type(tp: Any, name: str) -> Any:
    """The annotation of field ``name`` of ``tp``, or MISSING (no such field, or ``tp`` has no
    fields)."""
    if not has_fields(tp):
        return MISSING
    return fields_of(tp).get(name, MISSING)


def required_fields(cls: Any) -> list[str]:
    """The fields of a dataclass or model that have no default."""
    if is_model(cls):
        return [n for n, f in cls.model_fields.items() if f.is_required()]
    if dataclasses.is_dataclass(cls):
        return [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
    return []


def without_none(tp: Any) -> Any:
    """``X | None`` / ``Optional[X]`` -> ``X``; anything else unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def has_marker(annotation: Any, marker: object) -> bool:
    """``annotation`` is ``Annotated[..., marker, ...]`` (the very marker object)."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return False
    return any(m is marker for m in typing.get_args(annotation)[1:])
