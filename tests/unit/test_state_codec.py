"""The state envelope: round trips, schema evolution, refusal of foreign pickles."""

import dataclasses
import datetime as dt
import enum
import io
import os
import pickle
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pydantic
import pytest
from pydantic import BaseModel

from flink_job import ResolverDefinitionError, StateSchemaError
from flink_job._state_codec import ENVELOPE_VERSION, StateCodec

# --- state classes -----------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: int
    y: int


class Tag(BaseModel):
    name: str
    at: dt.datetime


@dataclass
class Holder:
    """A dataclass holding a pydantic model: nesting in the other direction."""

    tag: Tag
    points: list[Point] = field(default_factory=list)


ZERO_UUID = uuid.UUID(int=0)


@dataclass
class Everything:
    ips: set[str] = field(default_factory=set)
    frozen: frozenset[int] = frozenset()
    when: dt.datetime = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    naive: dt.datetime = dt.datetime(2024, 1, 1)
    day: dt.date = dt.date(2024, 1, 1)
    clock: dt.time = dt.time(1, 2, 3)
    span: dt.timedelta = dt.timedelta(seconds=5)
    amount: Decimal = Decimal("0")
    ident: uuid.UUID = ZERO_UUID
    color: Color = Color.RED
    level: Level = Level.LOW
    points: list[Point] = field(default_factory=list)
    by_name: dict[str, Point] = field(default_factory=dict)
    tag: Tag | None = None
    tags: list[Tag] = field(default_factory=list)
    holder: Holder | None = None
    maybe: int | None = None
    pair: tuple[int, str] = (0, "")
    many: tuple[Point, ...] = ()
    nested: dict[str, list[set[int]]] = field(default_factory=dict)
    colors: set[Color] = field(default_factory=set)
    by_color: dict[Color, list[Decimal]] = field(default_factory=dict)
    blob: bytes = b""
    anything: Any = None
    plain_list: list = field(default_factory=list)


def full_everything() -> Everything:
    return Everything(
        ips={"1.1.1.1", "2.2.2.2"},
        frozen=frozenset({1, 2}),
        when=dt.datetime(2025, 2, 3, 4, 5, 6, 789, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        naive=dt.datetime(2025, 1, 1, 12, 0),
        day=dt.date(2025, 12, 31),
        clock=dt.time(23, 59, 59, 999),
        span=dt.timedelta(days=2, microseconds=3),
        amount=Decimal("3.14159265358979323846"),
        ident=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        color=Color.BLUE,
        level=Level.HIGH,
        points=[Point(1, 2), Point(3, 4)],
        by_name={"home": Point(5, 6)},
        tag=Tag(name="vip", at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)),
        tags=[Tag(name="a", at=dt.datetime(2021, 1, 1))],
        holder=Holder(tag=Tag(name="h", at=dt.datetime(2022, 2, 2)), points=[Point(7, 8)]),
        maybe=5,
        pair=(2, "b"),
        many=(Point(9, 10),),
        nested={"a": [{1, 2}, set()]},
        colors={Color.RED, Color.BLUE},
        by_color={Color.RED: [Decimal("1.5")]},
        blob=b"\x00\xff",
        anything={"k": [1, (2, 3)], "s": {"x"}},
        plain_list=[1, "a", None],
    )


class ModelState(BaseModel):
    ips: set[str] = set()
    seen_at: dict[str, dt.datetime] = {}
    points: list[Point] = []
    holder: Holder | None = None
    amount: Decimal = Decimal("0")
    color: Color = Color.RED
    pair: tuple[int, int] = (0, 0)


@dataclass
class Node:
    """A recursive state class."""

    name: str
    children: list["Node"] = field(default_factory=list)


def assert_same_values(a: Any, b: Any) -> None:
    """Equal, and of the same types field by field (a set stays a set, an enum an enum)."""
    assert a == b
    assert type(a) is type(b)
    names = (
        type(a).model_fields
        if isinstance(a, BaseModel)
        else [f.name for f in dataclasses.fields(a)]
    )
    for name in names:
        x, y = getattr(a, name), getattr(b, name)
        assert x == y, name
        assert type(x) is type(y), f"{name}: {type(x)} != {type(y)}"


def evolved(cls: type, name: str = "AppState") -> type:
    """Give a class a fixed identity, as if it were the same class in two versions of an app."""
    cls.__qualname__ = cls.__name__ = name
    cls.__module__ = "app.state"
    return cls


# --- round trips -------------------------------------------------------------------------------


def test_round_trip_keeps_every_supported_type():
    codec = StateCodec(Everything, "r")
    original = full_everything()
    back = codec.decode(codec.encode(original))
    assert back is not original
    assert_same_values(back, original)
    assert type(back.points[0]) is Point
    assert type(back.by_name["home"]) is Point
    assert type(back.tag) is Tag
    assert type(back.holder.tag) is Tag
    assert type(back.many[0]) is Point
    assert all(type(c) is Color for c in back.colors)
    assert type(next(iter(back.by_color))) is Color
    assert back.when.utcoffset() == dt.timedelta(hours=2)
    assert back.naive.tzinfo is None
    assert str(back.amount) == "3.14159265358979323846"


def test_round_trip_of_defaults_and_none_optionals():
    codec = StateCodec(Everything, "r")
    back = codec.decode(codec.encode(Everything()))
    assert_same_values(back, Everything())
    assert back.tag is None and back.holder is None and back.maybe is None


def test_round_trip_through_the_schema_evolution_path_keeps_every_type():
    old = StateCodec(evolved(dataclasses.make_dataclass("X", [("a", int)])), "r")
    data = StateCodec(Everything, "r").encode(full_everything())
    codec = StateCodec(Everything, "r")
    codec.fingerprint = old.fingerprint  # force the validating (slow) path
    back = codec.decode(data)
    assert_same_values(back, full_everything())
    assert type(back.holder.points[0]) is Point


def test_round_trip_of_a_pydantic_model_state():
    codec = StateCodec(ModelState, "r")
    original = ModelState(
        ips={"a"},
        seen_at={"a": dt.datetime(2024, 5, 5, 5, 5, tzinfo=dt.UTC)},
        points=[Point(1, 1)],
        holder=Holder(tag=Tag(name="t", at=dt.datetime(2024, 1, 1)), points=[]),
        amount=Decimal("10.01"),
        color=Color.BLUE,
        pair=(1, 2),
    )
    back = codec.decode(codec.encode(original))
    assert_same_values(back, original)
    back.ips.add("b")  # the decoded state is a normal, mutable model
    assert back.ips == {"a", "b"}
    assert original.ips == {"a"}


def test_round_trip_of_a_recursive_state_class():
    codec = StateCodec(Node, "r")
    tree = Node("root", [Node("a", [Node("a1")]), Node("b")])
    back = codec.decode(codec.encode(tree))
    assert back == tree
    assert type(back.children[0].children[0]) is Node


def test_decoded_states_do_not_share_objects():
    codec = StateCodec(Everything, "r")
    data = codec.encode(full_everything())
    first, second = codec.decode(data), codec.decode(data)
    first.ips.add("9.9.9.9")
    first.points[0].x = 100
    assert "9.9.9.9" not in second.ips
    assert second.points[0].x == 1


@dataclass
class Shared:
    a: list[str] = field(default_factory=list)
    b: list[str] = field(default_factory=list)
    anything: Any = None


def test_state_is_stored_by_value_and_a_cycle_is_refused():
    codec = StateCodec(Shared, "r")
    tags = ["x", "y"]
    back = codec.decode(codec.encode(Shared(tags, tags)))
    assert back.a == back.b == tags and back.a is not back.b  # two equal values, not one
    # Old envelopes (written with the pickle memo, so with shared references) still decode.
    old = pickle.dumps(
        (ENVELOPE_VERSION, codec.fingerprint, {"a": tags, "b": tags, "anything": None})
    )
    assert codec.decode(old) == Shared(tags, tags)
    loop: list[Any] = ["z"]
    loop.append(loop)
    with pytest.raises((ValueError, RecursionError)):
        codec.encode(Shared(a=loop))  # list[str] is pickled as is: the pickler sees it
    assert codec.decode(codec.encode(Shared(["ok"]))) == Shared(["ok"])  # the encoder recovered


# --- the envelope ------------------------------------------------------------------------------


def test_envelope_is_version_fingerprint_and_plain_fields_not_the_class():
    codec = StateCodec(Everything, "r")
    data = codec.encode(full_everything())
    version, fingerprint, fields = pickle.loads(data)  # our own bytes: safe to load here
    assert version == ENVELOPE_VERSION
    assert fingerprint == codec.fingerprint
    assert list(fields) == [f.name for f in dataclasses.fields(Everything)]
    assert fields["points"] == [{"x": 1, "y": 2}, {"x": 3, "y": 4}]
    assert fields["color"] == "blue"
    assert fields["tag"]["name"] == "vip"
    # The only classes the bytes name are standard value types; none of the app's.
    named: set[tuple[str, str]] = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            named.add((module, name))
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    assert {module for module, _ in named} <= {"datetime", "decimal", "uuid"}
    for name in (b"Everything", b"Point", b"Tag", b"Color", b"test_state_codec"):
        assert name not in data


def test_fingerprint_is_stable_and_changes_with_the_schema():
    @dataclass
    class V1:
        a: int = 0

    @dataclass
    class V1Again:
        a: int = 0

    @dataclass
    class V2:
        a: int = 0
        b: str = ""

    evolved(V1), evolved(V1Again), evolved(V2)
    assert StateCodec(V1, "r").fingerprint == StateCodec(V1, "other").fingerprint
    assert StateCodec(V1, "r").fingerprint == StateCodec(V1Again, "r").fingerprint
    assert StateCodec(V1, "r").fingerprint != StateCodec(V2, "r").fingerprint


def test_fingerprint_changes_when_a_nested_class_or_enum_changes():
    class E1(enum.Enum):
        A = "a"

    class E2(enum.Enum):
        A = "a"
        B = "b"

    @dataclass
    class S1:
        e: E1 = E1.A

    @dataclass
    class S2:
        e: E2 = E2.A

    E2.__qualname__ = E1.__qualname__
    evolved(S1), evolved(S2)
    assert StateCodec(S1, "r").fingerprint != StateCodec(S2, "r").fingerprint


# --- schema evolution --------------------------------------------------------------------------


@dataclass
class LoginV1:
    unique_ips: set[str] = field(default_factory=set)
    last_ip: str = ""


@dataclass
class LoginV2Added:
    unique_ips: set[str] = field(default_factory=set)
    last_ip: str = ""
    logins: int = 7
    first_seen: dt.datetime | None = None
    tags: list[str] = field(default_factory=lambda: ["new"])


@dataclass
class LoginV2Removed:
    unique_ips: set[str] = field(default_factory=set)


@dataclass
class LoginV2StrToInt:
    unique_ips: set[str] = field(default_factory=set)
    last_ip: int = 0


@dataclass
class LoginV2Required:
    country: str
    unique_ips: set[str] = field(default_factory=set)
    last_ip: str = ""


class LoginV2Model(BaseModel):
    unique_ips: set[str] = set()
    last_ip: str = ""
    logins: int = 3


for _cls in (LoginV1, LoginV2Added, LoginV2Removed, LoginV2StrToInt, LoginV2Required, LoginV2Model):
    evolved(_cls, "LoginState")


@pytest.fixture
def old_bytes() -> bytes:
    return StateCodec(LoginV1, "track_unique_ips").encode(
        LoginV1(unique_ips={"1.1.1.1", "2.2.2.2"}, last_ip="abc")
    )


def test_a_field_added_with_a_default_takes_its_default(old_bytes):
    state = StateCodec(LoginV2Added, "track_unique_ips").decode(old_bytes)
    assert state == LoginV2Added(
        unique_ips={"1.1.1.1", "2.2.2.2"},
        last_ip="abc",
        logins=7,
        first_seen=None,
        tags=["new"],
    )
    assert type(state) is LoginV2Added
    assert type(state.unique_ips) is set


def test_a_removed_field_is_dropped(old_bytes):
    state = StateCodec(LoginV2Removed, "track_unique_ips").decode(old_bytes)
    assert state == LoginV2Removed(unique_ips={"1.1.1.1", "2.2.2.2"})
    assert not hasattr(state, "last_ip")


def test_a_dataclass_state_can_become_a_pydantic_model(old_bytes):
    state = StateCodec(LoginV2Model, "track_unique_ips").decode(old_bytes)
    assert state == LoginV2Model(unique_ips={"1.1.1.1", "2.2.2.2"}, last_ip="abc", logins=3)


def test_a_compatible_type_change_converts_the_stored_value():
    @dataclass
    class Counter:
        total: int = 0

    @dataclass
    class CounterFloat:
        total: float = 0.0

    evolved(Counter), evolved(CounterFloat)
    data = StateCodec(Counter, "r").encode(Counter(total=3))
    state = StateCodec(CounterFloat, "r").decode(data)
    assert state.total == 3.0 and type(state.total) is float


def test_a_nested_class_gaining_a_field_with_a_default_restores():
    @dataclass
    class Visit:
        url: str

    @dataclass
    class VisitV2:
        url: str
        ms: int = -1

    @dataclass
    class Visits:
        visits: list[Visit] = field(default_factory=list)

    @dataclass
    class VisitsV2:
        visits: list[VisitV2] = field(default_factory=list)

    evolved(Visit, "Visit"), evolved(VisitV2, "Visit"), evolved(Visits), evolved(VisitsV2)
    data = StateCodec(Visits, "r").encode(Visits([Visit("/a"), Visit("/b")]))
    state = StateCodec(VisitsV2, "r").decode(data)
    assert state == VisitsV2([VisitV2("/a", -1), VisitV2("/b", -1)])


def test_an_incompatible_type_change_fails_naming_resolver_field_and_stored_value(old_bytes):
    with pytest.raises(StateSchemaError) as info:
        StateCodec(LoginV2StrToInt, "track_unique_ips").decode(old_bytes)
    err = info.value
    assert err.resolver == "track_unique_ips"
    assert err.field == "last_ip"
    message = str(err)
    assert "'track_unique_ips'" in message
    assert "LoginState.last_ip" in message
    assert "'abc'" in message
    assert "fix:" in message


def test_a_new_field_without_default_fails_naming_resolver_and_field(old_bytes):
    with pytest.raises(StateSchemaError) as info:
        StateCodec(LoginV2Required, "track_unique_ips").decode(old_bytes)
    err = info.value
    assert err.resolver == "track_unique_ips"
    assert err.field == "country"
    assert "LoginState.country" in str(err)
    assert "missing" in str(err)


def test_an_incompatible_change_inside_a_nested_class_names_the_top_level_field():
    @dataclass
    class P1:
        x: str

    @dataclass
    class P2:
        x: int

    @dataclass
    class S1:
        where: list[P1] = field(default_factory=list)

    @dataclass
    class S2:
        where: list[P2] = field(default_factory=list)

    evolved(P1, "P"), evolved(P2, "P"), evolved(S1), evolved(S2)
    data = StateCodec(S1, "r").encode(S1([P1("north")]))
    with pytest.raises(StateSchemaError) as info:
        StateCodec(S2, "r").decode(data)
    assert info.value.field == "where"
    assert "where.0.x" in str(info.value)


def test_enum_value_removed_fails_with_state_schema_error():
    class E1(enum.Enum):
        A = "a"
        B = "b"

    class E2(enum.Enum):
        A = "a"

    @dataclass
    class S1:
        e: E1 = E1.A

    @dataclass
    class S2:
        e: E2 = E2.A

    evolved(S1), evolved(S2)
    data = StateCodec(S1, "r").encode(S1(E1.B))
    with pytest.raises(StateSchemaError) as info:
        StateCodec(S2, "r").decode(data)
    assert info.value.field == "e"


def test_evolution_across_real_module_versions(import_source):
    """Same module and class names, different code: as when an app is redeployed."""
    v1 = import_source(
        "app_state_mod",
        """
        from dataclasses import dataclass, field

        @dataclass
        class LoginState:
            unique_ips: set[str] = field(default_factory=set)
            legacy: str = "x"
        """,
        folder="v1",
    )
    data = StateCodec(v1.LoginState, "r").encode(v1.LoginState({"1.1.1.1"}, "old"))
    v2 = import_source(
        "app_state_mod",
        """
        from dataclasses import dataclass, field

        @dataclass
        class LoginState:
            unique_ips: set[str] = field(default_factory=set)
            count: int = 1
        """,
        folder="v2",
    )
    assert v2.LoginState is not v1.LoginState
    state = StateCodec(v2.LoginState, "r").decode(data)
    assert state == v2.LoginState(unique_ips={"1.1.1.1"}, count=1)


# --- bytes that are not ours -------------------------------------------------------------------


def test_garbage_bytes_fail_with_state_schema_error_naming_the_resolver():
    with pytest.raises(StateSchemaError) as info:
        StateCodec(LoginV1, "track_unique_ips").decode(b"not a pickle")
    assert info.value.resolver == "track_unique_ips"
    assert "track_unique_ips" in str(info.value)


def test_unknown_envelope_version_fails_with_state_schema_error():
    codec = StateCodec(LoginV1, "r")
    data = pickle.dumps((ENVELOPE_VERSION + 1, codec.fingerprint, {"unique_ips": set()}))
    with pytest.raises(StateSchemaError, match="envelope version"):
        codec.decode(data)


CALLS: list[str] = []


def record_call(what: str) -> str:
    CALLS.append(what)
    return what


class RunsSystem:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class CallsBack:
    def __reduce__(self):
        return (record_call, ("called back",))


class EvalsCode:
    def __reduce__(self):
        return (eval, ("__import__('tests').__dict__.setdefault('PWNED', True)",))


@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("where", ["whole", "inside_fields"])
def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path, protocol, where):
    codec = StateCodec(LoginV1, "track_unique_ips")
    marker = tmp_path / "pwned"
    payloads = [RunsSystem(f"touch {marker}"), CallsBack(), EvalsCode()]
    CALLS.clear()
    for payload in payloads:
        if where == "whole":
            data = pickle.dumps(payload, protocol=protocol)
        else:
            envelope = (ENVELOPE_VERSION, codec.fingerprint, {"unique_ips": payload})
            data = pickle.dumps(envelope, protocol=protocol)
        with pytest.raises(StateSchemaError) as info:
            codec.decode(data)
        assert info.value.resolver == "track_unique_ips"
        assert "refused" in str(info.value)
    assert not marker.exists()
    assert CALLS == []
    import tests

    assert not hasattr(tests, "PWNED")


def test_a_pickled_user_class_is_refused_even_with_a_matching_fingerprint():
    codec = StateCodec(LoginV1, "r")
    fields = {"unique_ips": {"a"}, "last_ip": Point(1, 2)}
    data = pickle.dumps((ENVELOPE_VERSION, codec.fingerprint, fields), protocol=5)
    with pytest.raises(StateSchemaError) as info:
        codec.decode(data)
    assert "test_state_codec.Point" in str(info.value) and "refused" in str(info.value)


def test_a_pickle_naming_builtins_getattr_is_refused():
    codec = StateCodec(LoginV1, "r")
    # GLOBAL builtins getattr; the unpickler must refuse before anything is called.
    data = b"cbuiltins\ngetattr\n(cos\nsystem\nS'x'\ntR."
    with pytest.raises(StateSchemaError, match="refused"):
        codec.decode(data)


# --- what can be stored ------------------------------------------------------------------------


def test_encode_refuses_a_value_the_decoder_would_refuse():
    """A user object smuggled into a typed field fails at encode, never at the next decode."""

    class Foreign:
        pass

    codec = StateCodec(LoginV1, "r")
    state = LoginV1(unique_ips={"1.1.1.1"})
    state.unique_ips.add(Foreign())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Foreign"):
        codec.encode(state)


def test_encode_refuses_a_str_enum_member_in_a_str_set():
    class Kind(enum.StrEnum):
        A = "a"

    codec = StateCodec(LoginV1, "r")
    with pytest.raises(TypeError, match="Kind"):
        codec.encode(LoginV1(unique_ips={Kind.A}))  # type: ignore[arg-type]


def test_encode_refuses_an_unstorable_value_in_an_any_field():
    @dataclass
    class Loose:
        anything: Any = None

    with pytest.raises(TypeError, match="cannot be stored"):
        StateCodec(Loose, "r").encode(Loose(anything=io.BytesIO()))


def test_encode_refuses_a_fixed_tuple_of_the_wrong_length_instead_of_truncating():
    @dataclass
    class Pair:
        pair: tuple[int, Point] = (0, Point(0, 0))

    codec = StateCodec(Pair, "r")
    with pytest.raises(ValueError):
        codec.encode(Pair(pair=(1, Point(1, 1), 3)))  # type: ignore[arg-type]


def test_state_class_must_be_a_dataclass_or_a_model():
    with pytest.raises(ResolverDefinitionError) as info:
        StateCodec(dict, "r", "state")
    assert info.value.resolver == "r" and info.value.field == "state"


def test_unsupported_field_type_is_a_definition_error_naming_the_field():
    @dataclass
    class WithFile:
        handle: io.BytesIO = None

    with pytest.raises(ResolverDefinitionError) as info:
        StateCodec(WithFile, "r")
    assert info.value.field == "handle"
    assert "WithFile.handle" in str(info.value)
    assert "fix:" in str(info.value)


def test_codec_lists_the_state_fields():
    assert StateCodec(LoginV1, "r").field_names == ["unique_ips", "last_ip"]


def test_pydantic_validation_error_is_not_leaked_to_callers(old_bytes):
    try:
        StateCodec(LoginV2StrToInt, "r").decode(old_bytes)
    except StateSchemaError as e:
        assert not isinstance(e, pydantic.ValidationError)
        assert e.__cause__ is None


# --- pydantic specifics ------------------------------------------------------------------------


def test_an_aliased_model_field_keeps_its_value_through_schema_evolution():
    class V1(BaseModel):
        count: int = pydantic.Field(0, alias="Count")

    class V2(BaseModel):
        count: int = pydantic.Field(0, alias="Count")
        added: str = "new"

    evolved(V1), evolved(V2)
    data = StateCodec(V1, "r").encode(V1(Count=5))
    state = StateCodec(V2, "r").decode(data)
    assert state.count == 5
    assert state.added == "new"


def test_a_field_removed_from_a_nested_strict_model_is_dropped():
    class Inner1(BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        a: int
        gone: str

    class Inner2(BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        a: int

    class Outer1(BaseModel):
        inner: Inner1

    class Outer2(BaseModel):
        inner: Inner2

    evolved(Inner1, "Inner"), evolved(Inner2, "Inner"), evolved(Outer1), evolved(Outer2)
    data = StateCodec(Outer1, "r").encode(Outer1(inner=Inner1(a=1, gone="x")))
    assert StateCodec(Outer2, "r").decode(data) == Outer2(inner=Inner2(a=1))
