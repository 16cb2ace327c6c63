"""The benchmark workload: the seed's unique-IP resolver and login events."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from flink_job import State
from flink_job.features import Features, features
from flink_job.streams import KafkaSource, stream

source = KafkaSource(name="bench-logins")


class LoginEvent(BaseModel):
    user_id: str
    ip_address: str


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
    state.unique_ips.add(event.ip_address)
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))


def events(n: int, keys: int, seed: int = 1) -> list[bytes]:
    """``n`` JSON login events over ``keys`` users, IPs from a pool of 64 per run."""
    rnd = random.Random(seed)
    return [
        json.dumps(
            {"user_id": f"user-{rnd.randrange(keys)}", "ip_address": f"10.0.0.{rnd.randrange(64)}"}
        ).encode()
        for _ in range(n)
    ]


def pure_python_ceiling(values: list[bytes], with_cpu: bool = False) -> Any:
    """The same per-event work (decode, key, load state, resolve, encode state, build the row)
    through the project's ResolverCore in a plain loop: events/s with no engine at all (with
    ``with_cpu``: also the CPU microseconds per event, which a busy machine does not skew)."""
    import time

    from flink_job._core import Applied, Decoded, RawMessage, ResolverCore

    core = ResolverCore(track_unique_ips)
    stored: dict[str, bytes] = {}
    msgs = [RawMessage(v, None, "bench", 0, i) for i, v in enumerate(values)]
    c0, t0 = time.process_time(), time.perf_counter()
    for m in msgs:
        d = core.decode(m)
        assert isinstance(d, Decoded)
        out = core.apply(d, core.load_state(stored.get(d.key)), m)
        assert isinstance(out, Applied) and out.encoded is not None
        stored[d.key] = out.encoded
    rate = len(msgs) / (time.perf_counter() - t0)
    if with_cpu:
        return rate, (time.process_time() - c0) / len(msgs) * 1e6
    return rate


def state_bytes_per_key(values: list[bytes]) -> dict[str, float]:
    """Average stored bytes per key: this project's envelope vs a pickled set (the baseline)."""
    import pickle

    from flink_job.testing import replay

    result = replay(track_unique_ips, values)
    states = result.states
    codec = track_unique_ips.state.codec  # type: ignore[union-attr]
    envelope = sum(len(codec.encode(s)) for s in states.values()) / len(states)
    pickled = sum(len(pickle.dumps(s.unique_ips)) for s in states.values()) / len(states)
    return {"envelope": envelope, "pickled_set": pickled, "keys": len(states)}
