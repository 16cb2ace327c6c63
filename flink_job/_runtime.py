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
from pyflink.datastream.state import ValueStateDescriptor

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
# The envelope's bytes are kept as a latin-1 string (a lossless 1:1 byte mapping): PyFlink's
# embedded converter turns byte[] state into a tuple of ints, and PICKLED_BYTE_ARRAY state is
# stored differently in thread and process mode. A Java String is stored identically by both
# modes, so a savepoint restores in either.
STATE_TYPE = Types.STRING()


@dataclasses.dataclass(frozen=True)
class ResolverRef:
    """Where to find a resolver in a worker: its module (and file, if loaded from one)."""

    module: str
    file: str | None
    name: str
    max_message_bytes: int | None = None

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
            self._state = runtime_context.get_state(
                ValueStateDescriptor(STATE_DESCRIPTOR_NAME, STATE_TYPE)
            )
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
            stored = self._state.value()
            state = core.load_state(None if stored is None else stored.encode("latin-1"))
        else:
            state = None
        out = core.apply(d, state, msg)
        if isinstance(out, DeadLetter):
            self._dead.inc()
            yield DEAD_LETTERS, _dead_row(out)
            return
        assert isinstance(out, Applied)
        if out.encoded is not None:
            self._state.update(out.encoded.decode("latin-1"))
        if out.row is not None:
            self._rows.inc()
            yield Row(out.row.key, out.row.value, {"resolver": core.name.encode()})
