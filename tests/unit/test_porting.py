"""Porting real Chalk resolvers (issue 12): parameter binding, timezone-aware state, and what
every argument and name of chalkpy 2.123's stream(), @features/feature, KafkaSource, State,
DataFrame, FeatureTime and Primary does here."""

# The API's own idiom is a state default in the signature (`state: State[T] = T(...)`).
# ruff: noqa: B008

import dataclasses
import datetime as dt
import warnings
import zoneinfo
from dataclasses import dataclass, field

import pydantic
import pytest
from pydantic import BaseModel

from flink_job import (
    ConfigError,
    DataFrame,
    FeatureTime,
    KafkaSource,
    KeyedState,
    ResolverDefinitionError,
    State,
    feature,
)
from flink_job._state_codec import StateCodec
from flink_job.describe import describe_resolvers
from flink_job.errors import IgnoredArgumentWarning
from flink_job.features import Features, Primary, features
from flink_job.loader import for_environment
from flink_job.streams import stream
from flink_job.testing import RawMessage, replay

SOURCE = KafkaSource(name="logins")
UTC = dt.UTC


class LoginEvent(BaseModel):
    user_id: str
    ip_address: str


class TimedLogin(BaseModel):
    user_id: str
    at: dt.datetime


@features
class User:
    id: str
    unique_ip_count: int


@dataclass
class LoginState:
    unique_ips: set[str] = field(default_factory=set)


def ms(d: dt.datetime) -> int:
    return int(d.timestamp() * 1000)


LOGINS = [
    {"user_id": "u1", "ip_address": "1.1.1.1"},
    {"user_id": "u2", "ip_address": "1.1.1.1"},
    {"user_id": "u1", "ip_address": "2.2.2.2"},
]
EXPECTED = [
    {"user.id": "u1", "user.unique_ip_count": 1},
    {"user.id": "u2", "user.unique_ip_count": 1},
    {"user.id": "u1", "user.unique_ip_count": 2},
]


# --- bug 1: the state is bound by parameter name ----------------------------------------------


def test_state_declared_before_the_message_is_bound_by_name():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def state_first(state: State[LoginState], ev: LoginEvent) -> User:
        state.unique_ips.add(ev.ip_address)
        return User(id=ev.user_id, unique_ip_count=len(state.unique_ips))

    result = replay(state_first, LOGINS)
    assert result.dead_letters == []
    assert result.rows == EXPECTED
    assert result.states == {
        "u1": LoginState({"1.1.1.1", "2.2.2.2"}),
        "u2": LoginState({"1.1.1.1"}),
    }


def test_keyword_only_state_is_bound_by_name():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def kw_state(ev: LoginEvent, *, state: State[LoginState]) -> User:
        state.unique_ips.add(ev.ip_address)
        return User(id=ev.user_id, unique_ip_count=len(state.unique_ips))

    result = replay(kw_state, LOGINS)
    assert result.dead_letters == []
    assert result.rows == EXPECTED


def test_positional_only_message_and_keyword_state_are_bound():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def pos_only(ev: LoginEvent, /, *, state: State[LoginState] = LoginState()) -> User:
        state.unique_ips.add(ev.ip_address)
        return User(id=ev.user_id, unique_ip_count=len(state.unique_ips))

    assert replay(pos_only, LOGINS).rows == EXPECTED


def test_a_parameter_between_message_and_state_is_refused_at_definition():
    # It used to receive the state object, while the resolver mutated the shared default.
    with pytest.raises(ResolverDefinitionError) as info:

        @stream(source=SOURCE, keys={"user_id": User.id})
        def verbose_one(
            ev: LoginEvent, verbose: bool = False, state: State[LoginState] = LoginState()
        ) -> User:
            return None

    e = info.value
    assert (e.resolver, e.field) == ("verbose_one", "verbose")
    assert str(e).startswith("resolver 'verbose_one': parameter 'verbose' is neither")
    assert "fix:" in str(e) and "\n" not in str(e)


def test_two_message_parameters_are_refused_at_definition():
    with pytest.raises(ResolverDefinitionError, match=r"'two': has two message parameters") as info:

        @stream(source=SOURCE)
        def two(ev: LoginEvent, other: LoginEvent) -> User:
            return None

    assert info.value.field == "other" and "fix:" in str(info.value)


@pytest.mark.parametrize("stars", ["*args", "**kwargs"])
def test_star_parameters_are_refused_at_definition(stars):
    ns: dict[str, object] = {}
    exec(
        f"def starred(ev: LoginEvent, {stars}) -> User:\n    return None",
        {"LoginEvent": LoginEvent, "User": User},
        ns,
    )
    with pytest.raises(ResolverDefinitionError, match=r"resolver 'starred': parameter \*") as info:
        stream(source=SOURCE)(ns["starred"])  # type: ignore[arg-type]  # built by exec
    assert info.value.field == stars.lstrip("*") and "fix:" in str(info.value)


# --- bug 2: timezone-aware datetimes in state -------------------------------------------------


class SeenState(BaseModel):
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    local: list[dt.datetime] = []


@stream(source=SOURCE, keys={"user_id": User.id})
def seen(ev: TimedLogin, state: State[SeenState]) -> User:
    state.first = state.first or ev.at
    state.last = ev.at
    state.local.append(ev.at.astimezone(zoneinfo.ZoneInfo("Europe/Berlin")))
    return User(id=ev.user_id, unique_ip_count=len(state.local))


def test_aware_datetimes_from_pydantic_and_zoneinfo_are_stored_exactly():
    result = replay(
        seen,
        [
            b'{"user_id": "u1", "at": "2024-01-01T00:00:00Z"}',
            b'{"user_id": "u1", "at": "2024-10-27T02:30:00.123456+02:00"}',
            b'{"user_id": "u1", "at": "2024-10-27T01:30:00+00:00"}',  # 02:30 Berlin, 2nd time
        ],
    )
    assert result.dead_letters == []
    (state,) = result.states.values()
    assert state.first == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert state.first.utcoffset() == dt.timedelta(0)
    assert state.last.utcoffset() == dt.timedelta(0)
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    assert [d.tzinfo for d in state.local] == [berlin] * 3
    assert [(d.hour, d.minute, d.fold) for d in state.local] == [(1, 0, 0), (2, 30, 0), (2, 30, 1)]
    assert state.local[1].microsecond == 123456
    assert [d.utcoffset() for d in state.local] == [dt.timedelta(hours=h) for h in (1, 2, 1)]


def test_a_fixed_offset_keeps_its_offset_not_just_the_instant():
    result = replay(seen, [b'{"user_id": "u1", "at": "2024-06-01T10:00:00+05:30"}'])
    (state,) = result.states.values()
    assert state.first.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert (state.first.hour, state.first.minute) == (10, 0)


def test_a_pydantic_state_default_given_as_an_aware_string_is_accepted_and_typed():
    class Since(BaseModel):
        since: dt.datetime = "2024-01-01T00:00:00Z"  # type: ignore[assignment]  # pydantic idiom

    @stream(source=SOURCE, keys={"user_id": User.id})
    def since(ev: LoginEvent, state: State[Since]) -> User:
        return User(id=ev.user_id, unique_ip_count=state.since.year)

    assert since.state is not None
    initial = since.state.initial()
    assert initial.since == dt.datetime(2024, 1, 1, tzinfo=UTC)
    assert replay(since, LOGINS[:1]).rows == [{"user.id": "u1", "user.unique_ip_count": 2024}]


@dataclass
class Seen:
    at: dt.datetime | None = None
    naive: dt.datetime | None = None
    history: list[dt.datetime] = field(default_factory=list)


# What `main` (a172e3e, before issue 12) stored for Seen(at=12:00 UTC, naive=12:00,
# history=[2024-03-01 +02:00]): stored state must keep restoring.
MAIN_ENVELOPE = bytes.fromhex(
    "800595c5000000000000004b018c1039663664613134626332336566303536947d94288c026174948c08646174"
    "6574696d65948c086461746574696d65949394430a07e801010c00000000009468038c0874696d657a6f6e6594"
    "939468038c0974696d6564656c74619493944b004b004b008794529485945294869452948c056e61697665946805"
    "430a07e801010c000000000094859452948c07686973746f7279945d946805430a07e803010000000000009468"
    "08680a4b004d201c4b00879452948594529486945294617587942e"
)


def test_state_stored_by_the_previous_release_still_decodes():
    back = StateCodec(Seen, "r").decode(MAIN_ENVELOPE)
    assert back == Seen(
        at=dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
        naive=dt.datetime(2024, 1, 1, 12),
        history=[dt.datetime(2024, 3, 1, tzinfo=dt.timezone(dt.timedelta(hours=2)))],
    )
    assert back.history[0].utcoffset() == dt.timedelta(hours=2)


# --- bug 3: replay sends model instances by alias ----------------------------------------------


class AliasedLogin(BaseModel):
    user_id: str = pydantic.Field(alias="userId")
    ip_address: str = pydantic.Field(alias="ipAddress")


def test_replay_of_model_instances_with_aliased_fields():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def aliased(ev: AliasedLogin, state: State[LoginState]) -> User:
        state.unique_ips.add(ev.ip_address)
        return User(id=ev.user_id, unique_ip_count=len(state.unique_ips))

    result = replay(aliased, [AliasedLogin(userId="u1", ipAddress="1.1.1.1")])
    assert result.dead_letters == []
    assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 1}]


# --- stream(): every chalk argument -----------------------------------------------------------


def test_machine_type_and_updates_materialized_aggregations_are_accepted_listed_and_warned():
    with pytest.warns(IgnoredArgumentWarning) as caught:

        @stream(source=SOURCE, machine_type="ml.large", updates_materialized_aggregations=False)
        def placed(ev: LoginEvent) -> User:
            return User(id=ev.user_id)

    texts = [str(w.message) for w in caught]
    assert any("'placed': machine_type='ml.large'" in t for t in texts)
    assert any("updates_materialized_aggregations=False" in t for t in texts)
    (described,) = describe_resolvers([placed])
    assert described["ignored"] == {
        "machine_type": "'ml.large'",
        "updates_materialized_aggregations": "False",
    }
    assert replay(placed, [("k", LOGINS[0])]).rows == [{"user.id": "u1"}]


def test_the_default_of_updates_materialized_aggregations_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")

        @stream(source=SOURCE, updates_materialized_aggregations=True)
        def quiet(ev: LoginEvent) -> User:
            return None

    assert quiet.ignored == {}


@pytest.mark.parametrize("mode", ["continuous", "tumbling"])
def test_mode_is_refused_in_one_line(mode):
    with pytest.raises(ResolverDefinitionError) as info:

        @stream(source=SOURCE, mode=mode, keys={"user_id": User.id})
        def windowed(ev: LoginEvent) -> User:
            return None

    assert info.value.field == "mode"
    assert str(info.value).startswith(f"resolver 'windowed': mode={mode!r}")
    assert "fix:" in str(info.value) and "\n" not in str(info.value)


def _env_resolvers():
    @stream(source=SOURCE, environment="production")
    def prod_only(ev: LoginEvent) -> User:
        return User(id="prod:" + ev.user_id)

    @stream(source=SOURCE, environment=["staging", "dev"])
    def staging_only(ev: LoginEvent) -> User:
        return User(id="staging:" + ev.user_id)

    @stream(source=SOURCE)
    def everywhere(ev: LoginEvent) -> User:
        return User(id="all:" + ev.user_id)

    return [prod_only, staging_only, everywhere]


def test_environment_selects_resolvers_as_the_job_does():
    rs = _env_resolvers()
    assert [r.name for r in for_environment(rs, "production")] == ["prod_only", "everywhere"]
    assert [r.name for r in for_environment(rs, "dev")] == ["staging_only", "everywhere"]
    assert [r.name for r in for_environment(rs, None)] == ["everywhere"]
    keyed = [("k", LOGINS[0])]
    rows = replay(rs, keyed, environment="staging").rows
    assert rows == [{"user.id": "staging:u1"}, {"user.id": "all:u1"}]
    assert replay(rs, keyed).rows == [{"user.id": "all:u1"}]


def test_no_resolver_for_the_environment_is_an_error_naming_them():
    prod_only = _env_resolvers()[0]
    with pytest.raises(ConfigError, match=r"'prod_only' runs only in production; fix: pass"):
        for_environment([prod_only], "dev")


def test_environment_must_be_names():
    with pytest.raises(ResolverDefinitionError, match=r"'bad_env': environment= must be a name"):

        @stream(source=SOURCE, environment=3)  # type: ignore[arg-type]  # the mistake tested
        def bad_env(ev: LoginEvent) -> User:
            return None


def test_run_and_submit_take_environment():
    from flink_job.cli import _options, build_parser

    for command in ("run", "submit"):
        args = build_parser().parse_args([command, "x.py", "--environment", "production"])
        assert _options(args).environment == "production"


# --- timestamp= ---------------------------------------------------------------------------


def test_timestamp_must_name_a_datetime_field_of_the_message():
    with pytest.raises(ResolverDefinitionError, match=r"timestamp='when' is not a field") as info:

        @stream(source=SOURCE, timestamp="when")
        def missing(ev: TimedLogin) -> User:
            return None

    assert info.value.field == "timestamp" and "fix:" in str(info.value)
    with pytest.raises(ResolverDefinitionError, match=r"TimedLogin.user_id is <class 'str'>"):

        @stream(source=SOURCE, timestamp="user_id")
        def not_a_datetime(ev: TimedLogin) -> User:
            return None

    class MaybeTimed(BaseModel):
        user_id: str
        at: dt.datetime | None = None

    @stream(source=SOURCE, timestamp="at")
    def optional_ok(ev: MaybeTimed) -> User:
        return None

    assert optional_ok.timestamp == "at"


def test_feature_rows_carry_the_timestamp_field_else_the_record_timestamp():
    @stream(source=SOURCE, keys={"user_id": User.id}, timestamp="at")
    def stamped(ev: TimedLogin) -> User:
        return User(id=ev.user_id)

    @stream(source=SOURCE, keys={"user_id": User.id})
    def unstamped(ev: TimedLogin) -> User:
        return User(id=ev.user_id)

    at = dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    record_ts = 1_700_000_000_000
    msg = RawMessage(
        value=TimedLogin(user_id="u1", at=at).model_dump_json().encode(), timestamp=record_ts
    )
    assert [r.timestamp for r in replay(stamped, [msg]).records] == [ms(at)]
    assert [r.timestamp for r in replay(unstamped, [msg]).records] == [record_ts]


# --- late_arrival_deadline ------------------------------------------------------------------


def test_late_messages_are_skipped_and_counted_by_the_event_time():
    late_source = KafkaSource(name="logins", late_arrival_deadline="1h")

    @stream(source=late_source, keys={"user_id": User.id}, timestamp="at")
    def by_field(ev: TimedLogin) -> User:
        return User(id=ev.user_id)

    @stream(source=late_source, keys={"user_id": User.id})
    def by_record(ev: TimedLogin) -> User:
        return User(id=ev.user_id)

    now = dt.datetime.now(UTC)
    fresh, stale = now - dt.timedelta(minutes=5), now - dt.timedelta(hours=2)

    def raw(user: str, at: dt.datetime, record: dt.datetime) -> RawMessage:
        body = TimedLogin(user_id=user, at=at).model_dump_json().encode()
        return RawMessage(value=body, timestamp=ms(record))

    msgs = [raw("fresh", fresh, stale), raw("stale", stale, fresh)]
    result = replay(by_field, msgs)
    assert (result.rows, result.late, result.dead_letters) == ([{"user.id": "fresh"}], 1, [])
    result = replay(by_record, msgs)
    assert (result.rows, result.late, result.dead_letters) == ([{"user.id": "stale"}], 1, [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("infinity", None),
        ("30s", 30_000),
        ("1h30m", 5_400_000),
        ("2d", 172_800_000),
        (dt.timedelta(minutes=2), 120_000),
        (None, None),
    ],
)
def test_late_arrival_deadline_durations(value, expected):
    assert KafkaSource(name="x", late_arrival_deadline=value).late_arrival_deadline_ms == expected


@pytest.mark.parametrize("value", ["soon", "10", "-5m", "", dt.timedelta(0)])
def test_a_malformed_late_arrival_deadline_is_refused_in_one_line(value):
    with pytest.raises(ConfigError) as info:
        KafkaSource(name="logins", late_arrival_deadline=value)
    assert str(info.value).startswith("source 'logins': late_arrival_deadline=")
    assert "fix:" in str(info.value) and info.value.field == "late_arrival_deadline"


# --- KafkaSource: ids, SASL, MSK IAM ------------------------------------------------------------


def test_group_and_client_id_prefixes_are_prefixes_per_job_and_resolver():
    from flink_job.config import JobOptions, resolve_source
    from flink_job.job import consumer_ids

    options = JobOptions()
    src = KafkaSource(name="logins", group_id_prefix="grp-", client_id_prefix="cli-")
    settings = resolve_source(src, options)
    assert consumer_ids(settings, "job", "a") == ("grp-job.a", "cli-job.a")
    assert consumer_ids(settings, "job", "b") == ("grp-job.b", "cli-job.b")
    plain = resolve_source(KafkaSource(name="logins"), options)
    assert consumer_ids(plain, "job", "a") == ("flink-job.job.a", None)


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
        ({"sasl_mechanism": "OAUTHBEARER"}, "sasl_mechanism"),
        ({"msk_iam_auth": True}, "msk_iam_auth"),
        ({"aws_region": "eu-west-1"}, "aws_region"),
        ({"aws_role_arn": "arn:aws:iam::1:role/x"}, "aws_role_arn"),
        ({"integration_variable_override": {"KAFKA_TOPIC": "x"}}, "integration_variable_override"),
    ],
)
def test_unsupported_authentication_is_refused_in_one_line(kwargs, arg):
    with pytest.raises(ConfigError) as info:
        KafkaSource(name="logins", **kwargs)
    assert str(info.value).startswith(f"source 'logins': {arg}=")
    assert "fix:" in str(info.value) and "\n" not in str(info.value)
    assert info.value.field == arg


def test_supported_sasl_mechanisms_and_msk_iam_off_are_accepted():
    for mech in ("PLAIN", "SCRAM-SHA-256", "scram-sha-512"):
        assert KafkaSource(name="x", sasl_mechanism=mech, msk_iam_auth=False).sasl_mechanism == mech


def test_kafka_source_takes_every_chalk_argument():
    chalk_args = {
        "bootstrap_server",
        "topic",
        "ssl_keystore_location",
        "ssl_ca_file",
        "client_id_prefix",
        "group_id_prefix",
        "security_protocol",
        "sasl_mechanism",
        "sasl_username",
        "sasl_password",
        "name",
        "late_arrival_deadline",
        "dead_letter_queue_topic",
        "additional_kafka_args",
        "msk_iam_auth",
        "aws_region",
        "aws_role_arn",
        "integration_variable_override",
    }
    assert chalk_args <= {f.name for f in dataclasses.fields(KafkaSource)}


# --- several rows -------------------------------------------------------------------------------


def test_a_list_or_dataframe_of_rows_becomes_rows_in_order():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def fan_out(
        ev: LoginEvent, state: State[LoginState]
    ) -> DataFrame[User.id, User.unique_ip_count]:
        state.unique_ips.add(ev.ip_address)
        n = len(state.unique_ips)
        return DataFrame(
            [User(id=ev.user_id, unique_ip_count=n), User(id="all", unique_ip_count=-n)]
        )

    @stream(source=SOURCE)
    def as_list(ev: LoginEvent) -> User:
        return [User(id="a"), User(id="b")]  # type: ignore[return-value]  # Chalk allows lists

    rows = replay(fan_out, LOGINS[:2]).rows
    assert rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"user.id": "all", "user.unique_ip_count": -1},
        {"user.id": "u2", "user.unique_ip_count": 1},
        {"user.id": "all", "user.unique_ip_count": -1},
    ]
    assert replay(as_list, [("k", LOGINS[0])]).rows == [{"user.id": "a"}, {"user.id": "b"}]


def test_a_bad_row_in_a_list_dead_letters_the_message_and_keeps_the_state():
    @stream(source=SOURCE, keys={"user_id": User.id})
    def half_bad(ev: LoginEvent, state: State[LoginState]) -> User:
        state.unique_ips.add(ev.ip_address)
        return [User(id=ev.user_id), "oops"]  # type: ignore[return-value]  # the mistake tested

    result = replay(half_bad, LOGINS[:1])
    assert result.rows == [] and result.states == {}
    assert [d.error_class for d in result.dead_letters] == ["OutputError"]


# --- @features, feature(), FeatureTime, names ---------------------------------------------------


def test_features_takes_chalks_arguments_and_resolvers_lists_them():
    with pytest.warns(IgnoredArgumentWarning, match=r"max_staleness='1d'"):

        @features(
            max_staleness="1d",
            etl_offline_to_online=True,
            tags=["team:risk"],
            name="account",
            singleton=False,
            owner="risk@example.com",
        )
        class Account:
            id: str
            logins: int = feature(max_staleness="infinity", description="login count")
            seen_at: FeatureTime

    @stream(source=SOURCE, keys={"user_id": Account.id})
    def count_logins(ev: LoginEvent) -> Features[Account.logins]:
        return Account(logins=1)

    assert str(Account.logins) == "account.logins"
    assert Account.seen_at.annotation == FeatureTime
    (described,) = describe_resolvers([count_logins])
    assert described["feature_classes"]["account"]["options"] == {
        "owner": "'risk@example.com'",
        "tags": "['team:risk']",
        "etl_offline_to_online": "True",
        "max_staleness": "'1d'",
    }
    assert described["feature_classes"]["account"]["features"]["logins"] == {
        "description": "'login count'",
        "max_staleness": "'infinity'",
    }
    assert replay(count_logins, LOGINS[:1]).rows == [{"account.logins": 1, "account.id": "u1"}]


def test_feature_primary_marks_the_primary_key():
    @features
    class Device:
        serial: str = feature(primary=True)
        owner_id: str

    @stream(source=SOURCE, keys={"user_id": Device.serial})
    def device(ev: LoginEvent) -> Device:
        return Device(owner_id=ev.user_id)

    result = replay(device, LOGINS[:1])
    assert [r.key for r in result.records] == [b'"u1"']


@pytest.mark.parametrize(
    "kwargs", [{"name": "other"}, {"version": 2}, {"expression": "_.x"}, {"strict": True}]
)
def test_feature_arguments_that_would_change_rows_are_refused(kwargs):
    (arg,) = kwargs
    with pytest.raises(ResolverDefinitionError) as info:

        @features
        class Thing:
            id: str
            x: int = feature(**kwargs)

    assert str(info.value).startswith(f"@features class Thing: x = feature(...): {arg}=")
    assert info.value.field == "x" and "fix:" in str(info.value)


def test_chalk_names_a_shared_feature_module_imports():
    import flink_job.features as _features_module  # noqa: F401  # the submodule itself
    from flink_job.features import DataFrame as DF
    from flink_job.features import FeatureTime as FT
    from flink_job.features import feature as feat
    from flink_job.state import KeyedState as KS
    from flink_job.streams import KeyedState as StreamsKeyedState

    assert StreamsKeyedState is KS is KeyedState is State
    assert (DF, FT, feat) == (DataFrame, FeatureTime, feature)
    assert Primary is not None

    @stream(source=SOURCE, keys={"user_id": User.id})
    def keyed(ev: LoginEvent, state: KeyedState[LoginState]) -> User:
        state.unique_ips.add(ev.ip_address)
        return User(id=ev.user_id, unique_ip_count=len(state.unique_ips))

    assert replay(keyed, LOGINS).rows == EXPECTED


def test_a_windowed_dataframe_of_messages_is_refused_with_the_fix():
    with pytest.raises(ResolverDefinitionError, match=r"DataFrame\[LoginEvent\]: .*windowed.*fix:"):

        @stream(source=SOURCE)
        def windowed(events: DataFrame[LoginEvent]) -> User:
            return None

    ns: dict[str, object] = {}
    exec(
        "from __future__ import annotations\n"
        "def windowed(events: DataFrame[LoginEvent]) -> User:\n    return None",
        {"DataFrame": DataFrame, "LoginEvent": LoginEvent, "User": User},
        ns,
    )
    with pytest.raises(
        ResolverDefinitionError, match=r"^resolver 'windowed': DataFrame\[LoginEvent\]"
    ):
        stream(source=SOURCE)(ns["windowed"])  # type: ignore[arg-type]  # built by exec


def test_an_event_time_kafka_would_refuse_is_a_dead_letter_and_keeps_the_state():
    # The broker refuses records stamped over an hour ahead; that would fail the sink and
    # restart the job on every retry, so the message is a dead letter instead.
    @stream(source=SOURCE, keys={"user_id": User.id}, timestamp="at")
    def stamped(ev: TimedLogin, state: State[LoginState]) -> User:
        state.unique_ips.add("x")
        return User(id=ev.user_id, unique_ip_count=len(state.unique_ips))

    now = dt.datetime.now(UTC)
    result = replay(
        stamped,
        [
            TimedLogin(user_id="u1", at=now + dt.timedelta(days=1)),
            TimedLogin(user_id="u2", at=dt.datetime(1969, 12, 31, tzinfo=UTC)),
            TimedLogin(user_id="u3", at=now + dt.timedelta(minutes=30)),
        ],
    )
    assert [d.error_class for d in result.dead_letters] == ["TimestampOutOfRange"] * 2
    assert "in the future" in result.dead_letters[0].error
    assert "before 1970" in result.dead_letters[1].error
    assert result.rows == [{"user.id": "u3", "user.unique_ip_count": 1}]
    assert list(result.states) == ["u3"]
