"""The Python side of the batched operator (flink_job._batch): one call per batch must give
exactly what replay gives message by message.

The JVM side is played here by a small driver that speaks the operator's wire format: it
groups each batch by routed key, passes each key's stored bytes, and writes back the states
the answer returns. The real operator runs in tests/integration (test_batched.py and the
thread-mode tests, where it is the default).
"""

from __future__ import annotations

import gc
import json
import struct
from dataclasses import dataclass, field

import pytest

from examples.logins import LoginEvent, LoginState, User
from flink_job import KafkaSource, State
from flink_job._batch import WIRE_VERSION, BatchStep
from flink_job._core import Decoded, RawMessage, ResolverCore
from flink_job.features import Features
from flink_job.streams import stream
from flink_job.testing import replay

SOURCE = KafkaSource(name="logins", topic="logins")
UNKEYABLE = "\x00flink-job:unkeyable"


@stream(source=SOURCE, keys={"user_id": User.id})
def picky(event: LoginEvent, state: State[LoginState]) -> Features[User.id, User.unique_ip_count]:
    """Mutates the state, then fails for some inputs: the failing message must leave the
    state as before it, also for the next message of the same key in the same batch."""
    state.unique_ips.add(event.ip_address)
    if event.ip_address.startswith("bad"):
        raise ValueError("bad ip")
    if event.ip_address == "unstorable":
        state.unique_ips.add(object())  # type: ignore[arg-type]  # cannot be encoded
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))


GC_DURING_RESOLVER: list[bool] = []


@stream(source=SOURCE, keys={"user_id": User.id})
def gc_watcher(
    event: LoginEvent, state: State[LoginState]
) -> Features[User.id, User.unique_ip_count]:
    """Records whether Python's cyclic garbage collector runs while the resolver does."""
    GC_DURING_RESOLVER.append(gc.isenabled())
    state.unique_ips.add(event.ip_address)
    return User(id=event.user_id, unique_ip_count=len(state.unique_ips))


def _b(x: bytes | None) -> bytes:
    return struct.pack(">i", -1) if x is None else struct.pack(">i", len(x)) + x


def _request(keys: list[str], stored: list[bytes | None], records) -> bytes:
    parts = [struct.pack(">iii", 0x464A0000 | WIRE_VERSION, len(keys), len(records))]
    for k, s in zip(keys, stored, strict=True):
        parts += [_b(k.encode("utf-8", "surrogatepass")), _b(s)]
    for ki, m in records:
        absent = (m.key is None) * 1 | (m.value is None) * 2 | (not m.headers) * 4
        ts = -1 if m.timestamp is None else m.timestamp
        key, value = m.key or b"", m.value or b""
        parts.append(
            struct.pack(
                ">iiiqqiii",
                ki,
                absent,
                m.partition,
                m.offset,
                ts,
                len(key),
                len(value),
                len(m.headers),
            )
        )
        parts += [key, value]
        for name, value in m.headers:
            parts += [_b(name.encode("utf-8", "surrogatepass")), _b(value)]
    return b"".join(parts)


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf, self.pos = buf, 0

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def bytes(self) -> bytes | None:
        n = self.int()
        if n < 0:
            return None
        v = self.buf[self.pos : self.pos + n]
        self.pos += n
        return v


def run_batched(resolver, messages, size, stored=None, route=None, batch=None):
    """Drive BatchStep as the JVM operator does; returns (rows, dead letters, stored)."""
    batch = batch or BatchStep(ResolverCore(resolver), resolver.source.topic)
    core = batch.core
    stored = {} if stored is None else stored
    rows, dead = [], []

    def default_route(m: RawMessage) -> str:  # what the job routes by (JsonStateKey / KeyOf)
        d = core.decode(m)
        return d.key if isinstance(d, Decoded) else UNKEYABLE

    route = route or default_route
    for start in range(0, len(messages), size):
        chunk = messages[start : start + size]
        routed = [route(m) for m in chunk]
        keys = list(dict.fromkeys(routed))
        request = _request(
            keys,
            [stored.get(k) for k in keys],
            [(keys.index(r), m) for r, m in zip(routed, chunk, strict=True)],
        )
        r = _Reader(batch.process(request))
        n_states, n_rows, n_dead, _skipped, _late = r.int(), r.int(), r.int(), r.int(), r.int()
        for _ in range(n_states):
            k = r.int()
            stored[keys[k]] = r.bytes()
        for _ in range(n_rows):
            _i, n_key, n_value, _ts = struct.unpack_from(">iiiq", r.buf, r.pos)
            r.pos += 20
            key = None if n_key < 0 else r.buf[r.pos : r.pos + n_key]
            r.pos += max(n_key, 0)
            rows.append((key, r.buf[r.pos : r.pos + n_value]))
            r.pos += n_value
        for _ in range(n_dead):
            i = r.int()
            key, value = r.bytes(), r.bytes()
            headers = {}
            for _ in range(r.int()):
                name = r.bytes()
                assert name is not None
                headers[name.decode()] = r.bytes()
            dead.append((start + i, key, value, headers))
    return rows, dead, stored


def _msg(i: int, user: str, ip: str) -> RawMessage:
    value = json.dumps({"user_id": user, "ip_address": ip}).encode()
    return RawMessage(value=value, key=user.encode(), topic="logins", partition=0, offset=i)


def _mixed() -> list[RawMessage]:
    out = []
    for i in range(120):
        user = f"u{i % 7}"
        ip = ["1", "2", "bad", "3", "unstorable", "4", "5"][i % 7 if i % 3 else (i // 3) % 7]
        out.append(_msg(i, user, f"{ip}.{i % 5}" if ip in "12345" else ip))
    out[10] = RawMessage(value=b"{not json", key=b"u1", topic="logins", partition=0, offset=10)
    out[11] = RawMessage(value=None, key=None, topic="logins", partition=0, offset=11)
    out[12] = RawMessage(
        value=b'{"user_id": "u2"}',
        key=b"u2",
        topic="logins",
        partition=0,
        offset=12,
        headers=(("trace", b"t-1"), ("caf\u00e9", b"x")),
    )
    return out


@pytest.mark.parametrize("size", [1, 3, 16, 1000])
def test_batches_give_exactly_what_replay_gives(size):
    messages = _mixed()
    expected = replay(picky, messages)
    rows, dead, stored = run_batched(picky, messages, size)
    assert rows == [(r.key, r.value) for r in expected.records]
    assert [(i, k, v) for i, k, v, _ in dead] == [
        (d.message.offset, d.message.key, d.message.value) for d in expected.dead_letters
    ]
    assert [h for *_, h in dead] == [dict(d.headers()) for d in expected.dead_letters]
    core = ResolverCore(picky)
    assert {k: core.load_state(b) for k, b in stored.items()} == expected.states
    kinds = {h["dlq.error.class"] for *_, h in dead}
    assert {b"ResolverError", b"StateEncodeError", b"MalformedJson", b"SchemaViolation"} <= kinds


def test_a_message_routed_to_another_key_is_a_key_mismatch_and_touches_no_state():
    messages = [_msg(0, "u1", "1"), _msg(1, "u2", "2"), _msg(2, "u1", "3")]
    # The engine routes message 1 to u1's state: it must not be applied there (or to u2).
    route = {0: "u1", 1: "u1", 2: "u1"}
    rows, dead, stored = run_batched(picky, messages, 10, route=lambda m: route[m.offset])
    assert [h[b"dlq.error.class".decode()] for *_, h in dead] == [b"KeyMismatch"]
    assert dead[0][0] == 1
    assert set(stored) == {"u1"}
    assert ResolverCore(picky).load_state(stored["u1"]) == LoginState({"1", "3"})
    assert [json.loads(v)["user.unique_ip_count"] for _, v in rows] == [1, 2]


def test_a_lone_surrogate_key_crosses_exactly():
    """The JVM passes keys as WTF-8 (lone surrogates kept); the routed key must compare equal
    to the key Python validated, whatever it holds."""
    key = "u\ud800x"
    msg = RawMessage(
        value=json.dumps({"user_id": key, "ip_address": "1"}).encode(),
        topic="logins",
        partition=0,
        offset=0,
    )
    core = ResolverCore(picky)
    d = core.decode(msg)
    expected = replay(picky, [msg])
    rows, dead, stored = run_batched(picky, [msg], 10)
    assert rows == [(r.key, r.value) for r in expected.records]
    assert len(dead) == len(expected.dead_letters)
    if isinstance(d, Decoded):  # pydantic accepted it: it was applied under that very key
        assert d.key == key and list(stored) == [key]


def test_state_cached_between_batches_is_used_only_while_the_stored_bytes_match():
    """BatchStep keeps decoded states between batches; if the JVM's bytes differ (a restore,
    another writer), the stored bytes win."""
    core = ResolverCore(picky)
    batch = BatchStep(core, "logins")
    batch_stored: dict[str, bytes | None] = {}
    first = [_msg(0, "u1", "1"), _msg(1, "u1", "2")]
    run_batched(picky, first, 10, stored=batch_stored, batch=batch)
    assert "u1" in batch._cache  # the decoded state is kept for the next batch
    older = core._codec.encode(LoginState({"9"}))  # type: ignore[union-attr]
    batch_stored["u1"] = older
    rows, _, stored = run_batched(picky, [_msg(2, "u1", "3")], 10, stored=batch_stored, batch=batch)
    assert json.loads(rows[0][1])["user.unique_ip_count"] == 2  # {"9", "3"}
    assert core.load_state(stored["u1"]) == LoginState({"9", "3"})


class _Handoff:
    def __init__(self, items):
        self.items = items
        self.entries = items  # as flink_job._runtime._Handoff: tested before take_at is called

    def take_at(self, resolver, partition, offset, key, value):  # as flink_job._runtime._Handoff
        return self.items.pop((resolver, partition, offset), None)


def test_events_handed_off_by_the_python_key_selector_are_used_and_their_key_rechecked():
    core = ResolverCore(picky)
    m0, m1 = _msg(0, "u1", "1"), _msg(1, "u2", "2")
    handed = core.decode(_msg(0, "u1", "from-selector"))
    wrong = core.decode(_msg(1, "u3", "3"))  # a stale or foreign hand-off entry
    handoff = _Handoff({("picky", 0, 0): (handed, m0), ("picky", 0, 1): (wrong, m1)})
    batch = BatchStep(core, "logins", handoff)
    route = {0: "u1", 1: "u2"}
    _, dead, stored = run_batched(picky, [m0, m1], 10, route=lambda m: route[m.offset], batch=batch)
    assert core.load_state(stored["u1"]) == LoginState({"from-selector"})
    assert [h["dlq.error.class"] for *_, h in dead] == [b"KeyMismatch"]
    assert set(stored) == {"u1"} and not handoff.items


@dataclass
class FlakyState:
    ips: list[str] = field(default_factory=list)
    junk: object = None  # anything but None cannot be stored


@stream(source=SOURCE, keys={"user_id": User.id})
def mends(event: LoginEvent, state: State[FlakyState]) -> Features[User.id, User.unique_ip_count]:
    """``junk`` makes the state unstorable, ``mend`` makes it storable again, ``bad`` raises
    after mutating: so a batch's final state may be storable though a state in between was
    not. Only encoding after every message finds that message (why the batch still encodes
    per message: see flink_job._batch)."""
    state.ips.append(event.ip_address)
    if event.ip_address == "junk":
        state.junk = object()
    elif event.ip_address == "mend":
        state.junk = None
    elif event.ip_address == "bad":
        raise ValueError("bad ip")
    return User(id=event.user_id, unique_ip_count=len(state.ips))


@pytest.mark.parametrize("size", [1, 2, 5, 1000])
def test_one_key_many_times_in_a_batch_with_dead_letters_and_a_failed_encode_between(size):
    """One hot key, many messages per batch: a resolver error and a state that cannot be
    encoded (then mended by a later message of the same batch) are dead letters of exactly
    their own messages, and the messages after them see the state from before them."""
    ips = ["1", "2", "junk", "3", "bad", "mend", "4", "junk", "junk", "5", "mend", "6", "bad"]
    messages = [_msg(i, "hot", ip) for i, ip in enumerate(ips)]
    messages += [_msg(len(ips) + i, "cold", ip) for i, ip in enumerate(["1", "junk", "2"])]
    expected = replay(mends, messages)
    rows, dead, stored = run_batched(mends, messages, size)
    assert rows == [(r.key, r.value) for r in expected.records]
    assert [(i, h["dlq.error.class"]) for i, _, _, h in dead] == [
        (d.message.offset, dict(d.headers())["dlq.error.class"]) for d in expected.dead_letters
    ]
    assert [i for i, *_ in dead] == [2, 4, 7, 8, 12, 14]
    core = ResolverCore(mends)
    assert {k: core.load_state(b) for k, b in stored.items()} == expected.states
    assert core.load_state(stored["hot"]).ips == ["1", "2", "3", "mend", "4", "5", "mend", "6"]


def test_the_state_cache_keeps_the_most_recently_used_keys_and_results_stay_replays():
    core = ResolverCore(picky)
    batch = BatchStep(core, "logins")
    batch.CACHE_SIZE = 2
    messages = [_msg(i, f"u{i % 5}", str(i)) for i in range(40)]
    stored: dict[str, bytes | None] = {}
    rows, _, stored = run_batched(picky, messages, 3, stored=stored, batch=batch)
    expected = replay(picky, messages)
    assert rows == [(r.key, r.value) for r in expected.records]
    assert {k: core.load_state(b) for k, b in stored.items()} == expected.states
    assert list(batch._cache) == ["u3", "u4"]  # the last used: u3 (message 38), u4 (39)


def test_a_dead_letter_over_the_limit_is_cut_as_the_per_record_operator_cuts_it():
    """A dead letter the producer would refuse (over 1,000,000 bytes) fails the task and then
    every restart: the batched path writes DeadLetter.record(), as _wire.dead_row does."""
    huge = json.dumps({"user_id": "u1", "ip_address": "9" * 1_200_000}).encode()
    big = RawMessage(value=huge, key=b"u1", topic="logins", partition=0, offset=1)
    messages = [_msg(0, "u1", "1"), big, _msg(2, "u1", "2")]
    expected = replay(picky, messages)
    assert len(expected.dead_letters) == 1
    rows, dead, _ = run_batched(picky, messages, 10)
    assert rows == [(r.key, r.value) for r in expected.records]
    key, value, headers = expected.dead_letters[0].record()
    assert len(value or b"") < len(huge) and "dlq.value.truncated" in dict(headers)
    assert [(i, k, v, h) for i, k, v, h in dead] == [(1, key, value, dict(headers))]


def test_a_request_of_another_wire_format_is_refused_with_the_fix():
    """A jar of another flink-job version (thread mode keeps one interpreter per TaskManager
    across jobs, so a stale flink_job can meet a newer jar, or the reverse) is refused with an
    error naming the cause and the fix, never misread into wrong rows or states."""
    batch = BatchStep(ResolverCore(picky), picky.source.topic)
    assert batch.wire_version() == WIRE_VERSION
    good = _request(["u1"], [None], [(0, RawMessage(b'{"user_id": "u1", "ip_address": "a"}'))])
    assert batch.process(good)  # the current format runs
    # The format before WIRE_VERSION 2 began with n_keys, n_records (no magic).
    old = struct.pack(">ii", 1, 1) + good[12:]
    with pytest.raises(RuntimeError) as e:
        batch.process(old)
    message = str(e.value)
    assert "different flink-job versions" in message and "restart the TaskManagers" in message
    assert f"wire format {WIRE_VERSION}" in message


def test_the_garbage_collector_is_paused_for_a_batch_and_left_as_it_was():
    """With many keys every message's state object outlives the message, so the collector's
    young generation fills several times per batch; paused for the batch, it runs at most
    once after it. It must be back on after every batch, a failing one too, and stay off
    when the application turned it off."""
    messages = [_msg(i, f"u{i % 5}", f"10.0.0.{i}") for i in range(12)]
    assert gc.isenabled()
    GC_DURING_RESOLVER.clear()
    rows, _, _ = run_batched(gc_watcher, messages, 5)
    assert GC_DURING_RESOLVER == [False] * 12 and len(rows) == 12
    assert gc.isenabled()
    batch = BatchStep(ResolverCore(gc_watcher), gc_watcher.source.topic)
    with pytest.raises(RuntimeError):
        batch.process(struct.pack(">iii", 0, 0, 0))  # not a request: refused
    assert gc.isenabled()
    gc.disable()
    try:
        GC_DURING_RESOLVER.clear()
        run_batched(gc_watcher, messages, 5)
        assert GC_DURING_RESOLVER == [False] * 12
        assert not gc.isenabled()  # left off, as the application had it
    finally:
        gc.enable()
