"""The target is loaded and its sources resolved once: what ``launch.prepare`` loads is
what ``job.build_job`` compiles (no second import, no second resolution)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flink_job.config import JobOptions
from flink_job.loader import load

APPS = Path(__file__).resolve().parents[1] / "integration" / "apps"


def test_build_job_compiles_the_loaded_resolvers_and_sources():
    from flink_job.job import build_job

    options = JobOptions(sink_topic="feats")
    loaded = load(str(APPS / "two_resolvers.py"), options)
    assert len(loaded.resolvers) == 2 and set(loaded.sources) == {r.name for r in loaded.resolvers}
    # A source resolved differently than the configuration would: the builder takes it as is.
    name = loaded.resolvers[0].name
    moved = dataclasses.replace(loaded.sources[name], topic="moved-topic")
    loaded = dataclasses.replace(loaded, sources={**loaded.sources, name: moved})
    job = build_job(loaded, options)
    assert job.resolvers == loaded.resolvers
    assert job.sources == loaded.sources and job.sources[name].topic == "moved-topic"
    ddl = job.t_env.execute_sql(f"SHOW CREATE TABLE src_{name}").collect()
    with ddl:
        text = "".join(str(row[0]) for row in ddl)
    assert "'topic' = 'moved-topic'" in text
