"""Counts events per user: row n of a user carries count n, so duplicates and gaps show."""

from dataclasses import dataclass

from pydantic import BaseModel

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream


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
def count_events(event: Event, state: State[Count]) -> Features[User.id, User.events]:
    state.n += 1
    return User(id=event.user_id, events=state.n)
