"""@features classes, feature references, primary keys and Features[...] annotations."""

import importlib

import pytest

import flink_job
from flink_job import FlinkJobError, ResolverDefinitionError
from flink_job.features import Feature, Features, FeaturesType, Primary, feature_set, features


@features
class User:
    id: str
    unique_ip_count: int


@features
class UserAccount:
    id: str
    balance: float


@features
class HTTPRequest:
    request_id: Primary[str]
    path: str


@features
class LoginEventStats:
    country: str
    count: int


# --- feature references ------------------------------------------------------------------------


def test_feature_reference_str_is_namespace_dot_name():
    assert str(User.id) == "user.id"
    assert str(User.unique_ip_count) == "user.unique_ip_count"


def test_feature_reference_carries_owner_namespace_name_and_fqn():
    ref = User.unique_ip_count
    assert isinstance(ref, Feature)
    assert ref.owner is User
    assert ref.namespace == "user"
    assert ref.name == "unique_ip_count"
    assert ref.fqn == "user.unique_ip_count"
    assert ref.annotation is int
    assert repr(ref) == "Feature('user.unique_ip_count')"


def test_feature_references_compare_and_hash_by_full_name():
    assert User.id == User.id
    assert User.id != User.unique_ip_count
    assert User.id != UserAccount.id
    assert {User.id, User.id, UserAccount.id} == {User.id, UserAccount.id}
    assert User.id != "user.id"


@pytest.mark.parametrize(
    ("cls", "namespace"),
    [
        (User, "user"),
        (UserAccount, "user_account"),
        (HTTPRequest, "http_request"),
        (LoginEventStats, "login_event_stats"),
    ],
)
def test_namespace_is_class_name_in_snake_case(cls, namespace):
    fs = feature_set(cls)
    assert fs is not None
    assert fs.namespace == namespace
    assert all(str(f).startswith(namespace + ".") for f in fs.features.values())


def test_user_account_feature_reference_uses_snake_case_namespace():
    assert str(UserAccount.balance) == "user_account.balance"


def test_namespace_can_be_overridden_and_owner_is_accepted():
    @features(namespace="customer", owner="team-risk@example.com")
    class Client:
        id: str
        score: float

    assert str(Client.score) == "customer.score"
    assert feature_set(Client).namespace == "customer"


# --- primary keys ------------------------------------------------------------------------------


def test_field_named_id_is_the_primary_key():
    fs = feature_set(User)
    assert fs.primary == User.id
    assert User.id.primary is True
    assert User.unique_ip_count.primary is False


def test_field_marked_primary_is_the_primary_key():
    fs = feature_set(HTTPRequest)
    assert fs.primary == HTTPRequest.request_id
    assert HTTPRequest.request_id.primary is True
    assert HTTPRequest.path.primary is False


def test_primary_marker_wins_over_a_field_named_id():
    @features
    class Session:
        id: str
        token: Primary[str]

    assert feature_set(Session).primary == Session.token
    assert Session.id.primary is False


def test_class_without_id_or_primary_has_no_primary_key():
    assert feature_set(LoginEventStats).primary is None
    assert not any(f.primary for f in feature_set(LoginEventStats).features.values())


def test_two_primary_fields_are_a_definition_error_naming_the_field():
    with pytest.raises(ResolverDefinitionError) as info:

        @features
        class Pair:
            a: Primary[str]
            b: Primary[str]

    err = info.value
    assert err.field == "b"
    assert "Pair" in str(err) and "a, b" in str(err)
    assert "fix" in str(err).lower()


# --- definition errors -------------------------------------------------------------------------


def test_features_class_without_annotations_is_a_definition_error():
    with pytest.raises(ResolverDefinitionError) as info:

        @features
        class Empty:
            pass

    assert "Empty" in str(info.value)
    assert "fix" in str(info.value).lower()
    assert isinstance(info.value, FlinkJobError)


def test_features_on_something_other_than_a_class_is_a_definition_error():
    with pytest.raises(ResolverDefinitionError) as info:
        features(lambda: None)  # type: ignore[arg-type]
    assert "got" in str(info.value) and "fix" in str(info.value).lower()


# --- rows --------------------------------------------------------------------------------------


def test_instance_is_a_row_of_feature_values():
    row = User(id="u1", unique_ip_count=2)
    assert row.id == "u1"
    assert row.unique_ip_count == 2
    assert row == User(id="u1", unique_ip_count=2)
    assert row != User(id="u1", unique_ip_count=3)
    assert repr(row) == "User(id='u1', unique_ip_count=2)"


def test_row_may_hold_a_subset_of_features_and_missing_ones_raise_with_their_name():
    row = User(unique_ip_count=5)
    assert row.unique_ip_count == 5
    with pytest.raises(AttributeError, match=r"user\.id"):
        _ = row.id


def test_row_with_an_unknown_feature_raises_naming_it():
    with pytest.raises(TypeError, match="unknown feature 'ip'"):
        User(id="u1", ip="1.1.1.1")


def test_a_row_keeps_its_features_in_the_order_given_and_owns_them():
    values = {"unique_ip_count": 3, "id": "u1"}
    row = User(**values)
    values["id"] = "changed"  # the row does not share the caller's dict
    assert list(vars(row)) == ["unique_ip_count", "id"]  # the feature row's JSON order
    assert (row.id, row.unique_ip_count) == ("u1", 3)
    assert row == User(unique_ip_count=3, id="u1")


def test_a_row_with_an_unknown_feature_names_the_first_unknown_one():
    first = r"User\(\) got an unknown feature 'ip'; its features are: id"
    with pytest.raises(TypeError, match=first):
        User(ip="1.1.1.1", id="u1", port=1)


def test_rows_of_different_feature_classes_are_not_equal():
    assert User(id="u1") != UserAccount(id="u1")


def test_class_attributes_stay_references_after_rows_are_built():
    User(id="u1", unique_ip_count=1)
    assert isinstance(User.id, Feature)
    assert str(User.id) == "user.id"


# --- Features[...] -----------------------------------------------------------------------------


def test_features_annotation_lists_the_referenced_features_in_order():
    ann = Features[User.id, User.unique_ip_count]
    assert isinstance(ann, FeaturesType)
    assert ann.features == (User.id, User.unique_ip_count)
    assert ann.namespaces == {"user"}
    assert repr(ann) == "Features[user.id, user.unique_ip_count]"


def test_features_annotation_with_a_single_feature():
    assert Features[User.unique_ip_count].features == (User.unique_ip_count,)


def test_features_annotation_with_a_class_stands_for_all_its_features():
    assert Features[User].features == (User.id, User.unique_ip_count)


def test_features_annotation_can_mix_namespaces():
    ann = Features[User.id, UserAccount.balance]
    assert ann.namespaces == {"user", "user_account"}


def test_features_annotation_rejects_things_that_are_not_features():
    with pytest.raises(ResolverDefinitionError) as info:
        Features["user.id"]
    assert "'user.id'" in str(info.value)
    assert "fix" in str(info.value).lower()


def test_features_annotation_is_not_a_constructor():
    with pytest.raises(TypeError):
        Features[User.id]()


# --- import paths ------------------------------------------------------------------------------


def test_public_names_mirror_chalk_import_paths_and_the_top_level():
    # `flink_job.features` the attribute is the decorator (as in chalk); the module is the same.
    features_module = importlib.import_module("flink_job.features")
    streams_module = importlib.import_module("flink_job.streams")
    assert flink_job.features is features_module.features
    assert flink_job.Features is features_module.Features
    assert flink_job.Primary is features_module.Primary
    assert flink_job.stream is streams_module.stream
    assert flink_job.KafkaSource is streams_module.KafkaSource
    from flink_job.state import State

    assert flink_job.State is State


def test_primary_is_found_with_postponed_annotations_and_a_forward_reference(import_source):
    module = import_source(
        "features_forward_ref",
        """
        from __future__ import annotations

        from flink_job.features import Primary, features

        @features
        class Device:
            serial: Primary[str]
            owner: Owner  # defined below: cannot be evaluated yet

        @features
        class Tracker:
            tracker_id: Primary[Owner]

        class Owner:
            pass
        """,
    )
    assert feature_set(module.Device).primary == module.Device.serial
    assert feature_set(module.Tracker).primary == module.Tracker.tracker_id
    assert str(module.Device.owner) == "device.owner"
