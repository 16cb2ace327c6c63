"""Two resolvers in one module (one job), on two sources, one with its own dead-letter topic."""

from dataclasses import dataclass

from pydantic import BaseModel, field_validator

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream


class Click(BaseModel):
    user_id: str
    url: str


class Purchase(BaseModel):
    user_id: str
    amount: float

    @field_validator("user_id")
    @classmethod
    def _normalize(cls, v: str) -> str:
        # A validator may change the key, so this resolver's key is computed in Python
        # (count_clicks's on the JVM): one job exercises both keying paths.
        return v.strip()


@features
class User:
    id: str
    clicks: int
    spend: float


@dataclass
class Counter:
    n: int = 0


@dataclass
class Total:
    total: float = 0.0


@stream(source=KafkaSource(name="clicks"), keys={"user_id": User.id})
def count_clicks(event: Click, state: State[Counter]) -> Features[User.id, User.clicks]:
    state.n += 1
    return User(id=event.user_id, clicks=state.n)


@stream(
    source=KafkaSource(name="purchases", dead_letter_queue_topic="purchases-dlq"),
    keys={"user_id": User.id},
)
def total_spend(event: Purchase, state: State[Total]) -> Features[User.id, User.spend]:
    state.total += event.amount
    return User(id=event.user_id, spend=state.total)
