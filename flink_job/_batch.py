"""The Python side of the batched keyed operator (``connectors/java``, thread mode).

The JVM operator ``flinkjob.operators.BatchedResolveOperator`` buffers records, reads the state
of each distinct key of the batch, and calls :meth:`BatchStep.process` once per batch with one
byte buffer. Every message then goes through :func:`flink_job._core.step` - the very step
``replay`` runs - with a :class:`_BatchStore` as its state store; the answer is one byte buffer
with the new state of each changed key, the feature rows and the dead letters, in order.

Per batch, not per event: each key's stored state is decoded at most once (not at all when
the object cached from an earlier batch still has exactly the bytes the JVM read) and written
once, with its last good encoding. The state is still encoded after every message: that
encoding is what a failing message falls back to (its key's state stays as before it), and a
state that cannot be encoded must be a dead letter of the very message that made it so.

Wire format (all integers big-endian; ``bytes`` = int32 length + data, length -1 = None):

- request: ``magic, n_keys, n_records``; per key: ``key`` (WTF-8: UTF-8 that keeps lone surrogates),
  ``stored state``; per record: ``key index, absent bits, partition, offset (int64),
  timestamp (int64, -1 none), key length, value length, n_headers`` (int32 unless said),
  the record key's and value's bytes, and per header ``name (WTF-8), value``.
- answer: ``n_states, n_rows, n_dead, n_skipped, n_late``; per state: ``key index,
  payload``; per row: ``record index, key length (-1: none), value length, timestamp
  (int64, -1 none)``, the key's and value's bytes; per dead letter: ``record index, key,
  value, n_headers`` and per header ``name (UTF-8), value``.

Fixed-size fields come first in records and rows: one ``struct`` call reads or writes them.

``magic`` is ``0x464A0000 | WIRE_VERSION`` and ``BatchedResolveOperator`` asks
:meth:`BatchStep.wire_version` when it opens: a jar and a Python package of different
formats refuse to run together, with a clear error, instead of misreading each other. (In
thread mode a TaskManager keeps one interpreter across jobs, so a ``flink_job`` that an
earlier job loaded stays loaded when a job of another version starts there.)
"""

from __future__ import annotations

import gc
import json
import struct
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from flink_job._core import LATE, Applied, DeadLetter, RawMessage, ResolverCore, step
from flink_job._wire import (
    ABSENT_HEADERS,
    ABSENT_KEY,
    ABSENT_VALUE,
    NO_TIMESTAMP,
)

__all__ = ["BatchStep"]

_I32 = struct.Struct(">i")
# The request and answer format; BatchedResolveOperator.WIRE_VERSION must be the same.
WIRE_VERSION = 2
_MAGIC = 0x464A0000 | WIRE_VERSION
_HEAD = struct.Struct(">iii")  # magic, n_keys, n_records
_RECORD = struct.Struct(">iiiqqiii")  # a record's fixed fields (see the module docstring)
_RECORD_SIZE = _RECORD.size
_ROW_HEAD = struct.Struct(">iiiq")  # a row's record index, key and value lengths, timestamp
_ANSWER = struct.Struct(">iiiii")


if TYPE_CHECKING:
    _Message = RawMessage
else:

    class _Message:
        """A batch's record as :func:`flink_job._core.step` reads it: ``RawMessage``'s fields,
        in a plain slots class. A ``RawMessage`` is frozen, so its ``__init__`` sets each
        slot through a descriptor call (~0.6 us); this one stores them directly (~0.2 us), and
        one is built per record. It never leaves the batch: a dead letter is framed into the
        answer at once."""

        __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

        def __init__(
            self,
            value: bytes | None,
            key: bytes | None,
            topic: str,
            partition: int,
            offset: int,
            timestamp: int | None,
            headers: tuple[tuple[str, bytes], ...],
        ) -> None:
            self.value = value
            self.key = key
            self.topic = topic
            self.partition = partition
            self.offset = offset
            self.timestamp = timestamp
            self.headers = headers


class _BatchStore:
    """State objects of one batch's keys, over the bytes the JVM read.

    ``good[key]`` is the key's last successfully stored encoding (first: what the JVM read);
    ``objects[key]`` the state object that encoding describes, decoded on first use. A failed
    message drops the object, so the next message of that key decodes ``good[key]`` again:
    exactly the state before the failed message. :meth:`BatchStep._process` fills both for
    each key as it reads the request (inline: one key per ~1.6 records at 1k keys): ``good``
    with the bytes the JVM read, ``objects`` with the object cached from an earlier batch if
    it has exactly those bytes.
    """

    def __init__(self, core: ResolverCore) -> None:
        self._core = core
        self.good: dict[str, bytes | None] = {}
        self.objects: dict[str, Any] = {}

    def load(self, key: str) -> Any:
        state = self.objects.get(key)
        if state is None:
            state = self._core.load_state(self.good[key])
            self.objects[key] = state
        return state

    def save(self, key: str, state: Any, encoded: bytes) -> None:
        self.objects[key] = state
        self.good[key] = encoded

    def discard(self, key: str) -> None:
        self.objects.pop(key, None)


class BatchStep:
    """One resolver's batches (one instance per operator instance)."""

    CACHE_SIZE = 10_000  # decoded state objects kept between batches (checked by bytes)

    def __init__(
        self, core: ResolverCore, topic: str, handoff: Any = None, scope: str | None = None
    ) -> None:
        self.core = core
        self.topic = topic
        self._scope = scope  # the job's hand-off scope, released by close()
        # Keyed by a Python key selector (flink_job._runtime.KeyOf): the events it decoded,
        # taken instead of decoding again (a miss decodes again; the key is re-checked anyway).
        self._handoff = handoff
        # Least recently used first. An OrderedDict: evicting the first entry of a plain dict
        # (del d[next(iter(d))]) scans the deleted slots before it, O(n) per eviction, which
        # made every event of a many-key stream ~10 us slower.
        self._cache: OrderedDict[str, tuple[Any, bytes | None]] = OrderedDict()

    @classmethod
    def from_spec(cls, spec: bytes) -> BatchStep:
        """From the JSON the job put into the operator (a ResolverRef's fields)."""
        from flink_job._runtime import HANDOFFS, ResolverRef

        ref = ResolverRef(**json.loads(spec))
        core = ref.core()
        if not (ref.keyed_in_java or core.resolver.keys):
            return cls(core, ref.topic)
        # A Python key selector (or the JVM keying's fallback) hands decoded events over.
        return cls(core, ref.topic, HANDOFFS.acquire(ref.scope), ref.scope)

    def close(self) -> None:
        """Release the job's hand-off (called when the operator closes)."""
        if self._scope is not None:
            from flink_job._runtime import HANDOFFS

            HANDOFFS.release(self._scope)
            self._scope = None

    @staticmethod
    def wire_version() -> int:
        """The format this side reads and writes (the JVM operator checks it when it opens)."""
        return WIRE_VERSION

    def process(self, buf: bytes) -> bytes:
        """Run one batch (see the module docstring for the formats).

        Python's cyclic garbage collector is paused for the batch (if it is on) and runs at
        most once after it. With many keys, nearly every message makes a state object that
        outlives it (the batch's store and the cache between batches hold it), so the young
        generation filled 3-4 times per batch, and the survivors it promoted set off full
        collections, each walking the TaskManager interpreter's ~190k objects. At 1M keys
        that was ~5 us per event (README -> Benchmarks, "Ninth round"); at 1k keys nothing
        survives a message and nothing changes. A batch's cyclic garbage (at most
        ``batch_size`` messages' worth) is collected after it. The collector is left off when
        it was off (an application may turn it off), and another batch running at the same
        time (another operator of the interpreter) finds it off and leaves it to this one.
        """
        if not gc.isenabled():
            return self._process(buf)
        gc.disable()
        try:
            return self._process(buf)
        finally:
            gc.enable()

    def _process(self, buf: bytes) -> bytes:
        core = self.core
        topic = self.topic
        if type(buf) is not bytes:  # slices below must be bytes, as the step expects
            buf = bytes(buf)
        magic, n_keys, n_records = _HEAD.unpack_from(buf, 0)
        if magic != _MAGIC:
            raise RuntimeError(_version_mismatch(f"a request starting {magic:#010x}"))
        pos = _HEAD.size
        cache = self._cache
        store = _BatchStore(core)
        good, objects = store.good, store.objects
        keys: list[str] = []
        initial: list[bytes | None] = []
        i32_at = _I32.unpack_from
        # Per key, inline (no helper calls): its name (WTF-8) and the state bytes the JVM read.
        for _ in range(n_keys):
            (n,) = i32_at(buf, pos)
            pos += 4
            key = buf[pos : pos + n].decode("utf-8", "surrogatepass")
            pos += n
            (n,) = i32_at(buf, pos)
            pos += 4
            if n < 0:
                stored = None
            else:
                stored = buf[pos : pos + n]
                pos += n
            keys.append(key)
            initial.append(stored)
            good[key] = stored
            cached = cache.pop(key, None)
            # The cached object is valid only if it has exactly the bytes the JVM just read.
            if cached is not None and cached[1] == stored:
                objects[key] = cached[0]
        rows: list[bytes] = []  # n_rows rows, three parts each
        dead: list[bytes] = []
        skipped = late = n_rows = 0
        i32 = _I32.pack
        handoff, name = self._handoff, core.name
        handed_off = handoff.entries if handoff is not None else {}
        # Per record: the fields are read inline (no helper call per field; this loop is most
        # of the operator's own Python work besides the step itself).
        record_at = _RECORD.unpack_from
        row_head = _ROW_HEAD.pack
        no_headers: tuple[tuple[str, bytes], ...] = ()
        for i in range(n_records):
            k, absent, partition, offset, timestamp, n_key, n_value, n_headers = record_at(buf, pos)
            pos += _RECORD_SIZE
            # The record key and value (the JVM never sends them as None: absent bits say so).
            rkey = buf[pos : pos + n_key]
            pos += n_key
            value = buf[pos : pos + n_value]
            pos += n_value
            if n_headers:
                header_list: list[tuple[str, bytes]] = []
                for _ in range(n_headers):
                    header_name, pos = _str(buf, pos)
                    hv, pos = _slice(buf, pos)
                    header_list.append((header_name, hv if hv is not None else b""))
                headers = no_headers if absent & ABSENT_HEADERS else tuple(header_list)
            else:
                headers = no_headers
            msg = _Message(
                None if absent & ABSENT_VALUE else value,
                None if absent & ABSENT_KEY else rkey,
                topic,
                partition,
                offset,
                None if timestamp == NO_TIMESTAMP else timestamp,
                headers,
            )
            handed = (
                handoff.take_at(name, partition, offset, msg.key, msg.value)
                if handed_off  # empty (no call) unless a Python key selector decoded messages
                else None
            )
            out = step(core, msg, store, keys[k], handed and handed[0])
            if type(out) is Applied:
                for row in out.rows:
                    key_bytes, value_bytes, ts = row.key, row.value, row.timestamp
                    rows += (
                        row_head(
                            i,
                            -1 if key_bytes is None else len(key_bytes),
                            len(value_bytes),
                            NO_TIMESTAMP if ts is None else ts,
                        ),
                        key_bytes or b"",
                        value_bytes,
                    )
                    n_rows += 1
            elif isinstance(out, DeadLetter):
                dead.append(i32(i) + _dead_letter(out))
            elif out is LATE:  # older than the source's late_arrival_deadline
                late += 1
            else:  # skipped on purpose (parse= returned None)
                skipped += 1
        states: list[bytes] = []  # n_states states, three parts each (joined once, below)
        n_states = 0
        cache_size = self.CACHE_SIZE
        for k, key in enumerate(keys):
            encoded = good[key]
            if encoded is not None and encoded != initial[k]:
                states += (i32(k), i32(len(encoded)), encoded)
                n_states += 1
            obj = objects.get(key)
            if obj is not None:
                if len(cache) >= cache_size:
                    cache.popitem(last=False)  # the least recently used key
                cache[key] = (obj, encoded)
        return b"".join(
            [_ANSWER.pack(n_states, n_rows, len(dead), skipped, late), *states, *rows, *dead]
        )


def _version_mismatch(found: str) -> str:
    return (
        f"flink-job's batched operator sent {found}, but this flink_job package reads wire "
        f"format {WIRE_VERSION} ({_MAGIC:#010x}): the operators jar and the Python package come "
        "from different flink-job versions. In thread mode a TaskManager keeps one Python "
        "interpreter across jobs, so the flink_job an earlier job loaded stays loaded; fix: "
        "restart the TaskManagers after changing the flink-job version, or run the job in "
        "process mode."
    )


def _slice(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    """A length-framed field of ``buf`` at ``pos`` (length -1: None) and the position after."""
    (n,) = _I32.unpack_from(buf, pos)
    pos += 4
    if n < 0:
        return None, pos
    return buf[pos : pos + n], pos + n


def _str(buf: bytes, pos: int) -> tuple[str, int]:
    (n,) = _I32.unpack_from(buf, pos)
    pos += 4
    return buf[pos : pos + n].decode("utf-8", "surrogatepass"), pos + n


def _frame(b: bytes | None) -> bytes:
    if b is None:
        return b"\xff\xff\xff\xff"
    return _I32.pack(len(b)) + b


def _dead_letter(d: DeadLetter) -> bytes:
    # Bounded like the per-record operator's (flink_job._wire.dead_row): a dead letter the
    # producer or broker refuses would fail the task and be refused again after every restart.
    key, value, headers = d.record()
    parts = [_frame(key), _frame(value), _I32.pack(len(headers))]
    for name, value in headers:
        parts.append(_frame(name.encode("utf-8", "surrogatepass")))
        parts.append(_frame(value))
    return b"".join(parts)
