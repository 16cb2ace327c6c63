"""Flink operator functions: the PyFlink side of the job. They hold only a reference to the
resolver (module + name) and load it when the operator opens, then delegate every message to
:class:`flink_job._core.ResolverCore` - the very code ``replay`` runs.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, KeySelector, OutputTag, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from flink_job._core import SKIP, Applied, DeadLetter, Decoded, RawMessage, ResolverCore
from flink_job.loader import collect_resolvers, import_target
from flink_job.streams import Resolver

# Messages that cannot be keyed all go to this key; the keyed operator dead-letters them
# (re-decoding fails the same way) without ever touching this key's state.
UNKEYABLE = "\x00flink-job:unkeyable"

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# What every sink gets: record key, record value, headers.
OUT_FIELDS = ["k", "v", "headers"]
OUT_TYPE = Types.ROW_NAMED(OUT_FIELDS, [BYTES, BYTES, Types.MAP(Types.STRING(), BYTES)])
DEAD_LETTERS = OutputTag("dead-letters", OUT_TYPE)
STATE_DESCRIPTOR_NAME = "state"


class StateCell:
    """The key's encoded state, stored identically in thread and process mode.

    Process mode keeps every Python ValueState as a Java ``ListState<byte[]>`` named
    ``python-state-<name>`` holding one element: the value framed by PyFlink's bytes coder
    (``be32(len) payload``).
    Thread mode would store a ``ValueState`` of another Java type, so a savepoint taken in one
    mode restores as *empty* in the other. Here thread mode declares the same Java
    ``ListState<byte[]>`` and reads/writes that framed element through the raw Java state
    (PyFlink's embedded converter also turns ``byte[]`` into tuples of ints), so both modes
    share one on-disk form and savepoints restore in either.
    """

    def __init__(self, runtime_context: RuntimeContext, execution_mode: str) -> None:
        self._thread = execution_mode == "thread"
        if self._thread:
            # Process mode's Java side names it "python-state-<name>"; use that very name.
            descriptor = ListStateDescriptor(f"python-state-{STATE_DESCRIPTOR_NAME}", BYTES)
            self._raw = runtime_context.get_list_state(descriptor)._state
        else:
            self._value = runtime_context.get_state(
                ValueStateDescriptor(STATE_DESCRIPTOR_NAME, BYTES)
            )

    def get(self) -> bytes | None:
        if not self._thread:
            value = self._value.value()
            return None if value is None else bytes(value)
        elements = self._raw.get()
        if not elements:
            return None
        for framed in elements:
            framed = bytes(framed)
            if int.from_bytes(framed[:4], "big") != len(framed) - 4:
                raise ValueError("state element has an unexpected frame; not written by flink-job")
            return framed[4:]
        return None

    def set(self, payload: bytes) -> None:
        if not self._thread:
            self._value.update(payload)
            return
        self._raw.update([len(payload).to_bytes(4, "big") + payload])


@dataclasses.dataclass(frozen=True)
class ResolverRef:
    """Where to find a resolver in a worker: its module (and file, if loaded from one)."""

    module: str
    file: str | None
    name: str
    max_message_bytes: int | None = None
    execution_mode: str = "thread"

    def load(self) -> Resolver[Any, Any]:
        if self.file and Path(self.file).is_file():
            module = import_target(self.file)
        else:
            module = importlib.import_module(self.module)
        for r in collect_resolvers(module):
            if r.name == self.name:
                return r
        raise LookupError(f"resolver {self.name!r} not found in module {self.module!r}")

    def core(self) -> ResolverCore:
        return ResolverCore(self.load(), self.max_message_bytes)


def raw_message(row: Row) -> RawMessage:
    """The source table's row (k, v, topic, partition, offset, ts, headers) as a RawMessage."""
    headers = row[6]
    return RawMessage(
        value=row[1],
        key=row[0],
        topic=row[2] or "",
        partition=row[3] if row[3] is not None else -1,
        offset=row[4] if row[4] is not None else -1,
        timestamp=None,
        headers=tuple(headers.items()) if headers else (),
    )


def _dead_row(d: DeadLetter) -> Row:
    # Kafka headers are a list; the table connector takes a map (one value per name).
    return Row(d.message.key, d.message.value, dict(d.headers()))


class KeyOf(KeySelector):
    """Computes the state key (decode + re-key mapping, or the Kafka record key)."""

    def __init__(self, ref: ResolverRef) -> None:
        self.ref = ref
        self._core: ResolverCore | None = None
        self._needs_parse = True

    def open(self, runtime_context: RuntimeContext) -> None:
        self._core = self.ref.core()
        self._needs_parse = bool(self._core.resolver.keys)

    def get_key(self, value: Row) -> str:
        if not self._needs_parse:
            k = value[0]
            if k is None:
                return UNKEYABLE
            try:
                return str(k.decode("utf-8"))
            except UnicodeDecodeError:
                return UNKEYABLE
        assert self._core is not None
        d = self._core.decode(raw_message(value))
        return d.key if isinstance(d, Decoded) else UNKEYABLE


class Resolve(KeyedProcessFunction):
    """The keyed operator: the key's ValueState holds the encoded state envelope (bytes)."""

    def __init__(self, ref: ResolverRef) -> None:
        self.ref = ref
        self._core: ResolverCore | None = None
        self._state: Any = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._core = self.ref.core()
        if self._core.stateful:
            self._state = StateCell(runtime_context, self.ref.execution_mode)
        group = runtime_context.get_metrics_group()
        self._in = group.counter("eventsIn")
        self._rows = group.counter("featureRows")
        self._dead = group.counter("deadLetters")
        self._skipped = group.counter("skipped")

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Any:
        core = self._core
        assert core is not None
        self._in.inc()
        msg = raw_message(value)
        d = core.decode(msg)
        if d is SKIP:
            self._skipped.inc()
            return
        if isinstance(d, DeadLetter):
            self._dead.inc()
            yield DEAD_LETTERS, _dead_row(d)
            return
        assert isinstance(d, Decoded)
        if self._state is not None:
            state = core.load_state(self._state.get())
        else:
            state = None
        out = core.apply(d, state, msg)
        if isinstance(out, DeadLetter):
            self._dead.inc()
            yield DEAD_LETTERS, _dead_row(out)
            return
        assert isinstance(out, Applied)
        if out.encoded is not None:
            self._state.set(out.encoded)
        if out.row is not None:
            self._rows.inc()
            yield Row(out.row.key, out.row.value, {"resolver": core.name.encode()})
