"""flink_job.testing.replay: the job's per-message semantics, in-process."""

import json
from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from examples import logins
from examples.logins import LoginEvent, LoginState, User, track_unique_ips
from flink_job import KafkaSource, State
from flink_job._core import canonical_key
from flink_job.features import Features, Primary, features
from flink_job.streams import stream
from flink_job.testing import (
    DLQ_ERROR_CLASS,
    DLQ_ERROR_MESSAGE,
    DLQ_RESOLVER,
    DLQ_SOURCE_OFFSET,
    DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
    RawMessage,
    replay,
)

# The seed's resolver, defined once for tests, examples and docs.
SOURCE = logins.source


@features
class Org:
    id: str
    members: int


def login(user: str, ip: str) -> LoginEvent:
    return LoginEvent(user_id=user, ip_address=ip)


def dead(result, error_class: str):
    return [d for d in result.dead_letters if d.error_class == error_class]


# --- the seed resolver -------------------------------------------------------------------------


def test_seed_resolver_counts_unique_ips_per_user():
    result = replay(
        track_unique_ips,
        [
            login("u1", "1.1.1.1"),
            login("u1", "2.2.2.2"),
            login("u2", "1.1.1.1"),
            login("u1", "1.1.1.1"),
        ],
    )
    assert result.rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
        {"user.id": "u2", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
    ]
    assert result.states == {
        "u1": LoginState({"1.1.1.1", "2.2.2.2"}),
        "u2": LoginState({"1.1.1.1"}),
    }
    assert result.dead_letters == []
    assert result.skipped == 0


def test_output_record_key_is_the_json_primary_key_and_names_the_resolver():
    result = replay(track_unique_ips, [login("u1", "1.1.1.1")])
    (record,) = result.records
    assert record.key == b'"u1"'
    assert record.resolver == "track_unique_ips"
    assert json.loads(record.value) == {"user.id": "u1", "user.unique_ip_count": 1}


# --- message forms -----------------------------------------------------------------------------


def test_messages_may_be_models_dicts_json_bytes_json_str_and_raw_messages():
    result = replay(
        track_unique_ips,
        [
            login("u1", "1"),
            {"user_id": "u1", "ip_address": "2"},
            b'{"user_id": "u1", "ip_address": "3"}',
            '{"user_id": "u1", "ip_address": "4"}',
            bytearray(b'{"user_id": "u1", "ip_address": "5"}'),
            RawMessage(value=b'{"user_id": "u1", "ip_address": "6"}', topic="t", offset=9),
        ],
    )
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 2, 3, 4, 5, 6]


def test_dataclass_messages_are_accepted():
    @dataclass
    class Click:
        user_id: str
        url: str

    @stream(source=SOURCE, keys={"user_id": User.id})
    def clicks(event: Click, state: State[LoginState]) -> User:
        state.unique_ips.add(event.url)
        return User(unique_ip_count=len(state.unique_ips))

    result = replay(clicks, [Click("u1", "/a"), {"user_id": "u1", "url": "/b"}])
    assert result.rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
    ]


def test_keys_rekey_by_message_attribute_whatever_the_kafka_key():
    result = replay(
        track_unique_ips,
        [("k1", login("u1", "1")), ("k2", login("u1", "2")), ("k1", login("u2", "3"))],
    )
    assert set(result.states) == {"u1", "u2"}
    assert result.states["u1"] == LoginState({"1", "2"})


def test_without_keys_the_kafka_record_key_is_the_state_key():
    @stream(source=SOURCE)
    def by_record_key(
        event: LoginEvent, state: State[LoginState]
    ) -> Features[User.id, User.unique_ip_count]:
        state.unique_ips.add(event.ip_address)
        return User(id=event.user_id, unique_ip_count=len(state.unique_ips))

    result = replay(
        by_record_key,
        [
            ("k1", login("u1", "1")),
            (b"k1", login("u2", "2")),
            ("k2", login("u1", "3")),
        ],
    )
    assert result.states == {"k1": LoginState({"1", "2"}), "k2": LoginState({"3"})}
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 2, 1]


def test_without_keys_a_record_without_kafka_key_is_a_missing_key_dead_letter():
    @stream(source=SOURCE)
    def by_record_key(event: LoginEvent, state: State[LoginState]) -> User:
        return None

    result = replay(by_record_key, [login("u1", "1")])
    assert [d.error_class for d in result.dead_letters] == ["MissingKey"]
    assert "Kafka key" in result.dead_letters[0].error


def test_without_keys_a_non_string_kafka_key_is_used_as_its_json():
    @stream(source=SOURCE)
    def by_record_key(event: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add(event.ip_address)
        return None

    result = replay(by_record_key, [(7, login("u1", "1")), (7, login("u1", "2"))])
    assert result.dead_letters == []
    assert result.states == {"7": LoginState({"1", "2"})}


# --- keys and output rows ----------------------------------------------------------------------


def test_key_features_are_filled_into_the_output_row():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def count_only(event: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add(event.ip_address)
        return User(unique_ip_count=len(state.unique_ips))

    result = replay(count_only, [login("u9", "1")])
    assert result.rows == [{"user.id": "u9", "user.unique_ip_count": 1}]
    assert result.records[0].key == b'"u9"'


def test_a_key_feature_the_resolver_returns_itself_is_kept():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def renames(event: LoginEvent) -> User:
        return User(id=event.user_id.upper(), unique_ip_count=0)

    assert replay(renames, [login("u1", "1")]).rows == [
        {"user.id": "U1", "user.unique_ip_count": 0}
    ]


class Geo(BaseModel):
    country: str | None = None


class Account(BaseModel):
    id: str
    geo: Geo | None = None


class AccountEvent(BaseModel):
    user: Account
    ip: str


@features
class Country:
    code: Primary[str]
    logins: int


@stream(source=SOURCE, keys={"user.id": User.id})
def nested_user(event: AccountEvent, state: State[LoginState]) -> User:
    state.unique_ips.add(event.ip)
    return User(unique_ip_count=len(state.unique_ips))


@stream(source=SOURCE, keys={"user.geo.country": Country.code})
def per_country(event: AccountEvent, state: State[LoginState]) -> Country:
    state.unique_ips.add(event.user.id)
    return Country(logins=len(state.unique_ips))


def test_nested_key_path_rekeys_by_the_nested_attribute():
    result = replay(
        nested_user,
        [
            {"user": {"id": "u1"}, "ip": "1"},
            {"user": {"id": "u1"}, "ip": "2"},
            {"user": {"id": "u2"}, "ip": "1"},
        ],
    )
    assert result.rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
        {"user.id": "u2", "user.unique_ip_count": 1},
    ]


def test_deep_key_path_fills_a_primary_marked_feature():
    result = replay(per_country, [{"user": {"id": "u1", "geo": {"country": "NL"}}, "ip": "1"}])
    assert result.rows == [{"country.code": "NL", "country.logins": 1}]
    assert result.records[0].key == b'"NL"'
    assert set(result.states) == {"NL"}


@pytest.mark.parametrize(
    "message",
    [
        {"user": {"id": "u1"}, "ip": "1"},
        {"user": {"id": "u1", "geo": None}, "ip": "1"},
        {"user": {"id": "u1", "geo": {"country": None}}, "ip": "1"},
    ],
    ids=["geo-missing", "geo-null", "country-null"],
)
def test_missing_or_null_key_attribute_is_a_missing_key_dead_letter(message):
    result = replay(per_country, [message])
    assert result.rows == []
    (letter,) = result.dead_letters
    assert letter.error_class == "MissingKey"
    assert "'user.geo.country'" in letter.error
    assert result.states == {}


def test_several_keys_make_a_canonical_json_state_key():
    class Purchase(BaseModel):
        org_id: str
        seat: int

    @stream(source=SOURCE, keys={"org_id": Org.id, "seat": User.unique_ip_count})
    def per_seat(event: Purchase, state: State[LoginState]) -> Features[Org.members]:
        state.unique_ips.add(str(event.seat))
        return Org(members=1)

    result = replay(per_seat, [{"org_id": "o1", "seat": 3}])
    assert set(result.states) == {'["o1",3]'}
    assert result.rows == [{"org.id": "o1", "org.members": 1, "user.unique_ip_count": 3}]


def test_non_string_key_values_become_json_state_keys():
    class Order(BaseModel):
        shop: int

    @features
    class Shop:
        id: int
        orders: int

    @stream(source=SOURCE, keys={"shop": Shop.id})
    def orders(event: Order, state: State[LoginState]) -> Shop:
        state.unique_ips.add("x")
        return Shop(orders=1)

    result = replay(orders, [{"shop": 42}])
    assert set(result.states) == {"42"}
    assert result.rows == [{"shop.id": 42, "shop.orders": 1}]
    assert result.records[0].key == b"42"


def test_canonical_key_is_the_string_itself_or_json():
    assert canonical_key(("u1",)) == "u1"
    assert canonical_key((1,)) == "1"
    assert canonical_key((True,)) == "true"
    assert canonical_key(("a", 1)) == '["a",1]'
    assert canonical_key(('"u1"',)) == '"u1"'


# --- initial state and saving ------------------------------------------------------------------


def test_default_state_is_a_fresh_copy_per_key():
    default = LoginState({"0.0.0.0"})

    @stream(source=SOURCE, keys={"user_id": User.id})
    def with_default(event: LoginEvent, state: State[LoginState] = default) -> User:
        state.unique_ips.add(event.ip_address)
        return User(unique_ip_count=len(state.unique_ips))

    result = replay(with_default, [login("a", "1"), login("b", "2"), login("a", "3")])
    assert [r["user.unique_ip_count"] for r in result.rows] == [2, 2, 3]
    assert result.states == {
        "a": LoginState({"0.0.0.0", "1", "3"}),
        "b": LoginState({"0.0.0.0", "2"}),
    }
    assert result.states["a"].unique_ips is not result.states["b"].unique_ips
    assert default == LoginState({"0.0.0.0"})


def test_state_without_default_starts_from_the_no_argument_constructor():
    result = replay(track_unique_ips, [login("a", "1"), login("b", "2")])
    assert result.states == {"a": LoginState({"1"}), "b": LoginState({"2"})}


def test_pydantic_model_state():
    class Counts(BaseModel):
        ips: set[str] = set()
        logins: int = 0

    @stream(source=SOURCE, keys={"user_id": User.id})
    def counts(event: LoginEvent, state: State[Counts]) -> User:
        state.ips.add(event.ip_address)
        state.logins += 1
        return User(unique_ip_count=len(state.ips))

    result = replay(counts, [login("a", "1"), login("a", "1"), login("b", "2")])
    assert result.states == {"a": Counts(ips={"1"}, logins=2), "b": Counts(ips={"2"}, logins=1)}
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 1, 1]


def test_a_resolver_that_raises_leaves_the_state_untouched_and_dead_letters_the_message():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def flaky(event: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add(event.ip_address)  # mutated before the failure
        if event.ip_address == "bad":
            raise RuntimeError("lookup failed")
        return User(unique_ip_count=len(state.unique_ips))

    result = replay(flaky, [login("u1", "1"), login("u1", "bad"), login("u1", "2")])
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 2]
    assert result.states == {"u1": LoginState({"1", "2"})}
    (letter,) = result.dead_letters
    assert letter.error_class == "ResolverError"
    assert "RuntimeError: lookup failed" in letter.error
    assert letter.resolver == "flaky"


def test_a_resolver_that_raises_on_a_new_key_stores_no_state_for_it():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def always_fails(event: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add(event.ip_address)
        raise ValueError("no")

    result = replay(always_fails, [login("u1", "1")])
    assert result.states == {}
    assert [d.error_class for d in result.dead_letters] == ["ResolverError"]


def test_returning_none_emits_no_row_but_saves_the_state():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def quiet(event: LoginEvent, state: State[LoginState]) -> User | None:
        state.unique_ips.add(event.ip_address)
        if len(state.unique_ips) < 2:
            return None
        return User(unique_ip_count=len(state.unique_ips))

    result = replay(quiet, [login("u1", "1"), login("u1", "2")])
    assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 2}]
    assert result.dead_letters == []
    assert result.states == {"u1": LoginState({"1", "2"})}


def test_initial_states_seed_the_stored_state():
    result = replay(
        track_unique_ips,
        [login("u1", "3")],
        initial_states={"track_unique_ips": {"u1": LoginState({"1", "2"})}},
    )
    assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 3}]


def test_a_state_value_that_cannot_be_stored_is_a_dead_letter_and_state_is_kept():
    class Foreign:
        pass

    @stream(source=SOURCE, keys={"user_id": User.id})
    def smuggles(event: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add(Foreign() if event.ip_address == "x" else event.ip_address)
        return User(unique_ip_count=len(state.unique_ips))

    result = replay(smuggles, [login("u1", "1"), login("u1", "x"), login("u1", "2")])
    assert [d.error_class for d in result.dead_letters] == ["StateEncodeError"]
    assert "Foreign" in result.dead_letters[0].error
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 2]
    assert result.states == {"u1": LoginState({"1", "2"})}


def test_stateless_resolver():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def stateless(event: LoginEvent) -> User:
        return User(unique_ip_count=len(event.ip_address))

    result = replay(stateless, [login("u1", "1.1.1.1")])
    assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 7}]
    assert result.states_of("stateless") == {}


# --- parse= ------------------------------------------------------------------------------------


class Envelope(BaseModel):
    kind: str
    body: str


def unwrap(env: Envelope) -> LoginEvent | None:
    if env.kind == "heartbeat":
        return None
    if env.kind == "broken":
        raise ValueError("cannot unwrap")
    if env.kind == "wrong":
        return env  # type: ignore[return-value]
    return LoginEvent.model_validate_json(env.body)


@stream(source=SOURCE, parse=unwrap, keys={"user_id": User.id})
def unwrapped(event: LoginEvent, state: State[LoginState]) -> User:
    state.unique_ips.add(event.ip_address)
    return User(unique_ip_count=len(state.unique_ips))


def envelope(kind: str, user: str = "u1", ip: str = "1") -> dict:
    return {"kind": kind, "body": login(user, ip).model_dump_json()}


def test_parse_turns_the_raw_model_into_the_message():
    result = replay(unwrapped, [envelope("login", ip="1"), envelope("login", ip="2")])
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 2]


def test_parse_returning_none_skips_the_message_without_dead_letter_or_state():
    result = replay(unwrapped, [envelope("heartbeat"), envelope("login"), envelope("heartbeat")])
    assert result.skipped == 2
    assert result.dead_letters == []
    assert len(result.rows) == 1
    assert result.states == {"u1": LoginState({"1"})}


def test_parse_raising_is_a_parse_error_dead_letter():
    result = replay(unwrapped, [envelope("broken")])
    (letter,) = result.dead_letters
    assert letter.error_class == "ParseError"
    assert "ValueError: cannot unwrap" in letter.error


def test_parse_returning_the_wrong_type_is_a_parse_error_dead_letter():
    result = replay(unwrapped, [envelope("wrong")])
    (letter,) = result.dead_letters
    assert letter.error_class == "ParseError"
    assert "Envelope" in letter.error and "LoginEvent" in letter.error


def test_parse_from_raw_bytes():
    def from_csv(raw: bytes) -> LoginEvent | None:
        text = raw.decode()
        if text.startswith("#"):
            return None
        user, ip = text.split(",")
        return LoginEvent(user_id=user, ip_address=ip)

    @stream(source=SOURCE, parse=from_csv, keys={"user_id": User.id})
    def csv_logins(event: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add(event.ip_address)
        return User(unique_ip_count=len(state.unique_ips))

    result = replay(csv_logins, [b"u1,1", b"# comment", b"u1,2", b"u2,1"])
    assert result.rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
        {"user.id": "u2", "user.unique_ip_count": 1},
    ]
    assert result.skipped == 1


def test_parse_input_that_fails_validation_is_a_schema_violation():
    result = replay(unwrapped, [{"kind": "login"}])
    assert [d.error_class for d in result.dead_letters] == ["SchemaViolation"]
    assert "body" in result.dead_letters[0].error


# --- what a resolver may return ----------------------------------------------------------------


@features
class Extra:
    id: str
    secret_score: float


@stream(source=SOURCE, keys={"user_id": User.id})
def returns_various(event: LoginEvent, state: State[LoginState]) -> Features[User.unique_ip_count]:
    state.unique_ips.add(event.ip_address)
    kind = event.ip_address
    if kind == "outside":
        return User(unique_ip_count=1, id="u1")  # id is the key feature: allowed
    if kind == "other-class":
        return Extra(id="e", secret_score=0.5)
    if kind == "dict":
        return {"user.unique_ip_count": 1}  # type: ignore[return-value]
    return User(unique_ip_count=len(state.unique_ips))


def test_returning_features_of_another_class_is_an_output_error_naming_them():
    result = replay(returns_various, [login("u1", "other-class")])
    (letter,) = result.dead_letters
    assert letter.error_class == "OutputError"
    assert "extra.id" in letter.error and "extra.secret_score" in letter.error
    assert "user.unique_ip_count" in letter.error  # what it may return
    assert result.states == {}


def test_returning_something_that_is_not_features_is_an_output_error():
    result = replay(returns_various, [login("u1", "dict")])
    (letter,) = result.dead_letters
    assert letter.error_class == "OutputError"
    assert "dict" in letter.error


def test_the_key_feature_is_part_of_the_allowed_output():
    result = replay(returns_various, [login("u1", "outside")])
    assert result.dead_letters == []
    assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 1}]


def test_returning_a_feature_outside_the_declared_features_is_an_output_error_naming_it():
    @features
    class Profile:
        id: str
        name: str
        email: str

    class Signup(BaseModel):
        id: str
        name: str
        email: str

    @stream(source=SOURCE, keys={"id": Profile.id})
    def profile(event: Signup) -> Features[Profile.name]:
        return Profile(name=event.name, email=event.email)

    result = replay(profile, [{"id": "p1", "name": "Ada", "email": "ada@example.com"}])
    assert result.rows == []
    (letter,) = result.dead_letters
    assert letter.error_class == "OutputError"
    assert "profile.email" in letter.error
    assert "profile.name" not in letter.error.split("may return")[0]


def test_an_output_error_leaves_the_state_untouched():
    result = replay(returns_various, [login("u1", "1"), login("u1", "other-class")])
    assert result.states == {"u1": LoginState({"1"})}


# --- dead letters ------------------------------------------------------------------------------


BIG = KafkaSource(name="big", topic="logins-topic", max_message_bytes=64)


@stream(source=BIG, keys={"user_id": User.id})
def limited(event: LoginEvent, state: State[LoginState]) -> User:
    if event.ip_address == "boom":
        raise KeyError("boom")
    state.unique_ips.add(event.ip_address)
    return User(unique_ip_count=len(state.unique_ips))


@pytest.mark.parametrize(
    ("payload", "error_class", "text"),
    [
        (b"", "EmptyMessage", "empty"),
        (None, "EmptyMessage", "empty"),
        (b'{"user_id": "u1", "ip_address": "' + b"9" * 64 + b'"}', "MessageTooLarge", "64"),
        (b"\xff\xfe\xfd", "NotUtf8", "UTF-8"),
        (b'{"user_id": "u1", "ip_address": "\xff"}', "NotUtf8", "UTF-8"),
        (b'{"user_id": "u1", ', "MalformedJson", "JSON"),
        (b"not json", "MalformedJson", "JSON"),
        (b'{"user_id": "u1"}', "SchemaViolation", "ip_address"),
        (b'{"user_id": 5, "ip_address": "1"}', "SchemaViolation", "user_id"),
        (b"[1, 2]", "SchemaViolation", "LoginEvent"),
        (b'{"user_id": "u1", "ip_address": "boom"}', "ResolverError", "KeyError"),
    ],
    ids=[
        "empty",
        "null",
        "too-large",
        "not-utf8",
        "not-utf8-in-json",
        "truncated-json",
        "not-json",
        "missing-field",
        "wrong-type",
        "not-an-object",
        "resolver-raises",
    ],
)
def test_bad_input_becomes_a_dead_letter_with_class_headers_and_original_bytes(
    payload, error_class, text
):
    raw = RawMessage(
        value=payload,
        key=b"k",
        topic="logins-topic",
        partition=2,
        offset=17,
        headers=(("trace", b"abc"),),
    )
    result = replay(limited, [raw, login("u1", "ok")])
    assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 1}]  # the job goes on
    (letter,) = result.dead_letters
    assert letter.error_class == error_class
    assert text in letter.error
    assert letter.resolver == "limited"
    assert letter.message.value == payload  # the original bytes, as they came
    headers = letter.headers()
    assert headers[0] == ("trace", b"abc")  # original headers first
    as_dict = dict(headers)
    assert as_dict[DLQ_ERROR_CLASS] == error_class.encode()
    assert text.encode() in as_dict[DLQ_ERROR_MESSAGE]
    assert as_dict[DLQ_RESOLVER] == b"limited"
    assert as_dict[DLQ_SOURCE_TOPIC] == b"logins-topic"
    assert as_dict[DLQ_SOURCE_PARTITION] == b"2"
    assert as_dict[DLQ_SOURCE_OFFSET] == b"17"


def test_message_at_the_size_limit_is_accepted():
    payload = b'{"user_id": "u1", "ip_address": "1"}'
    payload += b" " * (64 - len(payload))
    assert len(payload) == 64
    result = replay(limited, [payload])
    assert result.dead_letters == []


def test_default_size_limit_is_one_mebibyte():
    too_big = b'{"user_id": "u1", "ip_address": "' + b"1" * 1_048_576 + b'"}'
    result = replay(track_unique_ips, [too_big])
    assert [d.error_class for d in result.dead_letters] == ["MessageTooLarge"]


def test_replay_dead_letters_carry_topic_and_offset_of_the_position_in_the_list():
    result = replay(limited, [login("u1", "1"), b"", login("u1", "2")])
    (letter,) = result.dead_letters
    headers = dict(letter.headers())
    assert headers[DLQ_SOURCE_TOPIC] == b"logins-topic"
    assert headers[DLQ_SOURCE_OFFSET] == b"1"


def test_long_error_messages_are_truncated_in_headers():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def shouts(event: LoginEvent) -> User:
        raise ValueError("x" * 10_000)

    (letter,) = replay(shouts, [login("u1", "1")]).dead_letters
    assert len(dict(letter.headers())[DLQ_ERROR_MESSAGE]) <= 2000
    assert len(letter.error) > 10_000


def test_str_message_resolver_dead_letters_non_utf8():
    @stream(source=SOURCE)
    def text(event: str) -> User:
        return User(id=event, unique_ip_count=len(event))

    result = replay(text, [("k", "héllo"), ("k", b"\xff")])
    assert result.rows == [{"user.id": "héllo", "user.unique_ip_count": 5}]
    assert [d.error_class for d in result.dead_letters] == ["NotUtf8"]


def test_bytes_message_resolver_gets_the_raw_bytes():
    @stream(source=SOURCE)
    def raw(event: bytes) -> User:
        return User(id=event.hex(), unique_ip_count=len(event))

    result = replay(raw, [("k", b"\xff\x00")])
    assert result.rows == [{"user.id": "ff00", "user.unique_ip_count": 2}]


# --- several resolvers -------------------------------------------------------------------------


CLICKS = KafkaSource(name="clicks")


class ClickEvent(BaseModel):
    user_id: str
    url: str


@features
class Page:
    id: str
    views: int


@dataclass
class Views:
    n: int = 0


@stream(source=CLICKS, keys={"url": Page.id})
def page_views(event: ClickEvent, state: State[Views]) -> Page:
    state.n += 1
    return Page(views=state.n)


def test_a_mapping_sends_each_list_to_the_resolvers_of_that_source():
    result = replay(
        [track_unique_ips, page_views],
        {
            "logins": [login("u1", "1")],
            "clicks": [{"user_id": "u1", "url": "/a"}, {"user_id": "u2", "url": "/a"}],
        },
    )
    assert result.rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"page.id": "/a", "page.views": 1},
        {"page.id": "/a", "page.views": 2},
    ]
    assert result.states_of("page_views") == {"/a": Views(2)}
    assert result.states_of("track_unique_ips") == {"u1": LoginState({"1"})}
    with pytest.raises(ValueError, match="states_of"):
        _ = result.states


def test_a_mapping_naming_an_unknown_source_is_an_error():
    with pytest.raises(ValueError, match="nosuch"):
        replay(track_unique_ips, {"nosuch": [login("u1", "1")]})


def test_replay_of_a_module_runs_all_its_resolvers(import_source):
    module = import_source(
        "two_resolvers_mod",
        """
        from dataclasses import dataclass
        from pydantic import BaseModel
        from flink_job import State
        from flink_job.features import Features, features
        from flink_job.streams import KafkaSource, stream

        class Ev(BaseModel):
            user_id: str

        @features
        class U:
            id: str
            a: int
            b: int

        @dataclass
        class N:
            n: int = 0

        src = KafkaSource(name="ev")

        @stream(source=src, keys={"user_id": U.id})
        def first(e: Ev, state: State[N]) -> Features[U.a]:
            state.n += 1
            return U(a=state.n)

        @stream(source=src, keys={"user_id": U.id})
        def second(e: Ev) -> Features[U.b]:
            return U(b=0)
        """,
    )
    result = replay(module, [{"user_id": "u1"}, {"user_id": "u1"}])
    assert result.rows == [
        {"u.id": "u1", "u.a": 1},
        {"u.id": "u1", "u.b": 0},
        {"u.id": "u1", "u.a": 2},
        {"u.id": "u1", "u.b": 0},
    ]
    assert result.states == {"u1": module.N(2)}
    assert {r.resolver for r in result.records} == {"first", "second"}


def test_examples_logins_replays_as_in_the_spec():
    from examples import logins

    result = replay(
        logins,
        [
            logins.LoginEvent(user_id="u1", ip_address="1.1.1.1"),
            logins.LoginEvent(user_id="u1", ip_address="2.2.2.2"),
        ],
    )
    assert result.rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
    ]
    assert result.states == {"u1": logins.LoginState({"1.1.1.1", "2.2.2.2"})}
