"""``State[T]``: marks the resolver parameter that holds per-key state.

``T`` is a dataclass or a pydantic model. To type checkers ``State[T]`` is just ``T``, so
``state.unique_ips.add(...)`` type-checks.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar, get_args, get_origin

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
    if get_origin(annotation) is Annotated:
        args = get_args(annotation)
        if any(m is _STATE for m in args[1:]):
            inner = args[0]
            return inner if isinstance(inner, type) else None
    return None


def is_state_annotation(annotation: Any) -> bool:
    """Whether ``annotation`` is ``State[...]`` (whatever is inside)."""
    if get_origin(annotation) is not Annotated:
        return False
    return any(m is _STATE for m in get_args(annotation)[1:])
