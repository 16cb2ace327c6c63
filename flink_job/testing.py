"""Run resolvers in-process with exactly the Flink job's semantics, without Flink.

result = replay(track_unique_ips, [LoginEvent(user_id="u1", ip_address="1.1.1.1")])
assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 1}]
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic
import pydantic_core

from flink_job._core import (
    DLQ_ERROR_CLASS,
    DLQ_ERROR_MESSAGE,
    DLQ_RESOLVER,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    DLQ_VALUE_TRUNCATED,
    HEADER_RESOLVER,
    LATE,
    SKIP,
    Applied,
    DeadLetter,
    FeatureRow,
    RawMessage,
    ResolverCore,
    step,
)
from flink_job.loader import collect_resolvers
from flink_job.streams import runs_in

# The types replay returns and the header names of dead letters and feature rows are public
# here (defined in flink_job._core, which the job's operators share).
__all__ = [
    "DLQ_ERROR_CLASS",
    "DLQ_ERROR_MESSAGE",
    "DLQ_RESOLVER",
    "DLQ_SOURCE_OFFSET",
    "DLQ_SOURCE_PARTITION",
    "DLQ_SOURCE_TOPIC",
    "DLQ_VALUE_TRUNCATED",
    "HEADER_RESOLVER",
    "DeadLetter",
    "FeatureRow",
    "RawMessage",
    "ReplayResult",
    "replay",
]


@dataclasses.dataclass
class ReplayResult:
    """What a replay produced.

    Attributes:
        records: output records in order (key bytes, JSON value, resolver name).
        dead_letters: messages that went to the dead-letter topic, with why.
        skipped: how many messages ``parse=`` skipped.
        late: how many messages arrived later than their source's ``late_arrival_deadline``.
    """

    records: list[FeatureRow]
    dead_letters: list[DeadLetter]
    skipped: int
    _stored: dict[str, dict[str, bytes]]
    _cores: dict[str, ResolverCore]
    late: int = 0

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Feature rows as on the output topic: ``{"user.id": "u1", ...}``, in order."""
        return [r.as_dict() for r in self.records]

    @property
    def states(self) -> dict[str, Any]:
        """State key -> state object, for the one stateful resolver replayed."""
        stateful = [n for n, c in self._cores.items() if c.stateful]
        if len(stateful) != 1:
            raise ValueError(
                f"replay ran {len(stateful)} stateful resolvers ({', '.join(stateful)}); "
                "use .states_of(name)"
            )
        return self.states_of(stateful[0])

    def states_of(self, resolver: str) -> dict[str, Any]:
        """State key -> state object for ``resolver``, decoded from the stored bytes."""
        core = self._cores[resolver]
        return {k: core.load_state(b) for k, b in self._stored.get(resolver, {}).items()}


class _DictStore:
    """replay's state store: encoded states in a dict, decoded on every load (nothing cached,
    so a message can never see an object another message left behind)."""

    def __init__(self, core: ResolverCore, stored: dict[str, bytes]) -> None:
        self._core = core
        self._stored = stored

    def load(self, key: str) -> Any:
        return self._core.load_state(self._stored.get(key))

    def save(self, key: str, state: Any, encoded: bytes) -> None:
        self._stored[key] = encoded

    def discard(self, key: str) -> None:
        pass  # the dict still holds the bytes from before the failed message


def _to_raw(item: Any, topic: str, offset: int) -> RawMessage:
    key: Any = None
    if isinstance(item, RawMessage):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        key, item = item
    if isinstance(item, bytes | bytearray):
        value = bytes(item)
    elif isinstance(item, str):
        value = item.encode()
    elif isinstance(item, pydantic.BaseModel):
        value = item.model_dump_json(by_alias=True).encode()  # as a producer would send it
    elif item is None:
        value = b""
    elif isinstance(item, dict) or dataclasses.is_dataclass(item):
        value = pydantic_core.to_json(item)
    else:
        value = json.dumps(item).encode()
    if isinstance(key, str):
        key = key.encode()
    elif isinstance(key, bytearray):
        key = bytes(key)
    elif key is not None and not isinstance(key, bytes):
        key = pydantic_core.to_json(key)  # a Kafka key is bytes: 7 is b"7", as a producer sends
    return RawMessage(value=value, key=key, topic=topic, partition=0, offset=offset)


def replay(
    resolvers: Any,
    messages: Iterable[Any] | Mapping[str, Iterable[Any]],
    *,
    initial_states: Mapping[str, Mapping[str, Any]] | None = None,
    environment: str | None = None,
) -> ReplayResult:
    """Run resolvers over messages in order, as the Flink job would.

    Args:
        resolvers: a resolver, a module of resolvers, or a list of them.
        messages: model instances, dicts, JSON bytes/str, ``(kafka_key, message)`` pairs or
            :class:`RawMessage`s. A list goes to every resolver; a mapping sends each list to
            the resolvers whose source has that name or topic.
        initial_states: ``{resolver: {state key: state object}}`` to start from.
        environment: as ``--environment``: resolvers declared with ``environment=`` run only
            when it names one of theirs, as in the job.
    """
    found = collect_resolvers(resolvers)
    chosen = [r for r in found if runs_in(r, environment)]
    if found and not chosen:
        raise ValueError(
            f"no resolver runs in environment {environment!r}: "
            + "; ".join(f"{r.name!r} runs only in {', '.join(r.environments or ())}" for r in found)
            + "; fix: pass environment=<one of them>, as the job's --environment"
        )
    cores = {r.name: ResolverCore(r) for r in chosen}
    stored: dict[str, dict[str, bytes]] = {name: {} for name in cores}
    for name, states in (initial_states or {}).items():
        codec = cores[name].resolver.state.codec  # type: ignore[union-attr]
        stored[name] = {k: codec.encode(v) for k, v in states.items()}
    if isinstance(messages, Mapping):
        streams = {str(k): list(v) for k, v in messages.items()}
    else:
        streams = {"": list(messages)}
    stores = {name: _DictStore(core, stored[name]) for name, core in cores.items()}
    records: list[FeatureRow] = []
    dead: list[DeadLetter] = []
    skipped = late = 0
    for source, items in streams.items():
        targets = [
            c
            for c in cores.values()
            if source == "" or source in (c.resolver.source.name, c.resolver.source.topic)
        ]
        if not targets:
            raise ValueError(f"no resolver reads source {source!r}")
        for offset, item in enumerate(items):
            for core in targets:
                src = core.resolver.source
                msg = _to_raw(item, src.topic or src.name or source, offset)
                out = step(core, msg, stores[core.name])
                if out is SKIP:
                    skipped += 1
                elif out is LATE:
                    late += 1
                elif isinstance(out, DeadLetter):
                    dead.append(out)
                elif isinstance(out, Applied):
                    records.extend(out.rows)
    return ReplayResult(records, dead, skipped, stored, cores, late)
