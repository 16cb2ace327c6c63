"""logins_app.py with a validator on the key field, so its state key is computed by the
Python key selector instead of on the JVM (flink_job._keying): the general keying path.

The resolver raises for ip_address "boom" (a resolver exception -> dead letter).
"""

from dataclasses import dataclass, field

from pydantic import BaseModel, field_validator

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

source = KafkaSource(name="logins")


class LoginEvent(BaseModel):
    user_id: str
    ip_address: str

    @field_validator("user_id")
    @classmethod
    def _strip(cls, v: str) -> str:
        return v.strip()


@features
class User:
    id: str
    unique_ip_count: int


@dataclass
class LoginState:
    unique_ips: set[str] = field(default_factory=set)


@stream(source=source, keys={"user_id": User.id})
def track_unique_ips(
    event: LoginEvent, state: State[LoginState]
) -> Features[User.id, User.unique_ip_count]:
    if event.ip_address == "boom":
        raise RuntimeError("boom requested")
    state.unique_ips.add(event.ip_address)
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))
