"""Finding resolvers: importing files and modules, unique names."""

import pytest
from pydantic import BaseModel

from flink_job import ConfigError, FlinkJobError, KafkaSource
from flink_job.features import Features, features
from flink_job.loader import collect_resolvers, import_target, load_resolvers
from flink_job.streams import stream

HEADER = """
from pydantic import BaseModel
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

class Ev(BaseModel):
    user_id: str

@features
class U:
    id: str
    n: int

src = KafkaSource(name="ev")
"""


def test_duplicate_resolver_names_in_one_module_raise_config_error(import_source):
    module = import_source(
        "dup_names_mod",
        HEADER
        + """
@stream(source=src, name="count")
def count_a(e: Ev) -> Features[U.n]:
    return None

@stream(source=src, name="count")
def count_b(e: Ev) -> Features[U.n]:
    return None
""",
    )
    with pytest.raises(ConfigError) as info:
        collect_resolvers(module)
    err = info.value
    assert isinstance(err, FlinkJobError)
    assert err.resolver == "count"
    assert "'count'" in str(err)
    assert "fix:" in str(err).lower()


def test_load_resolvers_refuses_a_module_with_duplicate_names(import_source, tmp_path):
    import_source(
        "dup_names_load",
        HEADER
        + """
@stream(source=src)
def count(e: Ev) -> Features[U.n]:
    return None

def count_v2(e: Ev) -> Features[U.n]:
    return None

other = stream(source=src, name="count")(count_v2)
""",
    )
    with pytest.raises(ConfigError, match="'count'"):
        load_resolvers(str(tmp_path / "dup_names_load.py"))


def test_the_same_resolver_under_two_names_is_not_a_duplicate(import_source):
    module = import_source(
        "alias_mod",
        HEADER
        + """
@stream(source=src)
def count(e: Ev) -> Features[U.n]:
    return None

alias = count
""",
    )
    assert [r.name for r in collect_resolvers(module)] == ["count"]


class Ev(BaseModel):
    user_id: str


@features
class U:
    id: str
    n: int


SRC = KafkaSource(name="ev")


@stream(source=SRC)
def first(e: Ev) -> Features[U.n]:
    return None


@stream(source=SRC, name="first")
def impostor(e: Ev) -> Features[U.n]:
    return None


@stream(source=SRC)
def second(e: Ev) -> Features[U.n]:
    return None


def test_collect_from_a_resolver_and_from_lists():
    assert collect_resolvers(first) == [first]
    assert collect_resolvers([first, second, first]) == [first, second]
    assert collect_resolvers([[first], (second,)]) == [first, second]


def test_collect_from_a_list_with_duplicate_names_raises_config_error():
    with pytest.raises(ConfigError, match="'first'"):
        collect_resolvers([first, impostor])


def test_collect_from_something_else_raises_config_error():
    with pytest.raises(ConfigError, match="got 42"):
        collect_resolvers(42)


def test_import_target_imports_a_file_once(import_source, tmp_path):
    module = import_source(
        "once_mod", HEADER + "\n@stream(source=src)\ndef r(e: Ev) -> U:\n    pass\n"
    )
    again = import_target(str(tmp_path / "once_mod.py"))
    assert again is module
    assert [r.name for r in load_resolvers(str(tmp_path / "once_mod.py"))] == ["r"]


def test_import_target_of_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        import_target(str(tmp_path / "missing.py"))


def test_import_target_of_a_missing_module_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        import_target("no_such_module_xyz")


def test_import_target_by_dotted_module_name():
    module = import_target("examples.logins")
    assert [r.name for r in collect_resolvers(module)] == ["track_unique_ips"]


def test_load_resolvers_of_a_module_without_resolvers_is_an_error(import_source, tmp_path):
    import_source("empty_mod", "X = 1\n")
    with pytest.raises(FlinkJobError, match="no stream resolvers"):
        load_resolvers(str(tmp_path / "empty_mod.py"))


def test_a_module_that_fails_to_import_is_not_left_half_imported(import_source):
    import sys

    with pytest.raises(ZeroDivisionError):
        import_source("broken_mod", "X = 1 / 0\n")
    assert "broken_mod" not in sys.modules


def test_a_module_with_postponed_annotations_defines_and_replays(import_source):
    from flink_job.testing import replay

    module = import_source(
        "future_annotations_mod",
        """
        from __future__ import annotations

        from dataclasses import dataclass, field

        from pydantic import BaseModel

        from flink_job import State
        from flink_job.features import Features, features
        from flink_job.streams import KafkaSource, stream

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

        @stream(source=KafkaSource(name="logins"), keys={"user_id": User.id})
        def track(
            event: LoginEvent, state: State[LoginState]
        ) -> Features[User.id, User.unique_ip_count]:
            state.unique_ips.add(event.ip_address)
            return User(unique_ip_count=len(state.unique_ips))
        """,
    )
    assert module.track.state.cls is module.LoginState
    result = replay(module, [{"user_id": "u1", "ip_address": "1"}])
    assert result.rows == [{"user.id": "u1", "user.unique_ip_count": 1}]
