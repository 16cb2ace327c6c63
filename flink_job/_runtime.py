"""Flink operator functions: the PyFlink side of the job. They hold only a reference to the
resolver (module + name) and load it when the operator opens, then delegate every message to
:class:`flink_job._core.ResolverCore` - the very code ``replay`` runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import threading
import time
from pathlib import Path
from typing import Any

from pyflink.common import Row
from pyflink.common.typeinfo import Types
from pyflink.datastream import KeyedProcessFunction, KeySelector, OutputTag, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from flink_job._core import LATE, Applied, DeadLetter, Decoded, RawMessage, ResolverCore
from flink_job.loader import collect_resolvers, import_by_content, import_target
from flink_job.streams import Resolver

# Messages that cannot be keyed all go to this key; the keyed operator dead-letters them
# (re-decoding fails the same way) without ever touching this key's state.
UNKEYABLE = "\x00flink-job:unkeyable"

BYTES = Types.PRIMITIVE_ARRAY(Types.BYTE())
# What the Python operators get per Kafka record (built by flink_job.job.MSG_SQL): (key,
# value, partition, offset, headers, absent, timestamp), at the MSG_* indexes below. The topic
# is the source's (in ResolverRef): every field crossing into Python costs time. A Tuple, not
# a Row: PyFlink builds a Python Row object (and a RowKind) per Row crossing, a plain tuple for
# a Tuple. Tuple fields cannot be null, so a missing key, value or headers map arrives as a
# placeholder with its ABSENT_* bit set in `absent`; a missing timestamp is NO_TIMESTAMP.
MSG_FIELDS = ("key", "value", "partition", "offset", "headers", "absent", "timestamp")
MSG_KEY, MSG_VALUE, MSG_PARTITION, MSG_OFFSET, MSG_HEADERS, MSG_ABSENT, MSG_TIMESTAMP = range(7)
MSG_TYPE = Types.TUPLE(
    [
        BYTES,
        BYTES,
        Types.INT(),
        Types.LONG(),
        Types.MAP(Types.STRING(), BYTES),
        Types.INT(),
        Types.LONG(),
    ]
)
ABSENT_KEY, ABSENT_VALUE, ABSENT_HEADERS = 1, 2, 4
NO_TIMESTAMP = -1
# Feature rows: (record key, record value, record timestamp in epoch ms), a Tuple too; no key
# is b"" (feature-row keys are JSON, never empty), no timestamp is NO_TIMESTAMP (the broker
# sets it). The job adds the constant `resolver` header on the JVM.
ROW_FIELDS = ("key", "value", "timestamp")
ROW_KEY, ROW_VALUE, ROW_TIMESTAMP = range(3)
ROW_TYPE = Types.TUPLE([BYTES, BYTES, Types.LONG()])
# Dead letters: record key, record value, headers.
DEAD_TYPE = Types.ROW_NAMED(["k", "v", "headers"], [BYTES, BYTES, Types.MAP(Types.STRING(), BYTES)])
DEAD_LETTERS = OutputTag("dead-letters", DEAD_TYPE)
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
    topic: str = ""  # the source topic (dead-letter provenance)
    # Set when the state key arrives computed on the JVM (see flink_job._keying).
    json_key_path: str | None = None
    # sha256 of the module's source: workers load exactly that code (see load()).
    digest: str | None = None

    @property
    def keyed_in_java(self) -> bool:
        return self.json_key_path is not None

    def load(self) -> Resolver[Any, Any]:
        """The resolver, from the module source the job was built with (by content, never by
        a cached module name: a session cluster's interpreter keeps earlier jobs' modules)."""
        if self.digest is not None:
            module = import_by_content(self.module, self.file, self.digest)
        elif self.file and Path(self.file).is_file():
            module = import_target(self.file)
        else:
            module = importlib.import_module(self.module)
        for r in collect_resolvers(module):
            if r.name == self.name:
                return r
        raise LookupError(f"resolver {self.name!r} not found in module {self.module!r}")

    def core(self) -> ResolverCore:
        return ResolverCore(self.load(), self.max_message_bytes)


def raw_message(msg: tuple[Any, ...], topic: str) -> RawMessage:
    """A message tuple (see MSG_TYPE) of ``topic`` as a RawMessage."""
    key, value, partition, offset, headers, absent, timestamp = msg
    return RawMessage(
        value=None if absent & ABSENT_VALUE else value,
        key=None if absent & ABSENT_KEY else key,
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=None if timestamp == NO_TIMESTAMP else timestamp,
        headers=() if absent & ABSENT_HEADERS else tuple(headers.items()),
    )


def _dead_row(d: DeadLetter) -> Row:
    # Kafka headers are a list; the table connector takes a map (one value per name).
    return Row(d.message.key, d.message.value, dict(d.headers()))


class _Handoff:
    """Decoded messages passed from the key selector to the keyed operator of one resolver.

    In thread mode every operator of a TaskManager runs in one Python interpreter, so the
    keyed operator can reuse the event the key selector already parsed and validated instead
    of parsing it a second time. A miss (process mode, another TaskManager, a restart) simply
    decodes again: decoding is deterministic, so both paths give the same result.
    """

    MAX = 65_536

    def __init__(self) -> None:
        self._items: dict[tuple[str, Any, Any], tuple[Decoded, RawMessage]] = {}
        self._lock = threading.Lock()

    def put(self, key: tuple[str, Any, Any], d: Decoded, msg: RawMessage) -> None:
        with self._lock:
            items = self._items
            if len(items) >= self.MAX:  # entries of records that never arrived (failover)
                for old in list(itertools.islice(items, self.MAX // 4)):
                    del items[old]
            items[key] = (d, msg)

    def take(self, key: tuple[str, Any, Any]) -> tuple[Decoded, RawMessage] | None:
        with self._lock:
            return self._items.pop(key, None)


HANDOFF = _Handoff()


class KeyOf(KeySelector):
    """Computes the state key (decode + re-key mapping, or the Kafka record key)."""

    def __init__(self, ref: ResolverRef) -> None:
        self.ref = ref
        self._core: ResolverCore | None = None
        self._needs_parse = True

    def open(self, runtime_context: RuntimeContext) -> None:
        self._core = self.ref.core()
        self._needs_parse = bool(self._core.resolver.keys)

    def get_key(self, value: tuple[Any, ...]) -> str:
        if not self._needs_parse:
            k = value[MSG_KEY]
            if value[MSG_ABSENT] & ABSENT_KEY:
                return UNKEYABLE
            try:
                return str(k.decode("utf-8"))
            except UnicodeDecodeError:
                return UNKEYABLE
        assert self._core is not None
        msg = raw_message(value, self.ref.topic)
        d = self._core.decode(msg)
        if not isinstance(d, Decoded):
            return UNKEYABLE
        HANDOFF.put((self.ref.name, msg.partition, msg.offset), d, msg)
        return d.key


class _Counters:
    """Job metrics, flushed to Flink at most every 0.5 s (each inc() is a call into Java)."""

    FIELDS = ("eventsIn", "featureRows", "deadLetters", "skipped", "lateArrivals")

    def __init__(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group()
        self._flink = [group.counter(name) for name in self.FIELDS]
        self.counts = [0] * len(self.FIELDS)
        self._next_flush = 0.0

    def maybe_flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_flush:
            self._next_flush = now + 0.5
            counts = self.counts
            for i, (counter, n) in enumerate(zip(self._flink, counts, strict=True)):
                if n:
                    counter.inc(n)
                    # Zeroed in place: Resolve holds this very list while it processes the
                    # element that triggered the flush (a new list lost that element's counts).
                    counts[i] = 0


class Resolve(KeyedProcessFunction):
    """The keyed operator: the key's state holds the encoded state envelope (bytes).

    Decoded state objects are cached per key (bounded), with the bytes last stored: only this
    operator instance writes its keys' state, so a cached object always equals what was last
    stored; the cache starts empty after every (re)start or restore. A failed message evicts
    its key, since the resolver may have half-mutated the object. State whose encoding did
    not change is not written again.
    """

    STATE_CACHE_SIZE = 10_000

    def __init__(self, ref: ResolverRef) -> None:
        self.ref = ref
        self._core: ResolverCore | None = None
        self._state: Any = None
        self._cache: dict[str, tuple[Any, bytes | None]] = {}

    def open(self, runtime_context: RuntimeContext) -> None:
        self._core = self.ref.core()
        if self._core.stateful:
            self._state = StateCell(runtime_context, self.ref.execution_mode)
        self._counters = _Counters(runtime_context)
        self._cache = {}
        self._java_key = self.ref.keyed_in_java

    def close(self) -> None:
        self._counters.maybe_flush(force=True)

    def process_element(self, value: tuple[Any, ...], ctx: KeyedProcessFunction.Context) -> Any:
        core = self._core
        assert core is not None
        counts = self._counters.counts
        counts[0] += 1
        self._counters.maybe_flush()
        handed = (
            None
            if self._java_key
            else HANDOFF.take((self.ref.name, value[MSG_PARTITION], value[MSG_OFFSET]))
        )
        if handed is not None:
            d, msg = handed
        else:
            msg = raw_message(value, self.ref.topic)
            decoded = core.decode(msg)
            if isinstance(decoded, DeadLetter):
                counts[2] += 1
                yield DEAD_LETTERS, _dead_row(decoded)
                return
            if not isinstance(decoded, Decoded):  # parse= skipped it, or it came too late
                counts[4 if decoded is LATE else 3] += 1
                return
            d = decoded
            if self._java_key and d.key != ctx.get_current_key():
                # Cannot happen for the resolvers keyed on the JVM (flink_job._keying); if it
                # ever does, the message is kept, not applied to another key's state.
                counts[2] += 1
                yield DEAD_LETTERS, _dead_row(core.key_mismatch(msg, ctx.get_current_key(), d))
                return
        state = stored = None
        if self._state is not None:
            cached = self._cache.pop(d.key, None)
            if cached is None:
                stored = self._state.get()
                state = core.load_state(stored)
            else:
                state, stored = cached
        out = core.apply(d, state, msg)
        if isinstance(out, DeadLetter):
            counts[2] += 1
            yield DEAD_LETTERS, _dead_row(out)
            return
        assert isinstance(out, Applied)
        if out.encoded is not None:
            if out.encoded != stored:  # writing the same bytes again changes nothing
                self._state.set(out.encoded)
            cache = self._cache
            if len(cache) >= self.STATE_CACHE_SIZE:
                del cache[next(iter(cache))]  # the least recently used key
            cache[d.key] = (out.state, out.encoded)
        for row in out.rows:
            counts[1] += 1
            ts = NO_TIMESTAMP if row.timestamp is None else row.timestamp
            yield row.key or b"", row.value, ts
