"""Job shape from the execution plan and the transformations: no broker, no job run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flink_job.config import JobOptions

APPS = Path(__file__).resolve().parents[1] / "integration" / "apps"


def _uids(env) -> set[str]:
    seen, pending, uids = (
        set(),
        list(env._j_stream_execution_environment.getTransformations()),
        set(),
    )
    while pending:
        t = pending.pop()
        if t.getId() in seen:
            continue
        seen.add(t.getId())
        if t.getUid():
            uids.add(str(t.getUid()))
        pending.extend(t.getInputs())
    return uids


@pytest.fixture(scope="module")
def two_job():
    from flink_job.job import build_job

    return build_job(str(APPS / "two_resolvers.py"), JobOptions(sink_topic="feats"))


def test_every_resolver_gets_stable_uids(two_job):
    uids = _uids(two_job.env)
    for name in ("count_clicks", "total_spend"):
        assert {f"{name}/source", f"{name}/resolve"} <= uids
    # count_clicks is keyed on the JVM (no Python key selector; a Python fallback only for
    # messages Jackson cannot read); total_spend has a validator on its key field, so a
    # Python key selector computes its key.
    assert "total_spend/key" in uids and "count_clicks/key" not in uids
    assert "count_clicks/key-fallback" in uids and "total_spend/key-fallback" not in uids
    assert {"sink/feats", "sink/dead-letters", "sink/purchases-dlq"} <= uids


def test_a_plain_string_key_leaves_one_python_operator_per_resolver(two_job):
    plan = json.loads(two_job.plan())
    names = [n["contents"] for n in plan["nodes"]]
    key_ops = [n for n in names if "_stream_key_by_map_operator" in n]
    assert len(key_ops) == 1, names  # total_spend's only
    (clicks_resolve,) = [n for n in plan["nodes"] if n["contents"] == "resolve count_clicks"]
    # Two inputs: the JVM-keyed messages (no Python upstream) and the fallback's.
    upstream = [
        next(n for n in plan["nodes"] if n["id"] == p["id"]) for p in clicks_resolve["predecessors"]
    ]
    fallback = [n for n in upstream if "fallback" in n["contents"]]
    on_jvm = [n for n in upstream if n not in fallback]
    assert all("Python" not in n["type"] + n["contents"] for n in on_jvm), on_jvm
    assert len(upstream) == 2 and len(on_jvm) == 1 and len(fallback) == 1, upstream


def test_plan_has_one_job_with_both_resolvers_and_one_feature_sink(two_job):
    plan = json.loads(two_job.plan())
    names = [n["contents"] for n in plan["nodes"]]
    assert sum("resolve count_clicks" in n for n in names) == 1
    assert sum("resolve total_spend" in n for n in names) == 1
    assert sum("sink_feats" in n and "Writer" in n for n in names) == 1
    # Each resolver's keyed operator is fed through hash partitions only (key_by; the
    # JVM-keyed one from its two keying paths).
    resolve_ids = {n["id"] for n in plan["nodes"] if n["contents"].startswith("resolve ")}
    for n in plan["nodes"]:
        if n["id"] in resolve_ids:
            strategies = [p["ship_strategy"] for p in n["predecessors"]]
            assert strategies in (["HASH"], ["HASH", "HASH"]), strategies
    assert two_job.sink_topics == ["feats", "dead-letters", "purchases-dlq"]


def test_state_key_is_a_typed_string_not_pickled_bytes(two_job):
    for t in two_job.env._j_stream_execution_environment.getTransformations():
        if str(t.getName()).startswith("resolve "):
            key_type = str(t.getStateKeyType())
            assert "String" in key_type and "PickledByteArray" not in key_type, key_type


def test_same_names_give_same_uids_across_builds():
    from flink_job.job import build_job

    a = _uids(build_job(str(APPS / "two_resolvers.py"), JobOptions()).env)
    b = _uids(build_job(str(APPS / "two_resolvers.py"), JobOptions(parallelism=2)).env)
    assert a == b


def test_execution_plan_holds_no_secrets(tmp_path):
    from flink_job.job import build_job

    canary = "canary-plan-7Xq"
    module = tmp_path / "secret_plan_app.py"
    module.write_text(
        "from pydantic import BaseModel\n"
        "from flink_job.features import Features, features\n"
        "from flink_job.streams import KafkaSource, stream\n"
        f"src = KafkaSource(name='s', topic='t', security_protocol='SASL_PLAINTEXT',\n"
        f"    sasl_mechanism='PLAIN', sasl_username='u', sasl_password='{canary}',\n"
        f"    ssl_truststore_password='{canary}')\n"
        "class E(BaseModel):\n    id: str\n"
        "@features\nclass U:\n    id: str\n"
        "@stream(source=src, keys={'id': U.id})\n"
        "def secret_resolver(e: E) -> Features[U.id]:\n    return U(id=e.id)\n"
    )
    job = build_job(str(module), JobOptions())
    plan = job.plan()
    assert "secret_resolver" in plan
    assert canary not in plan
    assert canary not in repr(job.sources)


def _table_options(job, table: str) -> dict[str, str]:
    rows = job.t_env.execute_sql(f"SHOW CREATE TABLE `{table}`").collect()
    with rows:
        ddl = str(next(iter(rows))[0])
    return dict(re.findall(r"'([^']+)' = '([^']*)'", ddl))


def test_the_job_runs_under_its_name_and_its_transactions_are_named_after_it(two_job):
    """On the default name the job is flink-job.<module>: that is the name the cluster's job
    list shows (submit refuses a second job by it) and the prefix of its transactional ids,
    so two jobs writing one topic never share them. (The last sink's table name,
    ``sink_<dead-letter topic>``, once took its place in both.)"""
    assert two_job.name == "flink-job.two_resolvers"
    for topic in ("feats", "dead-letters", "purchases-dlq"):
        options = _table_options(two_job, f"sink_{topic.replace('-', '_')}")
        assert options["sink.transactional-id-prefix"] == f"flink-job.two_resolvers.{topic}"


def test_a_job_name_given_is_the_name(tmp_path):
    from flink_job.job import build_job

    job = build_job(str(APPS / "two_resolvers.py"), JobOptions(job_name="clicks-v2"))
    assert job.name == "clicks-v2"
    options = _table_options(job, "sink_features")
    assert options["sink.transactional-id-prefix"] == "clicks-v2.features"
