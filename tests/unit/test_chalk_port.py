"""Porting a resolver written for Chalk's SDK needs nothing but the import lines changed."""

# The resolver sources below are kept as users write them, long signature lines included.
# ruff: noqa: E501

import re

import pytest

from flink_job import FlinkJobError, ResolverDefinitionError
from flink_job.loader import collect_resolvers
from flink_job.streams import Resolver
from flink_job.testing import replay

# The seed page's example (the Chalk docs), with the characters lost in extraction restored as
# SPEC.md says. Written against Chalk's SDK.
SEED_PYDANTIC = """
from typing import Set
from pydantic import BaseModel
from chalk import State
from chalk.features import features, Features
from chalk.streams import stream, KafkaSource

source = KafkaSource(name="...")

class LoginEvent(BaseModel):
    user_id: str
    ip_address: str

@features
class User:
    id: str
    unique_ip_count: int

class LoginState(BaseModel):
    unique_ips: Set[str] = set()

@stream(source=source, keys={"user_id": User.id})
def track_unique_ips(event: LoginEvent, state: State[LoginState]) -> Features[User.id, User.unique_ip_count]:
    state.unique_ips.add(event.ip_address)
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))
"""

# The docs' "Default Constructor" (dataclass, default_factory) variant, keyed by the Kafka key.
SEED_DATACLASS = """
from dataclasses import dataclass, field
from pydantic import BaseModel
import chalk
from chalk import State
from chalk.features import features, Features
from chalk.streams import stream, KafkaSource

class LoginEvent(BaseModel):
    user_id: str
    ip_address: str

@features
class User:
    id: str
    unique_ip_count: int

@dataclass
class LoginState:
    unique_ips: set[str] = field(default_factory=set)

@stream(source=KafkaSource(name="logins"))
def track_unique_ips(event: LoginEvent, state: State[LoginState]) -> Features[User.id, User.unique_ip_count]:
    state.unique_ips.add(event.ip_address)
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))
"""

# The docs' "Default Argument" variant: the state's initial value is the parameter's default.
SEED_DEFAULT_ARGUMENT = """
from dataclasses import dataclass
from pydantic import BaseModel
from chalk import State
from chalk.features import features, Features
from chalk.streams import stream, KafkaSource

class LoginEvent(BaseModel):
    user_id: str
    ip_address: str

@features
class User:
    id: str
    unique_ip_count: int

@dataclass
class LoginState:
    unique_ips: set[str]

@stream(source=KafkaSource(name="logins"), keys={"user_id": User.id})
def login_stream(event: LoginEvent, state: State[LoginState] = LoginState(unique_ips=set())) -> Features[User.id, User.unique_ip_count]:
    state.unique_ips.add(event.ip_address)
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))
"""

IMPORT_LINE = re.compile(r"^(\s*)(from|import)\s+chalk\b")


def port(chalk_source: str) -> str:
    """Replace `chalk` with `flink_job` in import lines only; every other line stays as is."""
    out = []
    for line in chalk_source.splitlines(keepends=True):
        if IMPORT_LINE.match(line):
            line = re.sub(r"\bchalk\b", "flink_job", line)
        out.append(line)
    return "".join(out)


def changed_lines(before: str, after: str) -> list[str]:
    return [b for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]


def test_port_changes_only_import_lines():
    ported = port(SEED_DATACLASS)
    assert changed_lines(SEED_DATACLASS, ported) == [
        "import flink_job",
        "from flink_job import State",
        "from flink_job.features import features, Features",
        "from flink_job.streams import stream, KafkaSource",
    ]


def test_ported_seed_pydantic_resolver_replays(import_source):
    module = import_source("ported_seed_pydantic", port(SEED_PYDANTIC))
    (resolver,) = collect_resolvers(module)
    assert isinstance(resolver, Resolver)
    result = replay(
        module,
        [
            module.LoginEvent(user_id="u1", ip_address="1.1.1.1"),
            {"user_id": "u1", "ip_address": "2.2.2.2"},
            b'{"user_id": "u2", "ip_address": "1.1.1.1"}',
            ("any-kafka-key", {"user_id": "u1", "ip_address": "1.1.1.1"}),
        ],
    )
    assert result.rows == [
        {"user.id": "u1", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
        {"user.id": "u2", "user.unique_ip_count": 1},
        {"user.id": "u1", "user.unique_ip_count": 2},
    ]
    assert result.states == {
        "u1": module.LoginState(unique_ips={"1.1.1.1", "2.2.2.2"}),
        "u2": module.LoginState(unique_ips={"1.1.1.1"}),
    }
    assert result.dead_letters == []


def test_ported_dataclass_resolver_keys_by_the_kafka_record_key(import_source):
    module = import_source("ported_seed_dataclass", port(SEED_DATACLASS))
    result = replay(
        module.track_unique_ips,
        [
            ("k1", {"user_id": "u1", "ip_address": "1"}),
            ("k1", {"user_id": "u1", "ip_address": "2"}),
            ("k2", {"user_id": "u1", "ip_address": "3"}),
        ],
    )
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 2, 1]
    assert set(result.states) == {"k1", "k2"}


def test_ported_default_argument_resolver_gives_each_key_its_own_copy(import_source):
    module = import_source("ported_seed_default", port(SEED_DEFAULT_ARGUMENT))
    result = replay(
        module,
        [
            {"user_id": "u1", "ip_address": "1"},
            {"user_id": "u2", "ip_address": "2"},
            {"user_id": "u1", "ip_address": "3"},
        ],
    )
    assert [r["user.unique_ip_count"] for r in result.rows] == [1, 1, 2]
    assert result.states == {
        "u1": module.LoginState(unique_ips={"1", "3"}),
        "u2": module.LoginState(unique_ips={"2"}),
    }


def test_ported_resolver_is_still_a_plain_callable(import_source):
    module = import_source("ported_seed_callable", port(SEED_PYDANTIC))
    state = module.LoginState()
    out = module.track_unique_ips(module.LoginEvent(user_id="u1", ip_address="1.1.1.1"), state)
    assert out == module.User(id="u1", unique_ip_count=1)
    assert state.unique_ips == {"1.1.1.1"}


def test_the_seed_as_printed_fails_at_import_naming_resolver_parameter_and_field(import_source):
    """The seed's `unique_ips: Set[str] = 0` is caught when the module is imported."""
    broken = port(SEED_PYDANTIC).replace("unique_ips: Set[str] = set()", "unique_ips: Set[str] = 0")
    with pytest.raises(ResolverDefinitionError) as info:
        import_source("ported_seed_broken", broken)
    err = info.value
    assert isinstance(err, FlinkJobError)
    assert err.resolver == "track_unique_ips"
    assert err.field == "unique_ips"
    message = str(err)
    assert "'track_unique_ips'" in message
    assert "parameter 'state'" in message
    assert "LoginState.unique_ips" in message
    assert "got 0" in message
    assert "fix:" in message


# A shared Chalk feature module and a resolver using the rest of chalkpy 2.123's names and
# arguments (issue 12): KeyedState declared first, feature(...), FeatureTime, DataFrame,
# environment=, machine_type=, timestamp=, updates_materialized_aggregations=.
CHALK_FULL = """
from datetime import datetime
from pydantic import BaseModel
from chalk.features import DataFrame, FeatureTime, Primary, feature, features
from chalk.streams import KafkaSource, KeyedState, stream

class Login(BaseModel):
    user_id: str
    ip_address: str
    at: datetime

@features(max_staleness="1d", etl_offline_to_online=True, owner="risk@example.com")
class Account:
    user_id: Primary[str]
    logins: int = feature(max_staleness="infinity", description="logins so far")
    seen_at: FeatureTime

class Count(BaseModel):
    n: int = 0
    last: datetime | None = None

@stream(source=KafkaSource(name="logins", late_arrival_deadline="infinity"), keys={"user_id": Account.user_id}, timestamp="at", environment=["production"], machine_type="large", updates_materialized_aggregations=False)
def count_logins(state: KeyedState[Count], event: Login) -> DataFrame[Account.user_id, Account.logins, Account.seen_at]:
    state.n += 1
    state.last = event.at
    return DataFrame([Account(logins=state.n, seen_at=event.at)])
"""


def test_a_full_chalk_module_ports_by_its_import_lines(import_source):
    ported = port(CHALK_FULL)
    assert changed_lines(CHALK_FULL, ported) == [
        "from flink_job.features import DataFrame, FeatureTime, Primary, feature, features",
        "from flink_job.streams import KafkaSource, KeyedState, stream",
    ]
    with pytest.warns(UserWarning):
        module = import_source("ported_chalk_full", ported)
    messages = [
        {"user_id": "u1", "ip_address": "1.1.1.1", "at": "2024-01-01T00:00:00Z"},
        {"user_id": "u1", "ip_address": "1.1.1.1", "at": "2024-01-01T01:00:00+01:00"},
    ]
    result = replay(module, messages, environment="production")
    assert result.dead_letters == []
    assert result.rows == [
        {"account.logins": 1, "account.seen_at": "2024-01-01T00:00:00Z", "account.user_id": "u1"},
        {
            "account.logins": 2,
            "account.seen_at": "2024-01-01T01:00:00+01:00",
            "account.user_id": "u1",
        },
    ]
    assert [r.timestamp for r in result.records] == [1704067200000, 1704067200000]
    assert result.states["u1"].last.utcoffset().total_seconds() == 3600
