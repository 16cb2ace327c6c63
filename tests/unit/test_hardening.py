"""Hardening: the hand-off, state that is never stored, routed-key checks, the restricted
unpickler, bounded dead letters, exact JVM keying rules and BOM-safe state keys."""

import json
import pickle
from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from flink_job import KafkaSource, State
from flink_job._core import (
    DEAD_LETTER_MAX_BYTES,
    DLQ_SOURCE_OFFSET,
    DLQ_VALUE_TRUNCATED,
    DeadLetter,
    Decoded,
    RawMessage,
    ResolverCore,
    state_key,
)
from flink_job._keying import json_key_defaults, json_key_path
from flink_job._runtime import HANDOFFS, KeyOf, ResolverRef, _Handoff
from flink_job._state_codec import StateCodec
from flink_job.errors import ResolverDefinitionError, StateSchemaError
from flink_job.features import Features, features
from flink_job.streams import stream
from flink_job.testing import replay

SOURCE = KafkaSource(name="events")


class Event(BaseModel):
    user_id: str
    n: int = 0


@features
class User:
    id: str
    n: int


@dataclass
class Count:
    n: int = 0


@stream(source=SOURCE, keys={"user_id": User.id})
def count(event: Event, state: State[Count]) -> Features[User.id, User.n]:
    state.n += 1
    return User(id=event.user_id, n=state.n)


def msg(value: bytes, offset: int = 0, key: bytes | None = None) -> RawMessage:
    return RawMessage(value=value, key=key, topic="t", partition=0, offset=offset)


def as_tuple(m: RawMessage) -> tuple:
    """The message tuple the operators get (flink_job._wire.MSG_TYPE)."""
    absent = (1 if m.key is None else 0) | (2 if m.value is None else 0) | 4
    return (m.key or b"", m.value or b"", m.partition, m.offset, {"": b""}, absent, -1)


# -- 3 / issue 11 item 7: the key-selector hand-off --------------------------------------------
def test_handoff_is_bounded_by_bytes():
    h = _Handoff(max_bytes=1_000_000)
    core = ResolverCore(count)
    for offset in range(2000):  # ~10 KB messages whose entries are never taken
        m = msg(json.dumps({"user_id": "u", "pad": "x" * 10_000}).encode(), offset)
        d = core.decode(m)
        assert isinstance(d, Decoded)
        h.put("count", d, m)
    assert h.size_bytes <= 1_000_000
    assert 0 < len(h) < 2000
    # The newest entries are kept, the oldest evicted.
    assert h.take("count", as_tuple(m)) is not None


def test_handoff_gives_an_entry_only_for_the_very_message_routed():
    h = _Handoff()
    core = ResolverCore(count)
    mine = msg(b'{"user_id": "mine"}', offset=7)
    theirs = msg(b'{"user_id": "theirs"}', offset=7)  # same resolver name, same offset
    d = core.decode(mine)
    assert isinstance(d, Decoded)
    h.put("count", d, mine)
    assert h.take("count", as_tuple(theirs)) is None
    h.put("count", d, mine)
    taken = h.take("count", as_tuple(mine))
    assert taken is not None and taken[0].key == "mine"
    assert h.take("count", as_tuple(mine)) is None  # taken once
    assert h.size_bytes == 0


def test_two_jobs_with_a_resolver_of_the_same_name_never_share_a_handoff():
    a = ResolverRef(module="m", file=None, name="count", topic="topic-a")
    b = ResolverRef(module="m", file=None, name="count", topic="topic-b")
    assert a.scope != b.scope
    ha, hb = HANDOFFS.acquire(a.scope), HANDOFFS.acquire(b.scope)
    try:
        assert ha is not hb
        assert HANDOFFS.acquire(a.scope) is ha  # the job's other operator
        HANDOFFS.release(a.scope)
        core = ResolverCore(count)
        m = msg(b'{"user_id": "a1"}', offset=0)
        d = core.decode(m)
        assert isinstance(d, Decoded)
        ha.put("count", d, m)
        assert hb.take("count", as_tuple(m)) is None
        assert ha.take("count", as_tuple(m)) is not None
    finally:
        HANDOFFS.release(a.scope)
        HANDOFFS.release(b.scope)
    assert a.scope not in HANDOFFS.scopes() and b.scope not in HANDOFFS.scopes()


def test_process_mode_key_selector_hands_nothing_off():
    ref = ResolverRef(module=__name__, file=None, name="count", execution_mode="process")
    k = KeyOf(ref)
    k._core = ResolverCore(count)
    k._open = lambda: None
    assert k._handoff is None
    assert k.get_key(as_tuple(msg(b'{"user_id": "u1"}'))) == "u1"
    assert ref.scope not in HANDOFFS.scopes()


# -- 4: state that is never stored -------------------------------------------------------------
def test_state_models_with_private_attributes_or_extra_fields_are_refused_at_definition():
    class WithPrivate(BaseModel):
        n: int = 0
        _seen: int = PrivateAttr(default=0)

    class WithExtra(BaseModel):
        model_config = ConfigDict(extra="allow")
        n: int = 0

    class Outer(BaseModel):
        inner: WithPrivate = WithPrivate()

    for cls, what in [(WithPrivate, "_seen"), (WithExtra, "extra"), (Outer, "_seen")]:
        with pytest.raises(ResolverDefinitionError, match=what):
            StateCodec(cls, "r")  # what @stream builds for State[cls]


def test_an_attribute_that_is_not_a_field_is_a_dead_letter_not_a_hidden_counter():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def hidden(event: Event, state: State[Count]) -> Features[User.id, User.n]:
        state.seen = getattr(state, "seen", 0) + 1  # type: ignore[attr-defined]
        return User(id=event.user_id, n=state.seen)  # type: ignore[attr-defined]

    result = replay(hidden, [Event(user_id="u1")] * 3)
    assert result.rows == []
    assert [d.error_class for d in result.dead_letters] == ["StateEncodeError"] * 3
    assert "seen" in result.dead_letters[0].error


# -- 8: the routed key is re-checked -----------------------------------------------------------
def test_a_message_routed_to_another_key_is_a_key_mismatch_dead_letter():
    flips = iter([True, False])

    def flaky(e: Event) -> Event:  # not deterministic: another key the second time
        return Event(user_id=e.user_id + ("" if next(flips) else "-other"))

    @stream(source=SOURCE, keys={"user_id": User.id}, parse=flaky)
    def parsed(event: Event, state: State[Count]) -> Features[User.id, User.n]:
        state.n += 1
        return User(id=event.user_id, n=state.n)

    core = ResolverCore(parsed)
    m = msg(b'{"user_id": "u1"}')
    routed = core.decode(m)
    assert isinstance(routed, Decoded) and routed.key == "u1"
    again = core.decode_routed(m, routed.key)
    assert isinstance(again, DeadLetter) and again.error_class == "KeyMismatch"
    assert "u1-other" in again.error
    ok = ResolverCore(count).decode_routed(m, "u1")
    assert isinstance(ok, Decoded) and ok.key == "u1"


# -- 9: the restricted unpickler ---------------------------------------------------------------
def test_stored_state_cannot_allocate_a_bytearray():
    # 33 bytes that would allocate 1 GiB: bytearray(2**30) inside an envelope tuple.
    payload = b"\x80\x02K\x01X\x01\x00\x00\x00xcbuiltins\nbytearray\nJ\x00\x00\x00@\x85R\x87."
    assert len(payload) <= 40
    small = payload.replace(b"J\x00\x00\x00@", b"K\x03")  # the same with bytearray(3)
    assert pickle.loads(small) == (1, "x", bytearray(3))  # (it is a valid pickle)
    codec = count.state.codec  # type: ignore[union-attr]
    with pytest.raises(StateSchemaError, match="bytearray"):
        codec.decode(payload)


def test_every_stored_value_type_still_round_trips():
    import datetime as dt
    import decimal
    import uuid

    @dataclass
    class Rich:
        when: dt.datetime = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        day: dt.date = dt.date(2020, 1, 2)
        at: dt.time = dt.time(3, 4)
        span: dt.timedelta = dt.timedelta(5)
        amount: decimal.Decimal = decimal.Decimal("1.5")
        ident: uuid.UUID = field(default_factory=lambda: uuid.UUID(int=7))
        tags: set[str] = field(default_factory=lambda: {"a"})
        frozen: frozenset[int] = frozenset({1})
        raw: bytes = b"x"

    @stream(source=SOURCE, keys={"user_id": User.id})
    def rich(event: Event, state: State[Rich]) -> Features[User.id, User.n]:
        return User(id=event.user_id, n=1)

    codec = rich.state.codec  # type: ignore[union-attr]
    assert codec.decode(codec.encode(Rich())) == Rich()


# -- 5: dead letters always fit ----------------------------------------------------------------
def test_a_dead_letter_over_the_record_limit_is_cut_and_says_so():
    big = b'{"user_id": "u1", "pad": "' + b"x" * 1_200_000 + b'"}'
    d = ResolverCore(count).decode(msg(big, offset=42, key=b"k"))
    assert isinstance(d, DeadLetter) and d.error_class == "MessageTooLarge"
    key, value, headers = d.record()
    h = dict(headers)
    size = len(key or b"") + len(value or b"") + sum(len(n) + len(v) for n, v in headers)
    assert size <= DEAD_LETTER_MAX_BYTES
    assert key == b"k" and big.startswith(value or b"x") and len(value or b"") > 900_000
    assert h[DLQ_VALUE_TRUNCATED] == str(len(big)).encode()
    assert h[DLQ_SOURCE_OFFSET] == b"42"

    small = ResolverCore(count).decode(msg(b"{", key=b"k"))
    assert isinstance(small, DeadLetter)
    assert small.record() == (b"k", b"{", small.headers())


def test_a_dead_letter_with_huge_headers_still_fits():
    m = RawMessage(
        value=b"x" * 500_000,
        key=b"k" * 300_000,
        topic="t",
        partition=0,
        offset=1,
        headers=(("h", b"y" * 900_000),),
    )
    d = ResolverCore(count).decode(m)
    assert isinstance(d, DeadLetter)
    key, value, headers = d.record()
    size = len(key or b"") + len(value or b"") + sum(len(n) + len(v) for n, v in headers)
    assert size <= DEAD_LETTER_MAX_BYTES
    assert dict(headers)[DLQ_SOURCE_OFFSET] == b"1"


# -- 1 and 2: keys ------------------------------------------------------------------------------
def test_keys_starting_with_a_byte_order_mark_are_escaped_one_to_one():
    keys = ["\ufeffa", "\ufffea", "\x01a", "\x01\x01a", "a\ufeff", "a", ""]
    escaped = [state_key(k) for k in keys]
    assert len(set(escaped)) == len(keys)
    assert [e[0] for e in escaped[:4]] == ["\x01"] * 4
    assert escaped[4:] == keys[4:]
    core = ResolverCore(count)
    d = core.decode(msg('{"user_id": "\ufeffu"}'.encode()))
    assert isinstance(d, Decoded) and d.key == "\x01\ufeffu" and d.key_values == ("\ufeffu",)


def test_a_key_that_is_not_valid_unicode_is_a_dead_letter():
    def surrogate(e: Event) -> Event:
        return Event(user_id="\ud800")

    @stream(source=SOURCE, keys={"user_id": User.id}, parse=surrogate)
    def bad(event: Event) -> Features[User.id]:
        return User(id=event.user_id)

    d = ResolverCore(bad).decode(msg(b'{"user_id": "u"}'))
    assert isinstance(d, DeadLetter) and d.error_class == "MissingKey"


def test_defaults_along_the_key_path_are_keyed_on_the_jvm_as_python_keys_them():
    class Profile(BaseModel):
        id: str = "nobody"

    class WithDefaults(BaseModel):
        user_id: str = "\ufeffanon"
        profile: Profile = Profile()
        required: Profile

    @stream(source=SOURCE, keys={"user_id": User.id})
    def a(event: WithDefaults) -> Features[User.id]:
        return User(id=event.user_id)

    @stream(source=SOURCE, keys={"profile.id": User.id})
    def b(event: WithDefaults) -> Features[User.id]:
        return User(id=event.profile.id)

    @stream(source=SOURCE, keys={"required.id": User.id})
    def c(event: WithDefaults) -> Features[User.id]:
        return User(id=event.required.id)

    assert json_key_defaults(a) == (("$.user_id", "\x01\ufeffanon"),)
    assert json_key_defaults(b) == (("$.profile", "nobody"), ("$.profile.id", "nobody"))
    assert json_key_defaults(c) == (("$.required", None), ("$.required.id", "nobody"))
    # ... and what they say is what Python does:
    assert ResolverCore(b).decode(msg(b'{"required": {}}')).key == "nobody"  # type: ignore[union-attr]


def test_a_key_default_computed_per_message_is_keyed_in_python():
    import uuid

    from pydantic import Field

    class Generated(BaseModel):
        user_id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    @stream(source=SOURCE, keys={"user_id": User.id})
    def g(event: Generated) -> Features[User.id]:
        return User(id=event.user_id)

    assert json_key_path(g) is None


def test_the_jvm_keyings_python_fallback_keys_exactly_as_the_key_selector():
    from flink_job._runtime import UNKEYABLE, FallbackKey

    ref = ResolverRef(module=__name__, file=None, name="count", json_key_path="$.user_id")
    fallback = FallbackKey(ref)
    fallback._core = ResolverCore(count)
    handoff = _Handoff()
    fallback._handoff = handoff
    good = as_tuple(msg('{"user_id": "\ufeffu", "n": NaN}'.encode("utf-8").replace(b"NaN", b"1")))
    row = fallback.map(good)
    assert row[0] == "\x01\ufeffu" and row[1] is good
    assert handoff.take("count", good) is not None  # the keyed operator reuses the decode
    assert fallback.map(as_tuple(msg(b'{"user_id": 5}')))[0] == UNKEYABLE
