"""The resolver core: what happens to one Kafka message, whatever engine runs it.

Both the in-process runner (:func:`flink_job.testing.replay`) and the Flink operators call
:class:`ResolverCore`, so keying, initial state, state saving, output rows and dead letters
are the same code everywhere.

Per message: ``decode`` (size, parse, validate, key) -> ``apply`` (load or create the key's
state, run the resolver, encode the new state, build the feature row). A failure at any step
becomes a :class:`DeadLetter`; the key's stored state is replaced only after the resolver
returned and the new state encoded.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
import traceback
from typing import Any, Protocol

import pydantic
import pydantic_core

from flink_job._constants import MAX_MESSAGE_BYTES
from flink_job.features import feature_set
from flink_job.streams import Resolver

# A feature row stamped later than this ahead of the broker's clock is refused by it (Kafka's
# log.message.timestamp.after.max.ms, 1 h by default), which would fail the sink and restart
# the job: such a message is a dead letter instead, as is one stamped before 1970.
MAX_FUTURE_MS = 3_600_000
_MAX_ERROR_CHARS = 2000
# The largest dead-letter record written (key + value + headers): below the broker's default
# message.max.bytes (1,048,588) with room for the batch overhead, so every dead letter fits a
# topic on defaults. A larger one keeps its headers and key, and its value is cut (header
# DLQ_VALUE_TRUNCATED holds the original size; the original is at the dlq.source.* position).
DEAD_LETTER_MAX_BYTES = 1_000_000

HEADER_RESOLVER = "resolver"
DLQ_ERROR_CLASS = "dlq.error.class"
DLQ_ERROR_MESSAGE = "dlq.error.message"
DLQ_RESOLVER = "dlq.resolver"
DLQ_SOURCE_TOPIC = "dlq.source.topic"
DLQ_SOURCE_PARTITION = "dlq.source.partition"
DLQ_SOURCE_OFFSET = "dlq.source.offset"
DLQ_VALUE_TRUNCATED = "dlq.value.truncated"


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class RawMessage:
    """A Kafka record as read: value and key bytes plus where it came from."""

    value: bytes | None
    key: bytes | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1
    timestamp: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    # Written out (the fields' order and defaults): sets each slot through its descriptor, as
    # fast as a plain class; the generated frozen __init__ goes through object.__setattr__
    # per field (0.63 vs 1.09 us; one is built per message).
    def __init__(
        self,
        value: bytes | None,
        key: bytes | None = None,
        topic: str = "",
        partition: int = -1,
        offset: int = -1,
        timestamp: int | None = None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> None:
        _rm_value(self, value)
        _rm_key(self, key)
        _rm_topic(self, topic)
        _rm_partition(self, partition)
        _rm_offset(self, offset)
        _rm_timestamp(self, timestamp)
        _rm_headers(self, headers)


def _slot_setters(cls: type) -> list[Any]:
    """The ``__set__`` of each field's slot descriptor of a slots dataclass, in field order."""
    return [cls.__dict__[f.name].__set__ for f in dataclasses.fields(cls)]


(_rm_value, _rm_key, _rm_topic, _rm_partition, _rm_offset, _rm_timestamp, _rm_headers) = (
    _slot_setters(RawMessage)
)


@dataclasses.dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that produced no row, with why. Goes to the dead-letter topic as is."""

    resolver: str
    error_class: str
    error: str
    message: RawMessage

    def headers(self) -> list[tuple[str, bytes]]:
        """The original headers plus ``dlq.*`` headers naming the error and the provenance."""
        m = self.message
        return [
            *m.headers,
            (DLQ_ERROR_CLASS, self.error_class.encode()),
            (DLQ_ERROR_MESSAGE, self.error[:_MAX_ERROR_CHARS].encode("utf-8", "replace")),
            (DLQ_RESOLVER, self.resolver.encode()),
            (DLQ_SOURCE_TOPIC, m.topic.encode()),
            (DLQ_SOURCE_PARTITION, str(m.partition).encode()),
            (DLQ_SOURCE_OFFSET, str(m.offset).encode()),
        ]

    def record(
        self, limit: int = DEAD_LETTER_MAX_BYTES
    ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
        """What the dead-letter topic gets: (key, value, headers), at most ``limit`` bytes.

        Over the limit, the value is cut to what fits and ``dlq.value.truncated`` gives its
        original size; if the key and headers alone are over it, the original headers are
        dropped too and the key cut (the ``dlq.source.*`` headers say where the original is).
        """
        m = self.message
        headers = self.headers()
        key, value = m.key, m.value
        size = _record_size(key, value, headers)
        if size <= limit:
            return key, value, headers
        assert value is not None  # an empty value is never over the limit alone
        marker = (DLQ_VALUE_TRUNCATED, str(len(value)).encode())
        headers = [*headers, marker]
        room = limit - _record_size(key, b"", headers)
        if room < 0:  # huge key or headers: keep only ours
            headers = [*headers[len(m.headers) :]]
            room = limit - _record_size(b"", b"", headers)
            key = (key or b"")[: max(room // 2, 0)] if key is not None else None
            room = limit - _record_size(key, b"", headers)
        return key, value[: max(room, 0)], headers


@dataclasses.dataclass(frozen=True, slots=True, init=False)
class FeatureRow:
    """One output record: key = JSON of the primary-key value, value = JSON feature object."""

    resolver: str
    key: bytes | None
    value: bytes
    timestamp: int | None = None  # the Kafka record timestamp (epoch ms); None: the broker's

    def __init__(  # as RawMessage's: one per feature row
        self, resolver: str, key: bytes | None, value: bytes, timestamp: int | None = None
    ) -> None:
        _fr_resolver(self, resolver)
        _fr_key(self, key)
        _fr_value(self, value)
        _fr_timestamp(self, timestamp)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.value)
        return result


_fr_resolver, _fr_key, _fr_value, _fr_timestamp = _slot_setters(FeatureRow)


@dataclasses.dataclass(slots=True)
class Decoded:
    """A message that parsed: its state key, the event and the key feature values.

    Internal, and not frozen on purpose: a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__``, ~0.4 us per message here. Nothing changes one after it
    is made."""

    key: str
    event: Any
    key_values: tuple[Any, ...]


@dataclasses.dataclass(slots=True)
class Applied:
    """The result of running the resolver on one decoded message."""

    rows: tuple[FeatureRow, ...]  # in the order the resolver returned them
    state: Any  # the state object after the resolver (None for stateless resolvers)
    encoded: bytes | None  # what to store for the key (None: nothing to store)

    @property
    def row(self) -> FeatureRow | None:
        """The first (usually the only) feature row, or None."""
        return self.rows[0] if self.rows else None


class Skip:
    """A message skipped on purpose (not a dead letter): ``parse=`` returned ``None``
    (:data:`SKIP`), or it arrived later than the source's ``late_arrival_deadline``
    (:data:`LATE`). Each is counted."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Skip({self.reason!r})"


SKIP = Skip("parse")
LATE = Skip("late")

_to_json = pydantic_core.to_json

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MS = datetime.timedelta(milliseconds=1)


def epoch_ms(value: datetime.datetime) -> int:
    """Epoch milliseconds of ``value``; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return (value - _EPOCH) // _MS


# A state key reaches the Python operators through pemja in thread mode, which decodes Java
# strings as UTF-16 *with BOM detection*: a leading U+FEFF is dropped, a leading U+FFFE
# byte-swaps the rest (and can make it invalid, which crashes the TaskManager). Keys starting
# with either get an ESCAPE prefix (and so do keys starting with ESCAPE itself: one-to-one).
ESCAPE = "\x01"
_ESCAPED_STARTS = ("\ufeff", "\ufffe", ESCAPE)


def state_key(s: str) -> str:
    """The state key for the string ``s`` (itself, unless it starts with U+FEFF, U+FFFE or
    ESCAPE: then ESCAPE + itself)."""
    return ESCAPE + s if s.startswith(_ESCAPED_STARTS) else s


def canonical_key(values: tuple[Any, ...]) -> str:
    """The state key for key feature values: typed, canonical, never pickled.

    One string value is itself; any other single value is its JSON; several values are a JSON
    array (then :func:`state_key`). Within one resolver the key fields have fixed types, so
    the mapping is one-to-one.
    """
    if len(values) == 1:
        v = values[0]
        if type(v) is str:
            return state_key(v)
        return pydantic_core.to_json(v).decode()
    return pydantic_core.to_json(list(values)).decode()


class ResolverCore:
    """Engine-agnostic processing of one resolver's messages (see the module docstring)."""

    def __init__(self, resolver: Resolver[Any, Any], max_message_bytes: int | None = None) -> None:
        self.resolver = resolver
        self.name = resolver.name
        self.max_message_bytes = (
            max_message_bytes or resolver.source.max_message_bytes or MAX_MESSAGE_BYTES
        )
        self._validate = _validator(resolver.parse_input or resolver.message_type)
        self._parse = resolver.parse
        self._key_paths = tuple(k.path for k in resolver.keys)
        self._key_fqns = tuple(k.feature.fqn for k in resolver.keys)
        self._single_key_fqn = self._key_fqns[0] if len(self._key_fqns) == 1 else None
        # The common case, read without the general loop: one key, a top-level attribute.
        self._single_key = (
            self._key_paths[0][0] if [len(p) for p in self._key_paths] == [1] else None
        )
        self._state = resolver.state
        self._codec = resolver.state.codec if resolver.state else None
        self._encode = self._codec.encode if self._codec is not None else None
        self._output = resolver.output
        self._primary = resolver.output.primary.fqn if resolver.output.primary else None
        self._allowed_names = {(f.owner, f.name) for f in resolver.output.allowed}
        self._shapes: dict[type, dict[str, str]] = {}
        self._call = resolver.call
        self._timestamp = resolver.timestamp
        self._deadline_ms = resolver.source.late_arrival_deadline_ms
        # A plain attribute, not a property: step() reads it for every message.
        self.stateful = resolver.state is not None

    # -- decode -----------------------------------------------------------------------------
    def decode(self, msg: RawMessage) -> Decoded | DeadLetter | Skip:
        """Parse and key one message. Never raises."""
        value = msg.value
        if not value:
            return self._dead(msg, "EmptyMessage", "message value is empty or null")
        if len(value) > self.max_message_bytes:
            return self._dead(
                msg,
                "MessageTooLarge",
                f"message is {len(value)} bytes, over the limit of {self.max_message_bytes} "
                "(raise max_message_bytes on the KafkaSource to accept it)",
            )
        try:
            event = self._validate(value)
        except (pydantic.ValidationError, ValueError) as e:
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as ue:
                return self._dead(msg, "NotUtf8", f"message is not UTF-8: {ue}")
            kind = "MalformedJson" if _is_json_syntax_error(e) else "SchemaViolation"
            return self._dead(msg, kind, _describe(e))
        if self._parse is not None:
            try:
                event = self._parse(event)
            except Exception as e:
                return self._dead(msg, "ParseError", f"parse= raised {_exc(e)}")
            if event is None:
                return SKIP
            if not isinstance(event, self.resolver.message_type):
                return self._dead(
                    msg,
                    "ParseError",
                    f"parse= returned {type(event).__qualname__}, expected "
                    f"{self.resolver.message_type.__qualname__} or None",
                )
        if self._key_paths:
            single = getattr(event, self._single_key, None) if self._single_key else None
            if type(single) is str:  # canonical_key of one str, inline
                key_values: tuple[Any, ...] = (single,)
                key = ESCAPE + single if single.startswith(_ESCAPED_STARTS) else single
            else:
                values = []
                for path, dotted in zip(self._key_paths, self.resolver.keys, strict=True):
                    v: Any = event
                    for part in path:
                        v = getattr(v, part, None)
                        if v is None:
                            break
                    if v is None:
                        return self._dead(
                            msg,
                            "MissingKey",
                            f"key attribute {dotted.dotted!r} is missing or null",
                        )
                    values.append(v)
                key_values = tuple(values)
                key = canonical_key(key_values)
            if not key.isascii() and not _is_unicode(key):
                return self._dead(
                    msg,
                    "MissingKey",
                    f"state key {key!r} is not valid Unicode (a lone surrogate); it cannot be "
                    "a Flink key",
                )
            if self._deadline_ms is not None and self._late(event, msg):
                return LATE
            return Decoded(key, event, key_values)
        if self._deadline_ms is not None and self._late(event, msg):
            return LATE
        if msg.key is None:
            return self._dead(
                msg,
                "MissingKey",
                "record has no Kafka key and the resolver has no keys= to re-key by",
            )
        try:
            key = msg.key.decode("utf-8")
        except UnicodeDecodeError as e:
            return self._dead(msg, "MissingKey", f"Kafka record key is not UTF-8: {e}")
        return Decoded(state_key(key), event, ())

    def event_time_ms(self, event: Any, msg: RawMessage) -> int | None:
        """The message's event time: its ``timestamp=`` field, else the Kafka record's."""
        if self._timestamp is not None:
            value = getattr(event, self._timestamp, None)
            if isinstance(value, datetime.datetime):
                return epoch_ms(value)
        return msg.timestamp

    def _bad_event_time(self, event: Any) -> str | None:
        """Why the ``timestamp=`` field cannot stamp a Kafka record, or None if it can."""
        value = getattr(event, self._timestamp or "", None)
        if not isinstance(value, datetime.datetime):
            return None  # no event time: the row takes the source record's timestamp
        ts = epoch_ms(value)
        if ts < 0:
            return f"timestamp field {self._timestamp!r} is {value.isoformat()}, before 1970"
        if ts > time.time() * 1000 + MAX_FUTURE_MS:
            return (
                f"timestamp field {self._timestamp!r} is {value.isoformat()}, more than "
                f"{MAX_FUTURE_MS // 60_000} min in the future; Kafka refuses records stamped so "
                "far ahead (log.message.timestamp.after.max.ms)"
            )
        return None

    def _late(self, event: Any, msg: RawMessage) -> bool:
        """Older than the source's ``late_arrival_deadline`` (by the event time) at arrival."""
        ts = self.event_time_ms(event, msg)
        assert self._deadline_ms is not None
        return ts is not None and time.time() * 1000 - ts > self._deadline_ms

    # -- apply ------------------------------------------------------------------------------
    def new_state(self) -> Any:
        """A fresh initial state (only for stateful resolvers)."""
        assert self._state is not None
        return self._state.initial()

    def load_state(self, stored: bytes | None) -> Any:
        """The key's state from its stored bytes, or a fresh initial state."""
        if stored is None:
            return self.new_state()
        assert self._codec is not None
        return self._codec.decode(stored)

    def apply(self, d: Decoded, state: Any, msg: RawMessage) -> Applied | DeadLetter:
        """Run the resolver on a decoded message with the key's current ``state`` object.

        On success the returned ``encoded`` bytes are what the key's state must become. On a
        dead letter the caller keeps the old stored state (``state`` may have been mutated).
        """
        if self._timestamp is not None:
            bad = self._bad_event_time(d.event)
            if bad is not None:
                return self._dead(msg, "TimestampOutOfRange", bad)
        try:
            result = self._call(d.event, state)
        except Exception as e:
            return self._dead(msg, "ResolverError", f"resolver raised {_exc(e)}")
        try:
            if result is None:
                rows: tuple[FeatureRow, ...] = ()
            else:
                ts = msg.timestamp if self._timestamp is None else self.event_time_ms(d.event, msg)
                if isinstance(result, (list, tuple)):  # a tuple: no union object built per call
                    rows = tuple(self._row(r, d, ts) for r in result)
                else:
                    rows = (self._row(result, d, ts),)
            encoded = self._encode(state) if self._encode is not None else None
        except _OutputError as e:
            return self._dead(msg, "OutputError", str(e))
        except Exception as e:
            return self._dead(msg, "StateEncodeError", f"state cannot be stored: {_exc(e)}")
        return Applied(rows, state, encoded)

    def process(self, msg: RawMessage, stored: bytes | None) -> Applied | DeadLetter | Skip:
        """:func:`step` for one message whose key has the ``stored`` bytes (None: no state
        yet); the new state is in the returned ``Applied.encoded``, nothing is kept."""
        return step(self, msg, _Stored(self, stored))

    def _row(self, result: Any, d: Decoded, timestamp: int | None) -> FeatureRow:
        # Only @features classes get a shape (keyed by the class itself: no lookup per row):
        # the fqn of each feature of the class this resolver may return.
        fqns = self._shapes.get(type(result))
        if fqns is None:
            fs = feature_set(type(result))
            if fs is None:
                raise _OutputError(
                    f"resolver {self.name!r} returned {type(result).__qualname__}, not "
                    f"features; it may return: {self._output.describe()} (one row, or a list "
                    "of rows)"
                )
            fqns = self._shapes[type(result)] = self._shape(fs)
        try:  # a feature outside the declared output has no fqn here
            row: dict[str, Any] = {fqns[n]: v for n, v in result.__dict__.items()}
        except KeyError:
            raise self._outside(result, fqns) from None
        single = self._single_key_fqn
        if single is not None:  # one key feature: no loop (~0.4 us per row)
            if single not in row:
                row[single] = d.key_values[0]
        else:
            for fqn, v in zip(self._key_fqns, d.key_values, strict=True):
                if fqn not in row:
                    row[fqn] = v
        try:
            primary = self._primary
            key = _to_json(row[primary]) if primary in row else None
            value = _to_json(row)
        except pydantic_core.PydanticSerializationError as e:
            raise _OutputError(
                f"resolver {self.name!r} returned feature values that cannot be written as "
                f"JSON: {e}; fix: return JSON-serializable values (str, numbers, bool, lists, "
                "dicts, datetime, Decimal, UUID, enums, models)."
            ) from None
        return FeatureRow(self.name, key, value, timestamp)

    def _shape(self, fs: Any) -> dict[str, str]:
        """For an output class: the fqn of each feature this resolver may return, by name."""
        return {n: f"{fs.namespace}.{n}" for (cls, n) in self._allowed_names if cls is fs.cls}

    def _outside(self, result: Any, fqns: dict[str, str]) -> _OutputError:
        fs = feature_set(type(result))
        assert fs is not None  # it has a shape
        outside = [n for n in result.__dict__ if n not in fqns]
        return _OutputError(
            f"resolver {self.name!r} returned features outside its declared output: "
            f"{', '.join(f'{fs.namespace}.{n}' for n in outside)}; it may return: "
            f"{self._output.describe()}"
        )

    def decode_routed(self, msg: RawMessage, routed: str) -> Decoded | DeadLetter | Skip:
        """``decode`` for a message the engine routed to state key ``routed``: a message whose
        validated key is another one (a ``parse=`` that is not deterministic, a savepoint
        restored under another topic) is a ``KeyMismatch`` dead letter, never applied to
        ``routed``'s state. A message that cannot be decoded gets its own dead letter."""
        d = self.decode(msg)
        if isinstance(d, Decoded) and d.key != routed:
            return self.key_mismatch(msg, routed, d)
        return d

    def key_mismatch(self, msg: RawMessage, routed: Any, d: Decoded) -> DeadLetter:
        """The engine routed ``msg`` to state key ``routed`` but its validated key differs."""
        return self._dead(
            msg,
            "KeyMismatch",
            f"the message was routed to state key {routed!r} but its validated key is "
            f"{d.key!r}; it was not applied to either key's state. Causes: a parse= that does "
            "not give the same key for the same bytes every time, or a savepoint restored "
            "under a different source; fix: make parse= deterministic.",
        )

    def _dead(self, msg: RawMessage, kind: str, error: str) -> DeadLetter:
        return DeadLetter(self.name, kind, error, msg)


class _OutputError(Exception):
    pass


def _record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """A Kafka record's size as a producer counts it, plus a generous per-record overhead."""
    size = 64 + len(key or b"") + len(value or b"")
    for name, v in headers:
        size += 8 + len(name.encode("utf-8", "surrogatepass")) + len(v)
    return size


def _is_unicode(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _validator(tp: type) -> Any:
    if tp is bytes:
        return lambda b: bytes(b)
    if tp is str:
        return lambda b: b.decode("utf-8")
    # The schema validator's own validate_json: what model_validate_json and
    # TypeAdapter.validate_json call, without their Python frame (~0.4 us per message). Not
    # when plugins wrap the validator, or a model is not complete yet (the wrapper rebuilds it).
    if issubclass(tp, pydantic.BaseModel):
        validator = tp.__dict__.get("__pydantic_validator__")
        if type(validator) is pydantic_core.SchemaValidator:
            return validator.validate_json
        return tp.model_validate_json
    adapter = pydantic.TypeAdapter(tp)
    if type(adapter.validator) is pydantic_core.SchemaValidator:
        return adapter.validator.validate_json
    return adapter.validate_json


def _is_json_syntax_error(e: Exception) -> bool:
    if isinstance(e, pydantic.ValidationError):
        return any(err["type"] == "json_invalid" for err in e.errors())
    return False


def _describe(e: Exception) -> str:
    if isinstance(e, pydantic.ValidationError):
        parts = []
        for err in e.errors()[:5]:
            loc = ".".join(str(p) for p in err["loc"]) or "<message>"
            parts.append(f"{loc}: {err['msg']}")
        return f"{e.title}: " + "; ".join(parts)
    return _exc(e)


def _exc(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {tb[-1].filename}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


class StateStore(Protocol):
    """Where :func:`step` finds and keeps per-key state objects (``replay``'s dict, a Flink
    batch). ``load`` gives the key's current state object (decoded, or a fresh initial state);
    ``save`` records the state a message produced with its encoding; ``discard`` forgets the
    object a failed message may have half-mutated, so the next ``load`` gives the state as
    before that message."""

    def load(self, key: str) -> Any: ...

    def save(self, key: str, state: Any, encoded: bytes) -> None: ...

    def discard(self, key: str) -> None: ...


class _Stored:
    """The state store of :meth:`ResolverCore.process`: one key's stored bytes, read-only."""

    __slots__ = ("_core", "_stored")

    def __init__(self, core: ResolverCore, stored: bytes | None) -> None:
        self._core = core
        self._stored = stored

    def load(self, key: str) -> Any:
        return self._core.load_state(self._stored)

    def save(self, key: str, state: Any, encoded: bytes) -> None:
        pass  # the caller stores Applied.encoded

    def discard(self, key: str) -> None:
        pass


def step(
    core: ResolverCore,
    msg: RawMessage,
    store: StateStore | None,
    routed_key: str | None = None,
    decoded: Decoded | None = None,
) -> Applied | DeadLetter | Skip:
    """One message, whatever runs it: decode (unless ``decoded`` is given), re-check the key
    the engine routed it by (``routed_key``; a mismatch is a KeyMismatch dead letter, never a
    write to another key's state), load the key's state from ``store``, run the resolver,
    and save the new state, or discard it when the message became a dead letter.

    ``store`` may be None only for stateless resolvers.
    """
    d = decoded if decoded is not None else core.decode(msg)
    if not isinstance(d, Decoded):
        return d
    if routed_key is not None and d.key != routed_key:
        return core.key_mismatch(msg, routed_key, d)
    if store is None or not core.stateful:
        return core.apply(d, None, msg)
    state = store.load(d.key)  # a StateSchemaError propagates: never continue with empty state
    out = core.apply(d, state, msg)
    if isinstance(out, DeadLetter):
        store.discard(d.key)
    elif out.encoded is not None:
        store.save(d.key, out.state, out.encoded)
    return out
