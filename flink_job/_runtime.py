"""Flink operator functions: the PyFlink side of the job. They hold only a reference to the
resolver (module + name) and load it when the operator opens, then delegate every message to
:class:`flink_job._core.ResolverCore` - the very code ``replay`` runs.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

from pyflink.common import Row
from pyflink.datastream import (
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    RuntimeContext,
)
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from flink_job._constants import COUNTERS, Counter
from flink_job._core import (
    LATE,
    Applied,
    DeadLetter,
    Decoded,
    RawMessage,
    ResolverCore,
    state_key,
    step,
)
from flink_job._wire import (
    ABSENT_KEY,
    ABSENT_VALUE,
    BYTES,
    DEAD_LETTERS,
    MSG_ABSENT,
    MSG_KEY,
    MSG_OFFSET,
    MSG_PARTITION,
    MSG_VALUE,
    UNKEYABLE,
    dead_row,
    raw_message,
    record_key,
    row_tuple,
)
from flink_job.loader import collect_resolvers, import_by_content, import_target
from flink_job.streams import Resolver

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
    # Per prefix of that path: the state key of a message where it is absent (its default).
    json_key_defaults: tuple[tuple[str, str | None], ...] = ()
    # Unique per built job and resolver: scopes what its operators share in one interpreter
    # (the hand-off), which every job on the TaskManager shares in thread mode.
    scope: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
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


class _Handoff:
    """Decoded messages passed from the key selector to the keyed operator of one job.

    In thread mode every operator of a TaskManager runs in one Python interpreter, so the
    keyed operator can reuse the event the key selector already parsed and validated instead
    of parsing it a second time. A miss (another TaskManager, a restart, an evicted entry)
    simply decodes again, and checks the key the message was routed by.

    One hand-off per job (``ResolverRef.scope``): the interpreter is shared by every job of
    the TaskManager. It is bounded by bytes (entries of records that go to another
    TaskManager are never taken), and ``take`` returns an entry only if it is the very
    message given: same partition, offset, record key and value bytes.
    """

    MAX_BYTES = 32 * 1024 * 1024
    MAX_ENTRIES = 65_536
    # What an entry holds besides the raw value: the parsed event (several times the JSON),
    # the key and the dict slot; an estimate, only used to bound the total.
    ENTRY_OVERHEAD, VALUE_FACTOR = 512, 4

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: dict[tuple[str, int, int], tuple[Decoded, RawMessage, int]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    @property
    def entries(self) -> dict[tuple[str, int, int], Any]:
        """The entries (the same dict for the hand-off's life): a batch tests it once per
        record instead of calling :meth:`take_at` when it is empty (read without the lock,
        as ``take_at`` does)."""
        return self._items

    def put(self, resolver: str, d: Decoded, msg: RawMessage) -> None:
        size = self.ENTRY_OVERHEAD + self.VALUE_FACTOR * len(msg.value or b"")
        size += len(msg.key or b"")
        if size > self.max_bytes:
            return
        with self._lock:
            items = self._items
            key = (resolver, msg.partition, msg.offset)
            old = items.pop(key, None)
            if old is not None:
                *_, old_size = old
                self._bytes -= old_size
            while items and (self._bytes + size > self.max_bytes or len(items) >= self.MAX_ENTRIES):
                *_, oldest_size = items.pop(next(iter(items)))  # the oldest entry
                self._bytes -= oldest_size
            items[key] = (d, msg, size)
            self._bytes += size

    def take(self, resolver: str, value: tuple[Any, ...]) -> tuple[Decoded, RawMessage] | None:
        """The entry for message tuple ``value`` (see flink_job._wire) if it is that message."""
        if not self._items:  # nothing handed off (see take_at); every message keyed on the JVM
            return None
        absent = value[MSG_ABSENT]
        return self.take_at(
            resolver,
            value[MSG_PARTITION],
            value[MSG_OFFSET],
            None if absent & ABSENT_KEY else value[MSG_KEY],
            None if absent & ABSENT_VALUE else value[MSG_VALUE],
        )

    def take_at(
        self, resolver: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> tuple[Decoded, RawMessage] | None:
        """The entry for the record at ``partition``/``offset`` if it has exactly this record
        ``key`` and ``value`` (None: absent)."""
        # Without the lock: a message's entry is put before the message leaves the key
        # selector, so it is there before the keyed operator takes it.
        if not self._items:
            return None
        with self._lock:
            entry = self._items.pop((resolver, partition, offset), None)
            if entry is None:
                return None
            d, msg, size = entry
            self._bytes -= size
        if msg.value != value or msg.key != key:
            return None  # another message at this position (another job's, or rewritten)
        return d, msg


class _Handoffs:
    """The hand-offs of the jobs running in this interpreter, by job scope (reference
    counted: the last operator of a job to close drops its hand-off)."""

    def __init__(self) -> None:
        self._by_scope: dict[str, tuple[_Handoff, int]] = {}
        self._lock = threading.Lock()

    def acquire(self, scope: str) -> _Handoff:
        with self._lock:
            h, n = self._by_scope.get(scope) or (_Handoff(), 0)
            self._by_scope[scope] = (h, n + 1)
            return h

    def release(self, scope: str) -> None:
        with self._lock:
            entry = self._by_scope.get(scope)
            if entry is None:
                return
            h, n = entry
            if n <= 1:
                del self._by_scope[scope]
            else:
                self._by_scope[scope] = (h, n - 1)

    def scopes(self) -> list[str]:
        with self._lock:
            return list(self._by_scope)


HANDOFFS = _Handoffs()


def python_key(
    core: ResolverCore, ref: ResolverRef, value: tuple[Any, ...], handoff: _Handoff | None
) -> str:
    """The state key of message tuple ``value`` computed in Python (decode + re-key mapping),
    or UNKEYABLE; a decoded message is handed off to the keyed operator."""
    msg = raw_message(value, ref.topic)
    d = core.decode(msg)
    if not isinstance(d, Decoded):
        return UNKEYABLE
    if handoff is not None:
        handoff.put(ref.name, d, msg)
    return d.key


class _PythonKeyed:
    """Shared by the key selector and the JVM path's fallback keying: a core and, in thread
    mode, the job's hand-off."""

    ref: ResolverRef
    _core: ResolverCore | None = None
    _handoff: _Handoff | None = None

    def _open(self) -> None:
        self._core = self.ref.core()
        if self.ref.execution_mode == "thread":  # process mode: operators never share one
            self._handoff = HANDOFFS.acquire(self.ref.scope)

    def _close(self) -> None:
        if self._handoff is not None:
            HANDOFFS.release(self.ref.scope)
            self._handoff = None


class KeyOf(KeySelector, _PythonKeyed):
    """Computes the state key (decode + re-key mapping, or the Kafka record key)."""

    def __init__(self, ref: ResolverRef) -> None:
        self.ref = ref
        self._core = None
        self._handoff = None
        self._needs_parse = True

    def open(self, runtime_context: RuntimeContext) -> None:
        self._open()
        assert self._core is not None
        self._needs_parse = bool(self._core.resolver.keys)

    def close(self) -> None:
        self._close()

    def get_key(self, value: tuple[Any, ...]) -> str:
        if not self._needs_parse:
            k = record_key(value)
            if k is None:
                return UNKEYABLE
            try:
                return state_key(k.decode("utf-8"))
            except UnicodeDecodeError:
                return UNKEYABLE
        assert self._core is not None
        return python_key(self._core, self.ref, value, self._handoff)


class FallbackKey(MapFunction, _PythonKeyed):
    """JVM keying's fallback: a message whose key the JVM function could not give with
    certainty (see flink_job.job._keyed_on_the_jvm) is keyed here, in Python, exactly as the
    Python key selector would: ``Row(state key, message)``."""

    def __init__(self, ref: ResolverRef) -> None:
        self.ref = ref
        self._core = None
        self._handoff = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._open()

    def close(self) -> None:
        self._close()

    def map(self, value: tuple[Any, ...]) -> Row:
        assert self._core is not None
        return Row(python_key(self._core, self.ref, value, self._handoff), value)


# Where each counter is in _Counters.counts.
_EVENTS_IN, _FEATURE_ROWS, _DEAD_LETTERS, _SKIPPED, _LATE_ARRIVALS = (
    COUNTERS.index(name)
    for name in (
        Counter.EVENTS_IN,
        Counter.FEATURE_ROWS,
        Counter.DEAD_LETTERS,
        Counter.SKIPPED,
        Counter.LATE_ARRIVALS,
    )
)


class _Counters:
    """Job metrics, flushed to Flink at most every 0.5 s (each inc() is a call into Java)."""

    FIELDS = COUNTERS

    def __init__(self, runtime_context: RuntimeContext) -> None:
        group = runtime_context.get_metrics_group()
        self._flink = [group.counter(name) for name in self.FIELDS]
        self.counts = [0] * len(self.FIELDS)
        self.next_flush = 0.0  # time.monotonic() from which on the next flush is due

    def maybe_flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self.next_flush:
            self.next_flush = now + 0.5
            counts = self.counts
            for i, (counter, n) in enumerate(zip(self._flink, counts, strict=True)):
                if n:
                    counter.inc(n)
                    # Zeroed in place: Resolve holds this very list while it processes the
                    # element that triggered the flush (a new list lost that element's counts).
                    counts[i] = 0


class _FlinkStore:
    """The per-record operator's state store (:class:`flink_job._core.StateStore`): the current
    key's Flink state (a :class:`StateCell`), with decoded state objects cached per key.

    Only this operator instance writes its keys' state, so a cached object always equals what
    was last stored; the cache starts empty after every (re)start or restore. ``load`` takes a
    key's object out of the cache (a failed message so leaves it out: the resolver may have
    half-mutated it); ``save`` puts it back, and writes the state only when its encoding
    changed (writing the same bytes again changes nothing).
    """

    SIZE = 10_000

    def __init__(self, core: ResolverCore, cell: StateCell) -> None:
        self._core = core
        self._cell = cell
        # Least recently used first; an OrderedDict evicts in O(1) (see flink_job._batch).
        self._cache: OrderedDict[str, tuple[Any, bytes | None]] = OrderedDict()
        self._stored: bytes | None = None  # what the key being processed had stored

    def load(self, key: str) -> Any:
        cached = self._cache.pop(key, None)
        if cached is None:
            self._stored = stored = self._cell.get()
            return self._core.load_state(stored)
        state, self._stored = cached
        return state

    def save(self, key: str, state: Any, encoded: bytes) -> None:
        if encoded != self._stored:
            self._cell.set(encoded)
        cache = self._cache
        if len(cache) >= self.SIZE:
            cache.popitem(last=False)  # the least recently used key
        cache[key] = (state, encoded)

    def discard(self, key: str) -> None:
        pass  # load already took the key's object out of the cache


class Resolve(KeyedProcessFunction):
    """The keyed operator: every message goes through :func:`flink_job._core.step` - the very
    step ``replay`` runs - with the key's Flink state as its store (:class:`_FlinkStore`)."""

    def __init__(self, ref: ResolverRef) -> None:
        self.ref = ref
        self._core: ResolverCore | None = None
        self._store: _FlinkStore | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._core = self.ref.core()
        self._store = None
        if self._core.stateful:
            self._store = _FlinkStore(
                self._core, StateCell(runtime_context, self.ref.execution_mode)
            )
        self._counters = _Counters(runtime_context)
        # Messages keyed in Python (the key selector, or JVM keying's fallback) may have been
        # handed off; those keyed by the Kafka record key never are.
        self._handoff = None
        if self.ref.execution_mode == "thread" and (
            self.ref.keyed_in_java or self._core.resolver.keys
        ):
            self._handoff = HANDOFFS.acquire(self.ref.scope)

    def close(self) -> None:
        self._counters.maybe_flush(force=True)
        if self._handoff is not None:
            HANDOFFS.release(self.ref.scope)
            self._handoff = None

    def process_element(self, value: tuple[Any, ...], ctx: KeyedProcessFunction.Context) -> Any:
        core = self._core
        assert core is not None
        counters = self._counters
        counts = counters.counts
        counts[_EVENTS_IN] += 1
        if time.monotonic() >= counters.next_flush:  # checked here: a call per event costs
            counters.maybe_flush()
        handoff = self._handoff
        handed = None if handoff is None else handoff.take(self.ref.name, value)
        if handed is not None:
            # The very decoded message the key was computed from: routed by its key.
            d, msg = handed
            out = step(core, msg, self._store, None, d)
        else:
            # Decode again and check the key it was routed by, on every path: a message is
            # never applied to another key's state.
            msg = raw_message(value, self.ref.topic)
            out = step(core, msg, self._store, ctx.get_current_key())
        if isinstance(out, Applied):
            for row in out.rows:
                counts[_FEATURE_ROWS] += 1
                yield row_tuple(row)
        elif isinstance(out, DeadLetter):
            counts[_DEAD_LETTERS] += 1
            yield DEAD_LETTERS, dead_row(out)
        else:  # parse= skipped it, or it came too late
            counts[_LATE_ARRIVALS if out is LATE else _SKIPPED] += 1
