"""``Secret``: a string (a SASL or keystore password) that never shows itself.

Defined here because the Kafka client properties and DDL (:mod:`connectors.client`,
:mod:`connectors.kafka_tables`) mask it; users meet it as ``flink_job.sources.Secret``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Secret"]


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``'****'``."""

    __slots__ = ("_value",)
    __module__ = "flink_job.sources"

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the Kafka client configuration only."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))
