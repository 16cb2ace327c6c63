"""Resolvers for hostile inputs: one keyed on the JVM (with defaults on the key path), one
keyed on a nested field with a defaulted model, one keyed by the Kafka record key (Python).
Every field a hostile message can reach has a type that accepts it (floats take NaN and
Infinity, ints take 1,001 digits), so those messages are valid and must be applied."""

from dataclasses import dataclass

from pydantic import BaseModel

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

source = KafkaSource(name="events", max_message_bytes=2000)


class Profile(BaseModel):
    id: str = "nobody"


class Event(BaseModel):
    user_id: str = "anonymous"  # a default on the key field: absent, its key
    profile: Profile = Profile()  # a default model along profile.id's path
    x: float = 0.0
    n: int = 0
    pad: str = ""


@features
class User:
    id: str
    events: int
    x: float


@features
class Person:
    id: str
    events: int


@features
class Account:
    events: int
    n_digits: int


@dataclass
class Count:
    n: int = 0


@stream(source=source, keys={"user_id": User.id})
def by_user(event: Event, state: State[Count]) -> Features[User.id, User.events, User.x]:
    state.n += 1
    # NaN and Infinity are written as null in the JSON row (pydantic's default).
    return User(id=event.user_id, events=state.n, x=event.x)


@stream(source=source, keys={"profile.id": Person.id})
def by_profile(event: Event, state: State[Count]) -> Features[Person.id, Person.events]:
    state.n += 1
    return Person(id=event.profile.id, events=state.n)


@stream(source=source)
def by_record_key(event: Event, state: State[Count]) -> Features[Account.events, Account.n_digits]:
    state.n += 1
    return Account(events=state.n, n_digits=len(str(abs(event.n))))
