"""Which keyed operator each mode gets, from the built transformations (no job run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flink_job.config import JobOptions

APPS = Path(__file__).resolve().parents[1] / "integration" / "apps"
BATCHED = "flinkjob.operators.BatchedResolveOperator"


def _transformations(env) -> dict[str, object]:
    seen, pending, by_name = (
        set(),
        list(env._j_stream_execution_environment.getTransformations()),
        {},
    )
    while pending:
        t = pending.pop()
        if t.getId() in seen:
            continue
        seen.add(t.getId())
        by_name.setdefault(str(t.getName()), t)
        pending.extend(t.getInputs())
    return by_name


def _operator_class(t) -> str:
    """The operator's class name, or "" for transformations without a simple operator."""
    from py4j.protocol import Py4JError

    try:
        return str(t.getOperatorFactory().getOperator().getClass().getName())
    except Py4JError:
        return ""


def _build(**options):
    from flink_job.job import build_job

    return build_job(str(APPS / "two_resolvers.py"), JobOptions(sink_topic="feats", **options))


def test_thread_mode_uses_the_batched_operator_for_both_keyings():
    job = _build()
    ts = _transformations(job.env)
    for name in ("count_clicks", "total_spend"):  # keyed on the JVM / by a Python selector
        resolve = ts[f"resolve {name}"]
        assert _operator_class(resolve) == BATCHED
        assert str(resolve.getUid()) == f"{name}/resolve"
    # Its jar travels with the job, after the Kafka connector.
    jars = str(job.env._j_stream_execution_environment.getConfiguration().toMap()["pipeline.jars"])
    assert "flink-sql-connector-kafka" in jars and "flink-job-operators" in jars


def test_dead_letters_of_the_batched_operator_need_no_python_operator():
    job = _build()
    ts = _transformations(job.env)
    side = [t for n, t in ts.items() if "SideOutput" in t.getClass().getSimpleName()]
    assert side, list(ts)
    for t in side:
        (up,) = list(t.getInputs())
        assert _operator_class(up) == BATCHED
    # The only Python operators left are key selectors: total_spend's and the fallback of
    # count_clicks's JVM keying (for what Jackson cannot read).
    python_ops = [n for n, t in ts.items() if ".python." in _operator_class(t)]
    assert sorted(python_ops) == ["_stream_key_by_map_operator", "key count_clicks (fallback)"]


@pytest.mark.parametrize(
    "options",
    [{"execution_mode": "process"}, {"execution_mode": "thread", "batch_size": 0}],
)
def test_process_mode_and_batch_size_0_keep_the_per_record_operator(options):
    ts = _transformations(_build(**options).env)
    for name in ("count_clicks", "total_spend"):
        assert _operator_class(ts[f"resolve {name}"]) != BATCHED
        assert "KeyedProcessOperator" in _operator_class(ts[f"resolve {name}"])


@pytest.mark.parametrize("python_thread", [True, False])
def test_the_batched_operator_runs_python_on_its_own_thread_when_told_to(python_thread):
    options = {"batch_python_thread": True} if python_thread else {}
    ts = _transformations(_build(**options).env)
    for name in ("count_clicks", "total_spend"):
        operator = ts[f"resolve {name}"].getOperatorFactory().getOperator()
        field = operator.getClass().getDeclaredField("pythonThread")
        field.setAccessible(True)
        assert field.getBoolean(operator) is python_thread
