"""What ``flink-job resolvers`` prints: a resolver's source, keys, state and output. No secrets."""

from __future__ import annotations

from typing import Any

from flink_job._keying import json_key_path
from flink_job._types import fields_of
from flink_job.features import feature_set
from flink_job.streams import Resolver

__all__ = ["describe_resolvers"]


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _keyed(r: Resolver[Any, Any]) -> str:
    if not r.keys:
        return "kafka record key"
    path = json_key_path(r)
    return f"on the JVM (the string at {path})" if path else "in Python (key selector)"


def describe_resolvers(resolvers: list[Resolver[Any, Any]]) -> list[dict[str, Any]]:
    """Plain dicts describing each resolver (only names and types, never connection secrets)."""
    out = []
    for r in resolvers:
        state = None
        if r.state is not None:
            state = {
                "class": r.state.cls.__qualname__,
                "param": r.state.param,
                "fields": {n: _type_name(t) for n, t in fields_of(r.state.cls).items()},
            }
        out.append(
            {
                "name": r.name,
                "source": r.source.label,
                "topic": r.source.topic or r.source.name,
                "message": _type_name(r.message_type),
                "keys": {k.dotted: k.feature.fqn for k in r.keys},
                "keyed": _keyed(r),
                "state": state,
                "output": sorted(f.fqn for f in r.output.allowed),
                "owner": r.owner,
                "timestamp": r.timestamp,
                "late_arrival_deadline_ms": r.source.late_arrival_deadline_ms,
                "environments": list(r.environments) if r.environments is not None else None,
                # Chalk arguments accepted without meaning on Flink (each warned about once).
                "ignored": {k: repr(v) for k, v in r.ignored.items()},
                "feature_classes": _feature_classes(r),
            }
        )
    return out


def _feature_classes(r: Resolver[Any, Any]) -> dict[str, dict[str, Any]]:
    """``@features(...)`` / ``feature(...)`` arguments of the output classes, as given."""
    out: dict[str, dict[str, Any]] = {}
    for cls in r.output.classes:
        fs = feature_set(cls)
        if fs is None or not (fs.options or fs.feature_options):
            continue
        out[fs.namespace] = {
            "options": {k: repr(v) for k, v in fs.options.items()},
            "features": {
                n: {k: repr(v) for k, v in given.items()} for n, given in fs.feature_options.items()
            },
        }
    return out
