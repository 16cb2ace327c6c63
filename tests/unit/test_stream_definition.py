"""@stream: what a definition records, initial-state rules and definition-time errors."""

# The API's own idiom is a state default in the signature (`state: State[T] = T(...)`), and
# some cases here pass wrong defaults on purpose.
# ruff: noqa: B006, B008

import dataclasses
import datetime as dt
import inspect
from dataclasses import dataclass, field

import pydantic
import pytest
from pydantic import BaseModel

from flink_job import (
    FlinkJobError,
    KafkaSource,
    Resolver,
    ResolverDefinitionError,
    State,
    StateSchemaError,
)
from flink_job.features import Features, features
from flink_job.streams import stream

SOURCE = KafkaSource(name="logins")


class LoginEvent(BaseModel):
    user_id: str
    ip_address: str


class Device(BaseModel):
    id: str
    owner_id: str | None = None


class DeviceEvent(BaseModel):
    device: Device
    ts: str


@dataclass
class ClickEvent:
    user_id: str
    url: str


@features
class User:
    id: str
    unique_ip_count: int


@features
class Org:
    id: str


@dataclass
class LoginState:
    unique_ips: set[str] = field(default_factory=set)


class ModelState(BaseModel):
    unique_ips: set[str] = set()
    logins: int = 0


@dataclass
class NeedsArgs:
    unique_ips: set[str]
    count: int


class Opaque:
    """Not a dataclass, not a model: state cannot store it."""


# --- what a definition records -----------------------------------------------------------------


class TimedLogin(BaseModel):
    user_id: str
    ip_address: str
    ts: dt.datetime


def test_stream_records_source_keys_state_output_timestamp_owner_and_tags():
    @stream(
        source=SOURCE,
        keys={"user_id": User.id},
        timestamp="ts",
        owner="risk@example.com",
        tags=["team:risk"],
    )
    def track(
        event: TimedLogin, state: State[LoginState]
    ) -> Features[User.id, User.unique_ip_count]:
        return None

    assert isinstance(track, Resolver)
    assert track.name == "track"
    assert track.source is SOURCE
    assert track.message_param == "event"
    assert track.message_type is TimedLogin
    assert [(k.dotted, k.feature) for k in track.keys] == [("user_id", User.id)]
    assert track.state is not None
    assert track.state.param == "state"
    assert track.state.cls is LoginState
    assert track.output.allowed == frozenset({User.id, User.unique_ip_count})
    assert track.output.primary == User.id
    assert track.timestamp == "ts"
    assert track.owner == "risk@example.com"
    assert track.tags == ("team:risk",)
    assert "track" in repr(track) and "logins" in repr(track)


def test_name_argument_overrides_the_function_name():
    @stream(source=SOURCE, name="unique_ips_v2")
    def track(event: LoginEvent) -> Features[User.id]:
        return None

    assert track.name == "unique_ips_v2"


def test_chalk_argument_environment_is_recorded_and_mode_is_refused():
    @stream(source=SOURCE, environment=["prod"])
    def track(event: LoginEvent) -> Features[User.id]:
        return None

    assert track.name == "track"
    assert track.environments == ("prod",)
    with pytest.raises(ResolverDefinitionError, match=r"resolver 'windowed': mode='continuous'"):

        @stream(source=SOURCE, mode="continuous", keys={"user_id": User.id})
        def windowed(event: LoginEvent) -> Features[User.id]:
            return None


def test_return_annotation_may_be_a_features_class():
    @stream(source=SOURCE)
    def track(event: LoginEvent) -> User:
        return None

    assert track.output.allowed == frozenset({User.id, User.unique_ip_count})


def test_optional_return_annotation_is_accepted():
    @stream(source=SOURCE)
    def track(event: LoginEvent) -> User | None:
        return None

    assert track.output.allowed == frozenset({User.id, User.unique_ip_count})


def test_key_features_are_allowed_in_the_output_even_if_not_listed():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def track(event: LoginEvent) -> Features[User.unique_ip_count]:
        return None

    assert User.id in track.output.allowed
    assert track.output.primary == User.id


def test_nested_key_path_through_models_and_optional_fields():
    @stream(source=SOURCE, keys={"device.owner_id": User.id})
    def track(event: DeviceEvent) -> Features[User.id]:
        return None

    assert track.keys[0].path == ("device", "owner_id")
    assert track.keys[0].dotted == "device.owner_id"


def test_dataclass_message_with_keys():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def clicks(event: ClickEvent) -> Features[User.id]:
        return None

    assert clicks.message_type is ClickEvent


@pytest.mark.parametrize("mtype", [str, bytes])
def test_str_and_bytes_messages_are_accepted_without_keys(mtype):
    @stream(source=SOURCE)
    def raw(event: mtype) -> Features[User.id]:  # type: ignore[valid-type]
        return None

    assert raw.message_type is mtype
    assert raw.keys == ()


def test_stateless_resolver_has_no_state_spec():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def stateless(event: LoginEvent) -> Features[User.id]:
        return None

    assert stateless.state is None


def test_parse_records_its_input_type():
    class Envelope(BaseModel):
        payload: str

    def unwrap(env: Envelope) -> LoginEvent | None:
        return LoginEvent.model_validate_json(env.payload)

    @stream(source=SOURCE, parse=unwrap, keys={"user_id": User.id})
    def track(event: LoginEvent) -> Features[User.id]:
        return None

    assert track.parse is unwrap
    assert track.parse_input is Envelope


def test_parse_without_annotation_takes_bytes():
    @stream(source=SOURCE, parse=lambda raw: None)
    def track(event: LoginEvent) -> Features[User.id]:
        return None

    assert track.parse_input is bytes


def test_extra_parameters_are_refused_even_with_defaults():
    # Chalk refuses them too; the engine would have nothing to pass (issue 12).
    with pytest.raises(ResolverDefinitionError) as info:

        @stream(source=SOURCE)
        def track(event: LoginEvent, state: State[LoginState], debug: bool = False) -> User:
            return None

    assert info.value.resolver == "track" and info.value.field == "debug"
    assert "'debug'" in str(info.value) and "fix:" in str(info.value)


# --- a decorated resolver stays a plain callable -----------------------------------------------


@stream(source=SOURCE, keys={"user_id": User.id})
def track_unique_ips(
    event: LoginEvent, state: State[LoginState]
) -> Features[User.id, User.unique_ip_count]:
    """Count unique IPs."""
    state.unique_ips.add(event.ip_address)
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))


def test_decorated_resolver_called_directly_runs_the_body():
    state = LoginState()
    out = track_unique_ips(LoginEvent(user_id="u1", ip_address="1.1.1.1"), state)
    assert out == User(id="u1", unique_ip_count=1)
    out = track_unique_ips(LoginEvent(user_id="u1", ip_address="2.2.2.2"), state)
    assert out == User(id="u1", unique_ip_count=2)
    assert state.unique_ips == {"1.1.1.1", "2.2.2.2"}


def test_decorated_resolver_accepts_keyword_arguments_and_keeps_metadata():
    out = track_unique_ips(
        event=LoginEvent(user_id="u2", ip_address="9.9.9.9"), state=LoginState({"1.1.1.1"})
    )
    assert out == User(id="u2", unique_ip_count=2)
    assert track_unique_ips.__name__ == "track_unique_ips"
    assert track_unique_ips.__doc__ == "Count unique IPs."
    assert list(inspect.signature(track_unique_ips).parameters) == ["event", "state"]


def test_decorated_resolver_propagates_exceptions_when_called_directly():
    @stream(source=SOURCE)
    def boom(event: LoginEvent) -> User:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        boom(LoginEvent(user_id="u", ip_address="i"))


# --- initial state -----------------------------------------------------------------------------


def test_initial_state_is_t_when_there_is_no_default():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def track(event: LoginEvent, state: State[LoginState]) -> User:
        return None

    first, second = track.state.initial(), track.state.initial()
    assert first == LoginState() == second
    assert first is not second
    assert first.unique_ips is not second.unique_ips


def test_initial_state_for_a_pydantic_model_is_t_when_there_is_no_default():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def track(event: LoginEvent, state: State[ModelState]) -> User:
        return None

    first, second = track.state.initial(), track.state.initial()
    assert first == ModelState(unique_ips=set(), logins=0)
    first.unique_ips.add("x")
    assert second.unique_ips == set()


def test_initial_state_is_a_deep_copy_of_the_default_per_key():
    default = NeedsArgs(unique_ips={"0.0.0.0"}, count=1)

    @stream(source=SOURCE, keys={"user_id": User.id})
    def track(event: LoginEvent, state: State[NeedsArgs] = default) -> User:
        return None

    first, second = track.state.initial(), track.state.initial()
    assert first == default == second
    assert first is not default and second is not first
    first.unique_ips.add("1.1.1.1")
    first.count += 1
    assert second.unique_ips == {"0.0.0.0"}
    assert default == NeedsArgs(unique_ips={"0.0.0.0"}, count=1)


def test_default_wins_over_the_no_argument_constructor():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def track(
        event: LoginEvent, state: State[LoginState] = LoginState(unique_ips={"seed"})
    ) -> User:
        return None

    assert track.state.initial() == LoginState(unique_ips={"seed"})


def test_default_may_be_a_subclass_instance_of_t():
    @dataclass
    class Special(LoginState):
        pass

    @stream(source=SOURCE, keys={"user_id": User.id})
    def track(event: LoginEvent, state: State[LoginState] = Special()) -> User:
        return None

    assert isinstance(track.state.initial(), Special)


def test_state_parameter_may_come_first():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def track(state: State[LoginState], event: LoginEvent) -> User:
        return None

    assert track.message_param == "event"
    assert track.state.param == "state"


# --- definition-time errors --------------------------------------------------------------------


class SeedLoginState(BaseModel):
    unique_ips: set[str] = 0  # the seed's bug: not a set (pydantic does not check defaults)


def _seed_model_default():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def track_unique_ips(
        event: LoginEvent, state: State[SeedLoginState]
    ) -> Features[User.id, User.unique_ip_count]:
        return None


def _dataclass_default_violates_schema():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def bad_default_field(
        event: LoginEvent, state: State[LoginState] = LoginState(unique_ips=0)
    ) -> User:
        return None


def _model_default_violates_schema():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def bad_model_default(
        event: LoginEvent,
        state: State[ModelState] = ModelState.model_construct(unique_ips=set(), logins="many"),
    ) -> User:
        return None


def _default_not_a_t():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def wrong_default(event: LoginEvent, state: State[LoginState] = {"unique_ips": []}) -> User:
        return None


def _no_default_and_t_fails():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def needs_args(event: LoginEvent, state: State[NeedsArgs]) -> User:
        return None


def _state_not_a_class():
    @stream(source=SOURCE)
    def not_a_class(event: LoginEvent, state: State["LoginState | None"]) -> User:
        return None


def _state_plain_class():
    @stream(source=SOURCE)
    def plain_state(event: LoginEvent, state: State[Opaque]) -> User:
        return None


def _state_field_unstorable():
    @dataclass
    class HoldsOpaque:
        thing: Opaque = None

    @stream(source=SOURCE)
    def opaque_field(event: LoginEvent, state: State[HoldsOpaque]) -> User:
        return None


def _two_states():
    @stream(source=SOURCE)
    def two_states(event: LoginEvent, a: State[LoginState], b: State[LoginState]) -> User:
        return None


def _extra_parameter():
    @stream(source=SOURCE)
    def extra(event: LoginEvent, state: State[LoginState], other: int) -> User:
        return None


def _no_message():
    @stream(source=SOURCE)
    def no_message(state: State[LoginState]) -> User:
        return None


def _unannotated_message():
    @stream(source=SOURCE)
    def unannotated(event) -> User:
        return None


def _message_wrong_type():
    @stream(source=SOURCE)
    def int_message(event: int) -> User:
        return None


def _no_return_annotation():
    @stream(source=SOURCE)
    def no_return(event: LoginEvent):
        return None


def _return_not_features():
    @stream(source=SOURCE)
    def returns_int(event: LoginEvent) -> int:
        return 1


def _source_not_kafka():
    @stream(source="logins")  # type: ignore[arg-type]
    def wrong_source(event: LoginEvent) -> User:
        return None


def _keys_empty():
    @stream(source=SOURCE, keys={})
    def empty_keys(event: LoginEvent) -> User:
        return None


def _keys_not_a_feature():
    @stream(source=SOURCE, keys={"user_id": "user.id"})  # type: ignore[dict-item]
    def key_str(event: LoginEvent) -> User:
        return None


def _keys_bad_path():
    @stream(source=SOURCE, keys={"user.id": User.id})
    def bad_path(event: LoginEvent) -> User:
        return None


def _keys_bad_nested_path():
    @stream(source=SOURCE, keys={"device.serial": User.id})
    def bad_nested(event: DeviceEvent) -> User:
        return None


def _keys_on_str_message():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def str_keys(event: str) -> User:
        return None


def _parse_not_callable():
    @stream(source=SOURCE, parse="json")  # type: ignore[arg-type]
    def parse_str(event: LoginEvent) -> User:
        return None


def _parse_two_args():
    def two(a: bytes, b: bytes) -> LoginEvent:
        return LoginEvent(user_id="u", ip_address="i")

    @stream(source=SOURCE, parse=two)
    def parse_arity(event: LoginEvent) -> User:
        return None


def _parse_wrong_input():
    def takes_int(raw: int) -> LoginEvent:
        return LoginEvent(user_id="u", ip_address="i")

    @stream(source=SOURCE, parse=takes_int)
    def parse_input(event: LoginEvent) -> User:
        return None


def _parse_wrong_return():
    def gives_device(raw: bytes) -> Device:
        return Device(id="d")

    @stream(source=SOURCE, parse=gives_device)
    def parse_return(event: LoginEvent) -> User:
        return None


def _unresolvable_annotation():
    @stream(source=SOURCE)
    def forward_ref(event: "NoSuchEvent") -> User:  # noqa: F821
        return None


def _not_a_function():
    stream(source=SOURCE)(42)  # type: ignore[arg-type]


# (trigger, resolver, field, texts the message must contain: names and what was received)
DEFINITION_ERRORS = [
    (_seed_model_default, "track_unique_ips", "unique_ips", ["'state'", "unique_ips", "got 0"]),
    (_dataclass_default_violates_schema, "bad_default_field", "unique_ips", ["'state'", "got 0"]),
    (_model_default_violates_schema, "bad_model_default", "logins", ["'state'", "'many'"]),
    (_default_not_a_t, "wrong_default", "state", ["'state'", "{'unique_ips': []}", "dict"]),
    (_no_default_and_t_fails, "needs_args", "unique_ips", ["'state'", "NeedsArgs()", "count"]),
    (_state_not_a_class, "not_a_class", "state", ["'state'", "LoginState | None"]),
    (_state_plain_class, "plain_state", "state", ["'state'", "Opaque"]),
    (_state_field_unstorable, "opaque_field", "thing", ["HoldsOpaque.thing", "Opaque"]),
    (_two_states, "two_states", "b", ["'a'", "'b'"]),
    (_extra_parameter, "extra", "other", ["'other'"]),
    (_no_message, "no_message", None, ["message parameter"]),
    (_unannotated_message, "unannotated", "event", ["'event'", "no type annotation"]),
    (_message_wrong_type, "int_message", "event", ["'event'", "int"]),
    (_no_return_annotation, "no_return", "return", ["return annotation"]),
    (_return_not_features, "returns_int", "return", ["<class 'int'>"]),
    (_source_not_kafka, "wrong_source", "source", ["'logins'"]),
    (_keys_empty, "empty_keys", "keys", ["keys=", "{}"]),
    (_keys_not_a_feature, "key_str", "user_id", ["keys['user_id']", "'user.id'"]),
    (_keys_bad_path, "bad_path", "user.id", ["'user.id'", "'user'"]),
    (_keys_bad_nested_path, "bad_nested", "device.serial", ["'device.serial'", "'serial'"]),
    (_keys_on_str_message, "str_keys", "keys", ["keys=", "str"]),
    (_parse_not_callable, "parse_str", "parse", ["parse=", "'json'"]),
    (_parse_two_args, "parse_arity", "parse", ["'two'", "2 arguments"]),
    (_parse_wrong_input, "parse_input", "parse", ["<class 'int'>"]),
    (_parse_wrong_return, "parse_return", "parse", ["Device", "LoginEvent"]),
    (_unresolvable_annotation, "forward_ref", None, ["NoSuchEvent"]),
    (_not_a_function, "42", None, ["got 42"]),
]


@pytest.mark.parametrize(
    ("trigger", "resolver", "field", "texts"),
    DEFINITION_ERRORS,
    ids=[case[0].__name__.strip("_") for case in DEFINITION_ERRORS],
)
def test_definition_error_names_resolver_field_what_was_received_and_the_fix(
    trigger, resolver, field, texts
):
    with pytest.raises(ResolverDefinitionError) as info:
        trigger()
    err = info.value
    message = str(err)
    assert isinstance(err, FlinkJobError)
    assert err.resolver == resolver
    assert err.field == field
    assert f"resolver {resolver!r}" in message
    if field is not None:
        assert field in message
    for text in texts:
        assert text in message, f"{text!r} not in: {message}"
    assert "fix:" in message.lower(), message


def test_seed_state_error_names_the_parameter_field_value_and_a_definition_time_fix():
    with pytest.raises(ResolverDefinitionError) as info:
        _seed_model_default()
    message = str(info.value)
    assert "parameter 'state' (State[SeedLoginState])" in message
    assert "SeedLoginState.unique_ips" in message
    assert "set[str]" in message
    # the fix is about the class, not about savepoints (nothing is restored at import time)
    assert "savepoint" not in message


def test_definition_errors_are_type_errors_and_not_state_schema_errors():
    with pytest.raises(TypeError):
        _dataclass_default_violates_schema()
    try:
        _seed_model_default()
    except FlinkJobError as e:
        assert not isinstance(e, StateSchemaError)


def test_definition_error_for_a_state_default_never_leaves_a_resolver_behind():
    namespace: dict[str, object] = {}
    with pytest.raises(ResolverDefinitionError):
        exec(
            "from flink_job import State\n"
            "@stream(source=SOURCE)\n"
            "def r(event: LoginEvent, state: State[LoginState] = LoginState(unique_ips=0))"
            " -> User:\n"
            "    return None\n",
            {**globals(), "__name__": "probe"},
            namespace,
        )
    assert "r" not in namespace


def test_dataclass_state_fields_are_checked_recursively_at_definition_time():
    @dataclass
    class Inner:
        n: int = 0

    @dataclass
    class Outer:
        inner: list[Inner] = dataclasses.field(default_factory=list)

    with pytest.raises(ResolverDefinitionError) as info:

        @stream(source=SOURCE)
        def nested_bad(
            event: LoginEvent, state: State[Outer] = Outer(inner=[Inner(n="x")])
        ) -> User:
            return None

    assert info.value.field == "inner"
    assert "inner.0.n" in str(info.value)


def test_returning_a_different_class_than_declared_is_allowed_only_when_listed():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def both(event: LoginEvent) -> Features[User.id, Org.id]:
        return None

    assert both.output.allowed == frozenset({User.id, Org.id})
    assert set(both.output.classes) == {User, Org}


def test_a_model_state_with_aliased_fields_is_accepted_as_a_default():
    class Aliased(BaseModel):
        count: int = pydantic.Field(alias="Count")

    @stream(source=SOURCE, keys={"user_id": User.id})
    def aliased(event: LoginEvent, state: State[Aliased] = Aliased(Count=1)) -> User:
        return None

    assert aliased.state.initial().count == 1


class _OddZone(dt.tzinfo):
    """A tzinfo class of the user's own: state cannot name it (only fixed offsets and IANA)."""

    def utcoffset(self, d: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=1)


def test_a_default_holding_a_value_state_cannot_store_is_a_definition_error():
    @dataclass
    class Seen:
        at: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=_OddZone())

    with pytest.raises(ResolverDefinitionError) as info:

        @stream(source=SOURCE, keys={"user_id": User.id})
        def seen(event: LoginEvent, state: State[Seen]) -> User:
            return None

    assert info.value.resolver == "seen"
    assert info.value.field == "state"
    assert "_OddZone" in str(info.value) and "fix:" in str(info.value)
