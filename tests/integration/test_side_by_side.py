"""Two jobs side by side on one TaskManager of the standalone cluster, both on defaults.

Two resolver modules define a resolver of the same name, keyed in Python (so the key
selector hands decoded messages to the keyed operator in the one interpreter that thread
mode shares across jobs). They read different topics holding different users at the same
offsets, both from earliest, and write the same sink topic without a --job-name. Each job
must count exactly its own users (no message of one job applied by the other, no fenced
transactions), and a third job of a module already running is refused at submit.
"""

from __future__ import annotations

import json
from collections import defaultdict

from tests.integration import cluster_helpers as ch
from tests.integration.kafka_io import create_topic, produce, read_all, unique

APP = """
from dataclasses import dataclass

from pydantic import BaseModel, field_validator

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream


class Event(BaseModel):
    user_id: str
    seq: int

    @field_validator("user_id")
    @classmethod
    def _strip(cls, v: str) -> str:  # keyed in Python
        return v.strip()


@features
class User:
    id: str
    events: int
    last_seq: int


@dataclass
class Count:
    n: int = 0


@stream(source=KafkaSource(name="events"), keys={"user_id": User.id})
def count_events(
    event: Event, state: State[Count]
) -> Features[User.id, User.events, User.last_seq]:
    state.n += 1
    return User(id=event.user_id, events=state.n, last_seq=event.seq)
"""
USERS, PER_USER = 10, 60


def test_two_jobs_on_defaults_with_a_same_named_resolver_count_exactly(cluster, kafka, tmp_path):
    sink = unique("features")
    jobs: list[str] = []
    expected: dict[str, list[tuple[int, int]]] = {}
    try:
        for side in ("staging", "production"):
            app = tmp_path / f"side_{side}_{sink[-8:]}.py"
            app.write_text(APP)
            source, dlq = unique(f"events-{side}"), unique("dlq")
            create_topic(kafka, source, partitions=1)
            items = [
                (None, json.dumps({"user_id": f"{side}-{u}", "seq": s}).encode())
                for s in range(PER_USER)
                for u in range(USERS)
            ]
            produce(kafka, source, items)  # offsets 0..599 on both topics
            for u in range(USERS):
                expected[f"{side}-{u}"] = [(s + 1, s) for s in range(PER_USER)]
            conf = tmp_path / f"{side}.toml"
            conf.write_text(
                f'[kafka]\nbootstrap_servers = "{kafka}"\n'
                f'[sources.events]\ntopic = "{source}"\ndead_letter_queue_topic = "{dlq}"\n'
            )
            jobs.append(
                ch.submit(
                    str(app),
                    "--sink-topic",
                    sink,
                    "--starting-offsets",
                    "earliest",
                    conf=conf,
                    checkpoints=tmp_path / f"ck-{side}",
                )
            )
            last_app, last_conf = app, conf
        names = {ch.REST.job(j)["name"] for j in jobs}
        assert len(names) == 2, names  # unique per resolver module, on defaults

        rows = read_all(kafka, sink, expect=2 * USERS * PER_USER, timeout=180, settle=5)
        per_user: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for r in rows:
            v = json.loads(r.value)
            per_user[v["user.id"]].append((v["user.events"], v["user.last_seq"]))
        assert dict(per_user) == expected
        assert all(ch.state(j) == "RUNNING" for j in jobs)

        # A second job of a running module would share its groups and transactional ids.
        before = _jobs()
        again = ch.cli("submit", str(last_app), "--sink-topic", sink, conf=last_conf, check=False)
        assert again.returncode != 0
        assert "already running on this cluster" in again.stderr
        assert "--job-name" in again.stderr
        # Nothing was started on the cluster: the job is built and refused before submit's
        # cluster Python check (a one-element job) would run.
        assert _jobs() == before
    finally:
        for j in jobs:
            ch.cancel(j)


def _jobs() -> list[str]:
    """Ids of every job the cluster knows (running or ended)."""
    return sorted(j["jid"] for j in ch.REST.jobs())
