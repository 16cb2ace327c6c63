"""Issue 12 on a real cluster: timestamp= sets the rows' Kafka timestamps, aware datetimes live
in state across a savepoint, late_arrival_deadline skips and counts old messages.

Written as a Chalk port would be: KeyedState, the state declared before the message.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from flink_job.features import Features, features
from flink_job.streams import KafkaSource, KeyedState, stream

BERLIN = ZoneInfo("Europe/Berlin")


class Login(BaseModel):
    user_id: str
    at: datetime


@features
class User:
    id: str
    logins: int
    first_seen: str
    first_local: str


class Seen(BaseModel):
    n: int = 0
    first: datetime | None = None  # as parsed: pydantic's fixed-offset TzInfo
    first_local: datetime | None = None  # an IANA zone
    since: datetime = "2024-01-01T00:00:00Z"  # type: ignore[assignment]  # pydantic coerces it


def _row(state: Seen, ev: Login) -> User:
    state.n += 1
    if state.first is None:
        state.first = ev.at
        state.first_local = ev.at.astimezone(BERLIN)
    assert state.first_local is not None
    return User(
        id=ev.user_id,
        logins=state.n,
        first_seen=state.first.isoformat(),
        first_local=f"{state.first_local.isoformat()} {state.first_local.tzname()}",
    )


TimedRow = Features[User.id, User.logins, User.first_seen, User.first_local]


@stream(source=KafkaSource(name="events"), keys={"user_id": User.id}, timestamp="at")
def timed(state: KeyedState[Seen], ev: Login) -> TimedRow:
    return _row(state, ev)


@features
class Account:
    id: str
    logins: int


@stream(source=KafkaSource(name="late", late_arrival_deadline="1d"), keys={"user_id": Account.id})
def untimed(ev: Login, *, state: KeyedState[Seen]) -> Features[Account.id, Account.logins]:
    state.n += 1
    return Account(id=ev.user_id, logins=state.n)
