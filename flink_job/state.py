"""``State[T]``: marks the resolver parameter that holds per-key state.

``T`` is a dataclass or a pydantic model. To type checkers ``State[T]`` is just ``T``, so
``state.unique_ips.add(...)`` type-checks.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar, get_args

from flink_job._types import has_marker

__all__ = ["KeyedState", "State", "state_class"]

T = TypeVar("T")


class _StateMarker:
    def __repr__(self) -> str:
        return "State"


_STATE = _StateMarker()

State = Annotated[T, _STATE]
KeyedState = State
"""Chalk's other name for :data:`State` (``chalk.streams.KeyedState``)."""


def state_class(annotation: Any) -> type | None:
    """The ``T`` of a ``State[T]`` annotation, else ``None``."""
    if not has_marker(annotation, _STATE):
        return None
    inner = get_args(annotation)[0]
    return inner if isinstance(inner, type) else None


def is_state_annotation(annotation: Any) -> bool:
    """Whether ``annotation`` is ``State[...]`` (whatever is inside)."""
    return has_marker(annotation, _STATE)
