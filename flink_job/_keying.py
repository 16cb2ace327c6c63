"""Where the state key is computed: on the JVM when that provably gives the same key.

The job keys every message by :func:`flink_job._core.canonical_key` of its re-key values. In
the general case a Python key selector computes it (decode + validate + read the path), which
costs an extra Python operator and a second crossing between Java and Python per message. For
the common case - one key, a plain ``str`` field reached through plain pydantic models, no
``parse=`` - the key is exactly the JSON string at that path, so the SQL projection in front of
the keyed operator computes it with ``JSON_VALUE`` instead, and the Python side only checks it.

This module decides which case a resolver is in. It is pure Python (no pyflink).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any

import pydantic

from flink_job.streams import Resolver

__all__ = ["json_key_path"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Model settings under which a validated string can differ from the JSON text.
_CHANGING_CONFIG = (
    "alias_generator",
    "str_strip_whitespace",
    "str_to_lower",
    "str_to_upper",
    "coerce_numbers_to_str",
)


def json_key_path(resolver: Resolver[Any, Any]) -> str | None:
    """The JSONPath (``$.a.b``) whose string value *is* the resolver's state key, or None when
    the key must be computed in Python (several keys, ``parse=``, non-``str`` key, aliases,
    validators or string-changing settings anywhere on the path)."""
    if resolver.parse is not None or resolver.parse_input is not None:
        return None
    if len(resolver.keys) != 1:
        return None
    model: Any = resolver.message_type
    path = resolver.keys[0].path
    for i, name in enumerate(path):
        if not _plain_model(model) or not _NAME.match(name):
            return None
        field = model.model_fields.get(name)
        if field is None or field.metadata:
            return None
        if field.alias not in (None, name) or field.validation_alias not in (None, name):
            return None
        inner = _without_none(field.annotation)
        if i == len(path) - 1:
            if inner is not str:
                return None
        else:
            model = inner
    return "$." + ".".join(path)


def _plain_model(model: Any) -> bool:
    if not (isinstance(model, type) and issubclass(model, pydantic.BaseModel)):
        return False
    config = model.model_config
    if any(config.get(k) for k in _CHANGING_CONFIG):
        return False
    d = model.__pydantic_decorators__
    return not (d.validators or d.field_validators or d.root_validators or d.model_validators)


def _without_none(annotation: Any) -> Any:
    """``X | None`` / ``Optional[X]`` -> ``X``; anything else unchanged (a None key value is
    a MissingKey dead letter either way: JSON_VALUE gives NULL, Python finds None)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
