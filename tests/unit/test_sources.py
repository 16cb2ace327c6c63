"""KafkaSource: Chalk's parameter names, and secrets that never show."""

import copy
import dataclasses
import logging
import pickle

import pytest
from pydantic import BaseModel

from flink_job import KafkaSource, ResolverDefinitionError, State
from flink_job.describe import describe_resolvers
from flink_job.features import Features, features
from flink_job.sources import Secret
from flink_job.streams import stream

PASSWORDS = {
    "sasl_password": "sasl-pw-Zq1",
    "ssl_keystore_password": "keystore-pw-Zq2",
    "ssl_truststore_password": "truststore-pw-Zq3",
    "ssl_key_password": "key-pw-Zq4",
}
JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required password="jaas-pw-Zq5";'


def secure_source() -> KafkaSource:
    return KafkaSource(
        name="logins",
        bootstrap_server=["b1:9093", "b2:9093"],
        topic="logins.v1",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc-flink",
        ssl_keystore_location="/etc/kafka/keystore.jks",
        ssl_truststore_location="/etc/kafka/truststore.jks",
        ssl_ca_file="/etc/kafka/ca.pem",
        client_id_prefix="flink-",
        group_id_prefix="grp-",
        additional_kafka_args={"sasl.jaas.config": JAAS, "linger.ms": "5"},
        dead_letter_queue_topic="logins-dlq",
        late_arrival_deadline="10m",
        max_message_bytes=2048,
        **PASSWORDS,
    )


def assert_no_secret(text: str) -> None:
    for secret in [*PASSWORDS.values(), "jaas-pw-Zq5"]:
        assert secret not in text


# --- Secret ------------------------------------------------------------------------------------


def test_secret_never_shows_itself():
    s = Secret("hunter2")
    assert repr(s) == str(s) == "Secret('****')"
    assert "hunter2" not in f"{s} {s!r} {[s]} { ({'k': s}) }"
    assert s.reveal() == "hunter2"


def test_secret_equality_and_pickling_keep_the_value():
    s = Secret("hunter2")
    assert s == Secret("hunter2")
    assert s != Secret("other")
    assert s != "hunter2"
    back = pickle.loads(pickle.dumps(s))
    assert back.reveal() == "hunter2"
    assert copy.deepcopy(s).reveal() == "hunter2"


# --- KafkaSource -------------------------------------------------------------------------------


def test_chalk_parameter_names_are_accepted_and_kept():
    src = secure_source()
    assert src.name == "logins"
    assert src.bootstrap_server == ["b1:9093", "b2:9093"]
    assert src.topic == "logins.v1"
    assert src.security_protocol == "SASL_SSL"
    assert src.sasl_mechanism == "SCRAM-SHA-512"
    assert src.sasl_username == "svc-flink"
    assert src.dead_letter_queue_topic == "logins-dlq"
    assert src.late_arrival_deadline == "10m"
    assert src.max_message_bytes == 2048


def test_passwords_are_wrapped_as_secrets_that_reveal_the_original():
    src = secure_source()
    for name, value in PASSWORDS.items():
        secret = getattr(src, name)
        assert isinstance(secret, Secret), name
        assert secret.reveal() == value
    assert src.additional_kafka_args["sasl.jaas.config"].reveal() == JAAS
    assert src.additional_kafka_args["linger.ms"].reveal() == "5"


def test_an_already_wrapped_secret_is_kept_as_is():
    secret = Secret("pw")
    assert KafkaSource(name="x", sasl_password=secret).sasl_password is secret


def test_repr_and_str_never_show_passwords_or_extra_args():
    src = secure_source()
    for text in (repr(src), str(src), f"{src}", f"{src!r}", repr([src]), repr(vars(src))):
        assert_no_secret(text)
    assert "logins.v1" in repr(src)  # non-secret settings do show


def test_dataclass_helpers_do_not_expose_passwords():
    src = secure_source()
    assert_no_secret(repr(dataclasses.asdict(src)))
    assert_no_secret(repr(dataclasses.replace(src, topic="other")))


def test_logging_a_source_does_not_expose_passwords(caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("flink_job.test").info(
            "source: %s / %r", secure_source(), secure_source()
        )
    assert "logins" in caplog.text
    assert_no_secret(caplog.text)


def test_pickled_source_keeps_its_secrets_usable():
    back = pickle.loads(pickle.dumps(secure_source()))
    assert back == secure_source()
    assert back.sasl_password.reveal() == PASSWORDS["sasl_password"]


def test_source_is_immutable():
    src = KafkaSource(name="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        src.topic = "y"  # type: ignore[misc]


def test_label_prefers_name_then_topic():
    assert KafkaSource(name="logins", topic="t").label == "logins"
    assert KafkaSource(topic="t").label == "t"
    assert KafkaSource().label == "<unnamed KafkaSource>"


def test_defaults_are_unset_so_conf_and_environment_can_fill_them():
    src = KafkaSource(name="logins")
    assert src.topic is None and src.bootstrap_server is None
    assert src.sasl_password is None and src.additional_kafka_args is None


# --- secrets in resolver descriptions and errors -----------------------------------------------


class LoginEvent(BaseModel):
    user_id: str


@features
class User:
    id: str
    n: int


def test_resolver_repr_and_description_never_show_passwords():
    @stream(source=secure_source(), keys={"user_id": User.id})
    def track(event: LoginEvent) -> Features[User.n]:
        return None

    assert_no_secret(repr(track))
    described = describe_resolvers([track])
    assert_no_secret(repr(described))
    assert described[0]["source"] == "logins"


def test_definition_errors_never_show_passwords():
    @dataclasses.dataclass
    class S:
        n: int = 0

    with pytest.raises(ResolverDefinitionError) as info:

        @stream(source=secure_source(), keys={"nope": User.id})
        def track(event: LoginEvent, state: State[S]) -> Features[User.n]:
            return None

    assert_no_secret(str(info.value))
