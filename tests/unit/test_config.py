"""Configuration errors are caught before anything is submitted, with the fix in the message;
secrets never show in what the project prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from connectors.kafka_tables import sink_table_ddl, source_table_ddl
from flink_job.config import JobOptions, resolve_source
from flink_job.errors import ConfigError
from flink_job.sources import KafkaSource

CANARY = "canary-Zq8v-secret"


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "flink-job.toml"
    path.write_text("")
    monkeypatch.setenv("FLINK_JOB_CONF", str(path))
    return path


def test_transaction_timeout_must_exceed_checkpoint_interval(conf: Path) -> None:
    with pytest.raises(ConfigError, match="transaction_timeout_ms") as e:
        JobOptions.from_conf(checkpoint_interval_ms=600_000, transaction_timeout_ms=900_000)
    assert "--checkpoint-interval" in str(e.value)
    # at-least-once uses no transactions: no such constraint
    JobOptions.from_conf(
        checkpoint_interval_ms=600_000, transaction_timeout_ms=900_000, delivery="at-least-once"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("delivery", "twice"),
        ("execution_mode", "fibers"),
        ("state_backend", "redis"),
        ("starting_offsets", "yesterday"),
    ],
)
def test_unknown_choices_name_the_field_and_the_choices(conf: Path, field: str, value: str) -> None:
    with pytest.raises(ConfigError, match=field) as e:
        JobOptions.from_conf(**{field: value})
    assert "use one of" in str(e.value)


def test_unknown_keys_in_conf_are_errors(conf: Path) -> None:
    conf.write_text("[job]\nsink_topik = 'x'\n")
    with pytest.raises(ConfigError, match="sink_topik"):
        JobOptions.from_conf()
    conf.write_text("[sources.logins]\ntopik = 'x'\n")
    with pytest.raises(ConfigError, match="topik"):
        resolve_source(KafkaSource(name="logins"), JobOptions())


def test_source_without_name_or_topic_is_an_error(conf: Path) -> None:
    with pytest.raises(ConfigError, match="has no topic"):
        resolve_source(KafkaSource(), JobOptions())


def test_precedence_arguments_then_conf_then_env(conf: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FLINK_JOB_KAFKA_BOOTSTRAP_SERVERS", "envhost:1")
    conf.write_text("[sources.logins]\ntopic = 'from-conf'\nbootstrap_server = 'confhost:2'\n")
    opts = JobOptions.from_conf()
    s = resolve_source(KafkaSource(name="logins"), opts)
    assert (s.topic, s.bootstrap_servers) == ("from-conf", "confhost:2")
    s = resolve_source(KafkaSource(name="logins", topic="arg"), opts)
    assert s.topic == "arg"
    s = resolve_source(KafkaSource(name="other"), opts)
    assert (s.topic, s.bootstrap_servers) == ("other", "envhost:1")


def _secret_source() -> KafkaSource:
    return KafkaSource(
        name="logins",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=CANARY,
        ssl_truststore_location="/t.jks",
        ssl_truststore_password=CANARY + "-ts",
        ssl_keystore_password=CANARY + "-ks",
        additional_kafka_args={"sasl.oauthbearer.token": CANARY + "-extra"},
    )


def test_secrets_pass_through_to_the_client_but_not_to_reprs_or_ddl_text(conf: Path) -> None:
    source = _secret_source()
    settings = resolve_source(source, JobOptions())
    jaas = settings.properties["sasl.jaas.config"]
    assert "shaded.org.apache.kafka.common.security.scram.ScramLoginModule" in jaas.reveal()
    assert CANARY in jaas.reveal()  # type: ignore[union-attr]
    ddl = source_table_ddl("t", settings, "g", "committed")
    sink = sink_table_ddl(
        "s",
        "out",
        "b:1",
        settings.properties,
        "exactly-once",
        transactional_id_prefix="p",
        transaction_timeout_ms=900_000,
    )
    assert CANARY in ddl.sql and CANARY in sink.sql  # the real statement carries them
    for text in (repr(source), str(source), repr(settings), str(ddl), repr(sink)):
        assert CANARY not in text, text


def test_resolvers_command_never_prints_secrets(tmp_path: Path, conf: Path) -> None:
    module = tmp_path / "secret_app.py"
    module.write_text(
        "from pydantic import BaseModel\n"
        "from flink_job.features import Features, features\n"
        "from flink_job.streams import KafkaSource, stream\n"
        f"src = KafkaSource(name='logins', sasl_username='u', sasl_password='{CANARY}')\n"
        "class E(BaseModel):\n    id: str\n"
        "@features\nclass U:\n    id: str\n"
        "@stream(source=src, keys={'id': U.id})\n"
        "def r(e: E) -> Features[U.id]:\n    return U(id=e.id)\n"
    )
    for flags in ([], ["--json"]):
        out = subprocess.run(
            [sys.executable, "-m", "flink_job.cli", "resolvers", str(module), *flags],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "logins" in out.stdout
        assert CANARY not in out.stdout + out.stderr


def test_a_misspelt_source_entry_is_an_unknown_source_name(conf: Path) -> None:
    from flink_job.config import check_source_names

    conf.write_text("[sources.loginz]\ntopic = 'prod-logins'\n[sources.other_app]\ntopic = 'x'\n")
    with pytest.raises(ConfigError) as e:
        check_source_names({"track_ips": KafkaSource(name="logins")})
    msg = str(e.value)
    assert "unknown source name 'loginz'" in msg
    assert "resolver 'track_ips'" in msg and "rename [sources.loginz] to [sources.logins]" in msg
    assert e.value.resolver == "track_ips"
    # Entries for other modules sharing the file, a source given topic=, or a configured one:
    # nothing to report; the name is the topic, as documented.
    check_source_names({"t": KafkaSource(name="logins", topic="prod-logins")})
    check_source_names({"t": KafkaSource(name="events")})
    conf.write_text("[sources.loginz]\ntopic = 'a'\n[sources.logins]\ntopic = 'b'\n")
    check_source_names({"t": KafkaSource(name="logins")})


def test_the_cli_reports_an_unknown_source_name_before_touching_kafka(
    tmp_path: Path, conf: Path
) -> None:
    module = tmp_path / "app.py"
    module.write_text(
        "from pydantic import BaseModel\n"
        "from flink_job.features import Features, features\n"
        "from flink_job.streams import KafkaSource, stream\n"
        "class E(BaseModel):\n    id: str\n"
        "@features\nclass U:\n    id: str\n"
        "@stream(source=KafkaSource(name='logins'), keys={'id': U.id})\n"
        "def r(e: E) -> Features[U.id]:\n    return U(id=e.id)\n"
    )
    conf.write_text("[sources.login]\ntopic = 'x'\n")
    # No broker at this address: the error must come from the configuration check first.
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "flink_job.cli",
            "run",
            str(module),
            "--bootstrap-servers",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "unknown source name 'login'" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("given", "ms"),
    [
        ("2s", 2000),
        ("500 ms", 500),
        ("1500", 1500),
        (1500, 1500),
        ("1 min", 60_000),
        ("2 seconds", 2000),
        ("10 secs", 10_000),
    ],
)
def test_checkpoint_interval_takes_flink_durations(conf: Path, given: object, ms: int) -> None:
    assert JobOptions.from_conf(checkpoint_interval_ms=given).checkpoint_interval_ms == ms


def test_checkpoint_interval_from_the_conf_file_takes_durations(conf: Path) -> None:
    conf.write_text("[job]\ncheckpoint_interval_ms = '3 s'\n")
    assert JobOptions.from_conf().checkpoint_interval_ms == 3000


@pytest.mark.parametrize("given", ["2 fortnights", "fast", "-5s", "1.5s"])
def test_checkpoint_interval_that_is_no_duration_names_the_fix(conf: Path, given: str) -> None:
    with pytest.raises(ConfigError, match="Flink duration") as e:
        JobOptions.from_conf(checkpoint_interval_ms=given)
    assert repr(given) in str(e.value)


def test_cli_checkpoint_interval_flag_takes_a_duration(conf: Path) -> None:
    from flink_job.cli import _options, build_parser

    args = build_parser().parse_args(["run", "x.py", "--checkpoint-interval", "2s"])
    assert _options(args).checkpoint_interval_ms == 2000


def test_sink_batches_128_kib_unless_the_properties_say_otherwise() -> None:
    def sink(props: dict[str, str]) -> str:
        return sink_table_ddl(
            "s",
            "out",
            "b:1",
            props,
            "at-least-once",
            transactional_id_prefix="p",
            transaction_timeout_ms=900_000,
        ).sql

    assert "'properties.batch.size' = '131072'" in sink({})
    custom = sink({"batch.size": "16384"})
    assert "'properties.batch.size' = '16384'" in custom
    assert "131072" not in custom
