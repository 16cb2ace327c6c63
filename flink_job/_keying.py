"""Where the state key is computed: on the JVM when that provably gives the same key.

The job keys every message by :func:`flink_job._core.canonical_key` of its re-key values. In
the general case a Python key selector computes it (decode + validate + read the path), which
costs an extra Python operator and a second crossing between Java and Python per message. For
the common case - one key, a plain ``str`` field reached through plain pydantic models, no
``parse=`` - the key is exactly the JSON string at that path, so a JVM function in front of
the keyed operator reads it (``flinkjob.operators.JsonStateKey``, ``connectors/java``) and
the Python side only checks it.

This module decides which case a resolver is in. It is pure Python (no pyflink).
"""

from __future__ import annotations

import re
from typing import Any

from flink_job._core import state_key
from flink_job._types import is_model, without_none
from flink_job.streams import Resolver

__all__ = ["json_key_defaults", "json_key_path"]

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
        if field.default_factory is not None:  # a default computed per message: not on the JVM
            return None
        if not field.is_required() and _absent_key(field.default, path[i + 1 :]) is _NOT_STR:
            return None
        inner = without_none(field.annotation)
        if i == len(path) - 1:
            if inner is not str:
                return None
        else:
            model = inner
    return "$." + ".".join(path)


_NOT_STR = object()


def json_key_defaults(resolver: Resolver[Any, Any]) -> tuple[tuple[str, str | None], ...]:
    """For a resolver keyed on the JVM, per prefix of the key path (``$.a``, ``$.a.b``): the
    state key of a message in which that member is absent - the default's key, or None when
    that message cannot be keyed (a required field, or a default giving no key)."""
    model: Any = resolver.message_type
    path = resolver.keys[0].path
    out: list[tuple[str, str | None]] = []
    for i, name in enumerate(path):
        field = model.model_fields[name]
        key = None if field.is_required() else _absent_key(field.default, path[i + 1 :])
        prefix = "$." + ".".join(path[: i + 1])
        out.append((prefix, state_key(key) if isinstance(key, str) else None))
        model = without_none(field.annotation)
    return tuple(out)


def _absent_key(default: Any, rest: tuple[str, ...] | list[str]) -> Any:
    """The key value a default gives (None: no key; _NOT_STR: a key that is not a string)."""
    v = default
    for name in rest:
        if v is None:
            return None
        v = getattr(v, name, None)
    if v is None or type(v) is str:
        return v
    return _NOT_STR


def _plain_model(model: Any) -> bool:
    if not is_model(model):
        return False
    config = model.model_config
    if any(config.get(k) for k in _CHANGING_CONFIG):
        return False
    d = model.__pydantic_decorators__
    return not (d.validators or d.field_validators or d.root_validators or d.model_validators)
