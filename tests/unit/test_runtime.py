"""The operator pieces of flink_job._runtime, without a Flink job: the state cell's framing,
the hand-off between key selector and keyed operator, and the keyed operator's state cache
and skip-unchanged write.

Flink's keyed state is played by an in-memory list state per key (what PyFlink's thread mode
hands Python: the raw Java ``ListState<byte[]>``); the framing is checked against PyFlink's
own bytes coder, the one process mode stores state with. The real operators run in
tests/integration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel
from pyflink.fn_execution.coder_impl_slow import BinaryCoderImpl
from pyflink.fn_execution.stream_slow import InputStream, OutputStream

from flink_job import KafkaSource, State
from flink_job._core import Decoded, ResolverCore
from flink_job._runtime import HANDOFFS, Resolve, ResolverRef, StateCell, _Handoff
from flink_job._wire import (
    ABSENT_HEADERS,
    ABSENT_KEY,
    DEAD_LETTERS,
    MSG_FIELDS,
    NO_TIMESTAMP,
    raw_message,
)
from flink_job.features import Features, features
from flink_job.streams import stream

# --- a resolver that half-mutates its state before failing ----------------------------------


class Login(BaseModel):
    user_id: str
    ip_address: str


@features
class Account:
    id: str
    ips: int


@dataclass
class Seen:
    ips: set[str] = field(default_factory=set)


@stream(source=KafkaSource(name="logins"), keys={"user_id": Account.id})
def picky(event: Login, state: State[Seen]) -> Features[Account.id, Account.ips]:
    state.ips.add(event.ip_address)
    if event.ip_address.startswith("bad"):
        raise ValueError("bad ip")
    return Account(id=event.user_id, ips=len(state.ips))


REF = ResolverRef(module=__name__, file=None, name="picky", topic="logins")

# --- Flink's side, in memory ---------------------------------------------------------------


class KeyedListState:
    """The raw Java ListState<byte[]> thread mode reads and writes, one list per key."""

    def __init__(self, current_key: list[str]) -> None:
        self.current = current_key
        self.elements: dict[str, list[bytes]] = {}
        self.reads: list[str] = []
        self.writes: list[tuple[str, bytes]] = []

    def get(self) -> list[bytes] | None:
        self.reads.append(self.current[0])
        return self.elements.get(self.current[0])

    def update(self, values: list[bytes]) -> None:
        (framed,) = values
        self.writes.append((self.current[0], framed))
        self.elements[self.current[0]] = list(values)


class _Wrapped:
    def __init__(self, state: KeyedListState) -> None:
        self._state = state


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def inc(self, n: int = 1) -> None:
        self.n += n


class _Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, _Counter] = {}

    def counter(self, name: str) -> _Counter:
        return self.counters.setdefault(name, _Counter())


class RuntimeContext:
    def __init__(self, state: KeyedListState) -> None:
        self.state = state
        self.descriptors: list[str] = []
        self.metrics = _Metrics()

    def get_list_state(self, descriptor: Any) -> _Wrapped:
        self.descriptors.append(descriptor.get_name())
        return _Wrapped(self.state)

    def get_metrics_group(self) -> _Metrics:
        return self.metrics


class Ctx:
    def __init__(self, current_key: list[str]) -> None:
        self.current = current_key

    def get_current_key(self) -> str:
        return self.current[0]


def msg(user: str, ip: str, offset: int, partition: int = 0) -> tuple[Any, ...]:
    """A message tuple as the job's SQL projection hands it to Python."""
    fields = {
        "key": b"",
        "value": json.dumps({"user_id": user, "ip_address": ip}).encode(),
        "partition": partition,
        "offset": offset,
        "headers": {},
        "absent": ABSENT_KEY | ABSENT_HEADERS,
        "timestamp": NO_TIMESTAMP,
    }
    return tuple(fields[name] for name in MSG_FIELDS)


class Operator:
    """A Resolve opened over ``state``, fed messages of one key at a time, as Flink does."""

    def __init__(self, state: KeyedListState, ref: ResolverRef = REF) -> None:
        self.key = state.current
        self.context = RuntimeContext(state)
        self.fn = Resolve(ref)
        self.fn.open(self.context)

    def send(self, user: str, ip: str, offset: int) -> list[Any]:
        self.key[0] = user
        return list(self.fn.process_element(msg(user, ip, offset), Ctx(self.key)))


def frame(payload: bytes) -> bytes:
    """``payload`` as process mode stores it: PyFlink's bytes coder."""
    out = OutputStream()
    BinaryCoderImpl().encode_to_stream(payload, out)
    return out.get()


# --- StateCell ------------------------------------------------------------------------------


def test_thread_mode_state_is_process_modes_list_state_and_frame():
    key = ["u1"]
    state = KeyedListState(key)
    context = RuntimeContext(state)
    cell = StateCell(context, "thread")
    assert context.descriptors == ["python-state-state"]  # process mode's Java name
    assert cell.get() is None
    cell.set(b"envelope bytes")
    assert state.writes == [("u1", frame(b"envelope bytes"))]
    # What process mode wrote reads back (its frame, decoded by PyFlink's own coder too).
    state.elements["u1"] = [frame(b"\x00written by process mode")]
    assert cell.get() == b"\x00written by process mode"
    framed = state.elements["u1"][0]
    assert BinaryCoderImpl().decode_from_stream(InputStream(framed)) == cell.get()


@pytest.mark.parametrize("stored", [b"\x00\x00\x00\x09short", b"\x00\x00", b"not framed at all"])
def test_a_state_element_with_another_frame_is_refused(stored):
    state = KeyedListState(["u1"])
    state.elements["u1"] = [stored]
    with pytest.raises(ValueError, match="unexpected frame"):
        StateCell(RuntimeContext(state), "thread").get()


def test_an_empty_payload_round_trips():
    state = KeyedListState(["u1"])
    cell = StateCell(RuntimeContext(state), "thread")
    cell.set(b"")
    assert state.elements["u1"] == [b"\x00\x00\x00\x00"]
    assert cell.get() == b""


# --- the hand-off ---------------------------------------------------------------------------


def _decoded(user: str, ip: str, offset: int, partition: int = 0):
    core = ResolverCore(picky)
    m = raw_message(msg(user, ip, offset, partition), "logins")
    d = core.decode(m)
    assert isinstance(d, Decoded)
    return d, m


def test_take_returns_the_very_message_put_once():
    h = _Handoff()
    d, m = _decoded("u1", "1.1.1.1", offset=5)
    h.put("picky", d, m)
    assert len(h) == 1 and h.size_bytes > 0
    assert h.take("picky", msg("u1", "1.1.1.1", 5)) == (d, m)
    assert h.take("picky", msg("u1", "1.1.1.1", 5)) is None  # taken: gone
    assert len(h) == 0 and h.size_bytes == 0


def test_take_refuses_another_message_at_the_same_position():
    h = _Handoff()
    d, m = _decoded("u1", "1.1.1.1", offset=5)
    h.put("picky", d, m)
    # Same partition and offset, other bytes (another job's topic, a rewritten record).
    assert h.take("picky", msg("u2", "1.1.1.1", 5)) is None
    h.put("picky", d, m)
    assert h.take("other_resolver", msg("u1", "1.1.1.1", 5)) is None
    assert h.take("picky", msg("u1", "1.1.1.1", 5, partition=1)) is None
    other_key = list(msg("u1", "1.1.1.1", 5))
    other_key[MSG_FIELDS.index("key")] = b"k"
    other_key[MSG_FIELDS.index("absent")] = ABSENT_HEADERS
    assert h.take("picky", tuple(other_key)) is None


def test_the_hand_off_is_bounded_by_bytes_and_drops_the_oldest():
    one = _Handoff()
    d, m = _decoded("u1", "1.1.1.1", offset=0)
    one.put("picky", d, m)
    entry = one.size_bytes
    h = _Handoff(max_bytes=3 * entry)
    for offset in range(5):
        d, m = _decoded("u1", "1.1.1.1", offset)
        h.put("picky", d, m)
        assert h.size_bytes <= 3 * entry
    assert len(h) == 3
    assert h.take("picky", msg("u1", "1.1.1.1", 0)) is None  # evicted, oldest first
    assert h.take("picky", msg("u1", "1.1.1.1", 4)) is not None


def test_an_entry_over_the_byte_cap_is_never_kept():
    h = _Handoff(max_bytes=100)
    d, m = _decoded("u1", "1.1.1.1", offset=0)
    h.put("picky", d, m)
    assert len(h) == 0 and h.size_bytes == 0


def test_the_hand_off_is_bounded_by_entries():
    h = _Handoff()
    h.MAX_ENTRIES = 2  # type: ignore[misc]  # the cap, made small
    for offset in range(4):
        d, m = _decoded("u1", "1.1.1.1", offset)
        h.put("picky", d, m)
    assert len(h) == 2
    assert [h.take("picky", msg("u1", "1.1.1.1", o)) is not None for o in range(4)] == [
        False,
        False,
        True,
        True,
    ]


def test_hand_offs_are_scoped_per_job_and_released_by_the_last_operator():
    a, b = "scope-a-test-runtime", "scope-b-test-runtime"
    first = HANDOFFS.acquire(a)
    again = HANDOFFS.acquire(a)
    other = HANDOFFS.acquire(b)
    assert first is again and first is not other
    d, m = _decoded("u1", "1.1.1.1", offset=0)
    first.put("picky", d, m)
    assert other.take("picky", msg("u1", "1.1.1.1", 0)) is None  # another job's hand-off
    HANDOFFS.release(a)
    assert a in HANDOFFS.scopes()  # one operator of job a is still open
    HANDOFFS.release(a)
    HANDOFFS.release(b)
    assert a not in HANDOFFS.scopes() and b not in HANDOFFS.scopes()
    assert HANDOFFS.acquire(a) is not first  # a new job's hand-off starts empty
    HANDOFFS.release(a)


# --- the keyed operator's state cache and skip-unchanged write -------------------------------


def test_a_key_is_read_once_then_served_from_the_cache():
    state = KeyedListState(["u1"])
    op = Operator(state)
    op.send("u1", "1.1.1.1", 0)
    op.send("u1", "2.2.2.2", 1)
    op.send("u1", "3.3.3.3", 2)
    assert state.reads == ["u1"]  # read once, then the cached object
    assert len(state.writes) == 3
    decoded = picky.state.codec.decode(state.writes[-1][1][4:])  # type: ignore[union-attr]
    assert decoded == Seen({"1.1.1.1", "2.2.2.2", "3.3.3.3"})


def test_an_unchanged_state_is_not_written_again():
    state = KeyedListState(["u1"])
    op = Operator(state)
    rows = op.send("u1", "1.1.1.1", 0) + op.send("u1", "1.1.1.1", 1)
    assert len(rows) == 2  # both messages produce their row
    assert [k for k, _ in state.writes] == ["u1"]  # the second left the bytes as they were
    op.send("u1", "2.2.2.2", 2)
    assert len(state.writes) == 2


def test_a_failed_message_evicts_its_key_and_leaves_the_stored_state():
    state = KeyedListState(["u1"])
    op = Operator(state)
    op.send("u1", "1.1.1.1", 0)
    out = op.send("u1", "bad-1", 1)
    assert [tag for tag, *_ in out] == [DEAD_LETTERS]
    assert len(state.writes) == 1
    # The half-mutated object is not reused: the key is read again from the stored bytes.
    rows = op.send("u1", "2.2.2.2", 2)
    assert state.reads == ["u1", "u1"]
    assert json.loads(rows[0][1]) == {"account.id": "u1", "account.ips": 2}


def test_the_cache_starts_empty_after_a_restart():
    state = KeyedListState(["u1"])
    Operator(state).send("u1", "1.1.1.1", 0)
    restarted = Operator(state)
    rows = restarted.send("u1", "2.2.2.2", 1)
    assert state.reads == ["u1", "u1"]
    assert json.loads(rows[0][1])["account.ips"] == 2


def test_the_cache_is_bounded_and_drops_the_least_recently_used_key():
    state = KeyedListState(["u0"])
    op = Operator(state)
    op.fn._store.SIZE = 2  # the bound of the operator's state store, made small
    for offset, user in enumerate(["u0", "u1", "u0", "u2"]):
        op.send(user, f"10.0.0.{offset}", offset)
    assert state.reads == ["u0", "u1", "u2"]  # u0 stayed cached: it was used last
    op.send("u1", "10.0.1.1", 9)  # u1 was the least recently used: dropped, read again
    assert state.reads == ["u0", "u1", "u2", "u1"]


def test_counters_count_what_the_operator_did():
    state = KeyedListState(["u1"])
    op = Operator(state)
    op.send("u1", "1.1.1.1", 0)
    op.send("u1", "bad", 1)
    op.fn.close()
    counters = {n: c.n for n, c in op.context.metrics.counters.items()}
    assert counters["eventsIn"] == 2
    assert counters["featureRows"] == 1
    assert counters["deadLetters"] == 1
