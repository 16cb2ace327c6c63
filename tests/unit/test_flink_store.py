"""The per-record operator's state store (flink_job._runtime._FlinkStore) through the one
per-message step (flink_job._core.step): cached objects, unchanged state not written again,
a failed message leaves the key's state as before it."""

from dataclasses import dataclass

from pydantic import BaseModel

from flink_job import KafkaSource, State
from flink_job._core import Applied, DeadLetter, RawMessage, ResolverCore, step
from flink_job._runtime import _FlinkStore
from flink_job.features import Features, features
from flink_job.streams import stream


class Event(BaseModel):
    user_id: str
    n: int = 0


@features
class Acc:
    id: str
    total: int


@dataclass
class Total:
    total: int = 0


@stream(source=KafkaSource(name="events"), keys={"user_id": Acc.id})
def add(event: Event, state: State[Total]) -> Features[Acc.id, Acc.total]:
    state.total += event.n
    if state.total > 100:
        raise ValueError("too much")
    return Acc(id=event.user_id, total=state.total)


class Cell:
    """Keyed stored bytes, counting writes: what StateCell does on Flink state, for the key
    the engine is processing (``current``)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.current = "u"
        self.writes = 0

    @property
    def value(self) -> bytes | None:
        return self.values.get(self.current)

    def get(self) -> bytes | None:
        return self.value

    def set(self, payload: bytes) -> None:
        self.values[self.current] = payload
        self.writes += 1


def msg(n: int, offset: int, user: str = "u") -> RawMessage:
    return RawMessage(f'{{"user_id": "{user}", "n": {n}}}'.encode(), topic="t", offset=offset)


def run(core: ResolverCore, store: _FlinkStore, cell: Cell, m: RawMessage) -> object:
    cell.current = core.decode(m).key  # type: ignore[union-attr]
    return step(core, m, store, routed_key=cell.current)


def test_state_is_written_only_when_its_encoding_changes():
    core, cell = ResolverCore(add), Cell()
    store = _FlinkStore(core, cell)  # type: ignore[arg-type]
    assert isinstance(run(core, store, cell, msg(5, 0)), Applied)
    assert isinstance(run(core, store, cell, msg(0, 1)), Applied)  # same total: same bytes
    assert cell.writes == 1
    assert core.load_state(cell.value) == Total(5)


def test_a_failed_message_leaves_the_state_as_before_it():
    core, cell = ResolverCore(add), Cell()
    store = _FlinkStore(core, cell)  # type: ignore[arg-type]
    run(core, store, cell, msg(50, 0))
    out = run(core, store, cell, msg(80, 1))  # the resolver mutates, then raises
    assert isinstance(out, DeadLetter) and out.error_class == "ResolverError"
    out = run(core, store, cell, msg(1, 2))
    assert isinstance(out, Applied) and out.rows[0].as_dict()["acc.total"] == 51
    assert core.load_state(cell.value) == Total(51)


def test_the_cache_is_bounded_and_a_miss_reads_the_stored_state():
    core, cell = ResolverCore(add), Cell()
    store = _FlinkStore(core, cell)  # type: ignore[arg-type]
    store.SIZE = 2
    for offset, user in enumerate(["u", "a", "b", "c"]):
        run(core, store, cell, msg(1, offset, user))
    assert list(store._cache) == ["b", "c"]  # the least recently used evicted first
    out = run(core, store, cell, msg(2, 9, "u"))  # not cached: read from the stored state
    assert isinstance(out, Applied) and out.rows[0].as_dict()["acc.total"] == 3
    assert cell.writes == 5
