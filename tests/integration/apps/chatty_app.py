"""Counts events per user and prints and logs from the resolver: with
``batch_python_thread = true`` the resolver runs on the batched operator's Python thread,
where pemja's stdout and logging redirection into the JVM must work as on the task thread."""

import logging
from dataclasses import dataclass

from pydantic import BaseModel

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

log = logging.getLogger("chatty_app")


class Event(BaseModel):
    user_id: str
    seq: int


@features
class User:
    id: str
    events: int


@dataclass
class Count:
    n: int = 0


@stream(source=KafkaSource(name="events"), keys={"user_id": User.id})
def count_chatty(event: Event, state: State[Count]) -> Features[User.id, User.events]:
    state.n += 1
    print(f"chatty: {event.user_id} has {state.n}", flush=True)
    log.warning("chatty log: %s has %d", event.user_id, state.n)
    return User(id=event.user_id, events=state.n)
