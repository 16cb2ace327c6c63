"""ResolverCore: the per-message step shared by replay and the Flink operator."""

import json
from dataclasses import dataclass, field

import pytest
from pydantic import BaseModel

from flink_job import KafkaSource, State, StateSchemaError
from flink_job._core import (
    DLQ_ERROR_CLASS,
    DLQ_ERROR_MESSAGE,
    SKIP,
    Applied,
    DeadLetter,
    Decoded,
    FeatureRow,
    RawMessage,
    ResolverCore,
)
from flink_job._state_codec import StateCodec
from flink_job.features import Features, features
from flink_job.streams import stream
from flink_job.testing import replay

SOURCE = KafkaSource(name="logins")


class LoginEvent(BaseModel):
    user_id: str
    ip_address: str


@features
class User:
    id: str
    unique_ip_count: int
    note: object


@dataclass
class LoginState:
    unique_ips: set[str] = field(default_factory=set)


@stream(source=SOURCE, keys={"user_id": User.id})
def track(event: LoginEvent, state: State[LoginState]) -> Features[User.id, User.unique_ip_count]:
    state.unique_ips.add(event.ip_address)
    return User(unique_ip_count=len(state.unique_ips))


def raw(user: str, ip: str, **kw) -> RawMessage:
    return RawMessage(value=json.dumps({"user_id": user, "ip_address": ip}).encode(), **kw)


def test_process_without_stored_state_starts_from_the_initial_state():
    core = ResolverCore(track)
    out = core.process(raw("u1", "1"), None)
    assert isinstance(out, Applied)
    assert out.state == LoginState({"1"})
    assert out.row == FeatureRow("track", b'"u1"', b'{"user.unique_ip_count":1,"user.id":"u1"}')
    assert StateCodec(LoginState, "track").decode(out.encoded) == LoginState({"1"})


def test_process_continues_from_the_stored_bytes():
    core = ResolverCore(track)
    first = core.process(raw("u1", "1"), None)
    second = core.process(raw("u1", "2"), first.encoded)
    assert second.state == LoginState({"1", "2"})
    assert second.row.as_dict() == {"user.id": "u1", "user.unique_ip_count": 2}


def test_decode_gives_a_string_state_key_and_the_key_values():
    d = ResolverCore(track).decode(raw("u1", "1"))
    assert isinstance(d, Decoded)
    assert d.key == "u1" and type(d.key) is str
    assert d.key_values == ("u1",)
    assert d.event == LoginEvent(user_id="u1", ip_address="1")


def test_stored_state_that_no_longer_fits_stops_loudly_instead_of_dropping_it():
    @dataclass
    class Old:
        unique_ips: str = "abc"

    Old.__qualname__ = Old.__name__ = "LoginState"
    stored = StateCodec(Old, "track").encode(Old())
    with pytest.raises(StateSchemaError) as info:
        ResolverCore(track).process(raw("u1", "1"), stored)
    assert info.value.resolver == "track"
    assert info.value.field == "unique_ips"


def test_apply_after_a_failure_returns_a_dead_letter_and_no_bytes_to_store():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def fails(event: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add("mutated")
        raise RuntimeError("x")

    core = ResolverCore(fails)
    msg = raw("u1", "1")
    out = core.apply(core.decode(msg), core.new_state(), msg)
    assert isinstance(out, DeadLetter)
    assert out.error_class == "ResolverError"


def test_parse_none_is_skip():
    @stream(source=SOURCE, parse=lambda b: None)
    def never(event: LoginEvent) -> User:
        return None

    assert ResolverCore(never).decode(RawMessage(value=b"{}", key=b"k")) is SKIP


def test_non_utf8_kafka_key_is_a_missing_key_dead_letter():
    @stream(source=SOURCE)
    def by_key(event: LoginEvent) -> User:
        return None

    out = ResolverCore(by_key).decode(raw("u1", "1", key=b"\xff"))
    assert isinstance(out, DeadLetter)
    assert out.error_class == "MissingKey"
    assert "UTF-8" in out.error


def test_max_message_bytes_argument_overrides_the_source():
    core = ResolverCore(track, max_message_bytes=10)
    out = core.decode(raw("u1", "1"))
    assert isinstance(out, DeadLetter) and out.error_class == "MessageTooLarge"


def test_feature_values_that_cannot_be_json_are_an_output_error():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def opaque(event: LoginEvent, state: State[LoginState]) -> Features[User.note]:
        state.unique_ips.add(event.ip_address)
        return User(note=object())

    result = replay(opaque, [raw("u1", "1")])
    (letter,) = result.dead_letters
    assert letter.error_class == "OutputError"
    assert "JSON" in letter.error
    assert result.states == {}


@pytest.mark.parametrize(
    ("resolver_kind", "error_class"),
    [("missing-key", "MissingKey"), ("parse", "ParseError"), ("output", "OutputError")],
)
def test_every_dead_letter_kind_has_error_headers(resolver_kind, error_class):
    class Ev(BaseModel):
        user_id: str | None = None

    def bad_parse(e: Ev) -> Ev:
        raise ValueError("bad")

    if resolver_kind == "missing-key":

        @stream(source=SOURCE, keys={"user_id": User.id})
        def r(e: Ev) -> User:
            return None
    elif resolver_kind == "parse":

        @stream(source=SOURCE, parse=bad_parse, keys={"user_id": User.id})
        def r(e: Ev) -> User:
            return None
    else:

        @stream(source=SOURCE, keys={"user_id": User.id})
        def r(e: Ev) -> Features[User.unique_ip_count]:
            return User(note="not declared")

    (letter,) = replay(
        r, [{"user_id": None if resolver_kind == "missing-key" else "u"}]
    ).dead_letters
    headers = dict(letter.headers())
    assert letter.error_class == error_class
    assert headers[DLQ_ERROR_CLASS] == error_class.encode()
    assert headers[DLQ_ERROR_MESSAGE].decode() == letter.error


class _Later(BaseModel):
    inner: "_Inner"  # not defined yet: pydantic leaves _Later's validator incomplete
    user_id: str


def test_a_message_model_completed_after_its_class_still_validates():
    # The core calls the schema validator directly when the model is complete; one that
    # was not complete at class creation goes through model_validate_json, which builds it.
    global _Inner

    class _Inner(BaseModel):
        n: int

    @stream(source=SOURCE, keys={"user_id": User.id})
    def later(event: _Later) -> Features[User.id, User.unique_ip_count]:
        return User(unique_ip_count=event.inner.n)

    core = ResolverCore(later)
    good = core.process(RawMessage(b'{"inner": {"n": 3}, "user_id": "u"}'), None)
    assert isinstance(good, Applied)
    assert good.row is not None and good.row.as_dict()["user.unique_ip_count"] == 3
    bad = core.process(RawMessage(b'{"inner": {"n": "x"}, "user_id": "u"}'), None)
    assert isinstance(bad, DeadLetter) and bad.error_class == "SchemaViolation"
    assert "inner.n" in bad.error
