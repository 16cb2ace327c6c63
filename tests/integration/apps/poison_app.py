"""Counts valid events per user. It mutates its state and then raises for ``action == "raise"``,
so a failed message that leaked its half-done state would show as a gap in the counts."""

from dataclasses import dataclass

from pydantic import BaseModel

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream


class Event(BaseModel):
    user_id: str | None = None  # a message without it is a MissingKey dead letter
    seq: int
    action: str = "count"


@features
class User:
    id: str
    events: int
    last_seq: int


@dataclass
class Count:
    n: int = 0
    last_seq: int = -1


@stream(source=KafkaSource(name="events"), keys={"user_id": User.id})
def count_valid(event: Event, state: State[Count]) -> Features[User.id, User.events, User.last_seq]:
    state.n += 1
    state.last_seq = event.seq
    if event.action == "raise":
        raise RuntimeError(f"refusing event {event.seq} of {event.user_id}")
    return User(id=event.user_id, events=state.n, last_seq=event.seq)
