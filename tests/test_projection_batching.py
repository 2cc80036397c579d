"""The activation projection is written once per mailbox drain: whatever waits is one MULTI/EXEC on Redis,
with the same result as writing each entry on its own (in-memory and Redis alike)."""

from __future__ import annotations

import threading

import pytest

from actors.activation_store import ActivationStoreActor
from messages.activation import ActivationEntry
from storage.activation_store import DeleteWorld, MemoryActivationStore, PutEntry, ReplaceWorld
from storage.redis_stores import RedisActivationStore
from tests import services


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "memory":
        yield MemoryActivationStore()
        return
    redis_store = RedisActivationStore(services.REDIS_URL, request.getfixturevalue("redis_prefix"))
    yield redis_store
    redis_store.close()


def _entry(weight: float) -> ActivationEntry:
    return ActivationEntry(active=True, weight=weight, etag=f"e{weight}", run_id="r", ts="2026-03-02T09:00:00Z")


def test_writes_together_equal_the_same_writes_one_by_one(store) -> None:  # type: ignore[no-untyped-def]
    store.write_many([
        PutEntry("a", 1, "s1", "long", _entry(0.1)), PutEntry("a", 2, "s2", "short", _entry(0.2)),
        PutEntry("a", 3, "s1", "long", _entry(0.3)),  # a later write of the same side wins
        ReplaceWorld("b", 7, {"s9": {"long": _entry(0.9)}}), PutEntry("b", 8, "s1", "long", _entry(0.5)),
        PutEntry("c", 1, "s1", "long", _entry(0.1)), DeleteWorld("c"),
    ])
    assert store.get("a") == (3, {"s1": {"long": _entry(0.3)}, "s2": {"short": _entry(0.2)}})
    assert store.get("b") == (8, {"s1": {"long": _entry(0.5)}, "s9": {"long": _entry(0.9)}})
    assert store.get("c") is None
    store.replace("a", 4, {})
    assert store.get("a") == (4, {})


class _GatedStore(MemoryActivationStore):
    """Holds its first write until released, so the actor's mailbox fills meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.in_write, self.release = threading.Event(), threading.Event()

    def write_many(self, writes) -> None:  # type: ignore[no-untyped-def]
        self.batches.append(len(writes))
        if len(self.batches) == 1:
            self.in_write.set()
            assert self.release.wait(10)
        super().write_many(writes)


def test_what_waits_in_the_mailbox_is_written_in_one_go_and_read_back_whole(request) -> None:
    store = _GatedStore()
    actor = ActivationStoreActor.start(store).proxy()
    request.addfinalizer(lambda: actor.actor_ref.stop(block=False))
    actor.put_entry("w", 1, "s0", "long", _entry(0.0))
    assert store.in_write.wait(10)
    for n in range(1, 6):
        actor.put_entry("w", n + 1, f"s{n}", "long", _entry(n / 10))
    answer = actor.get("w")  # asked behind the queued writes: it sees all of them
    store.release.set()
    counter, entries = answer.get(timeout=10)
    assert counter == 6 and sorted(entries) == [f"s{n}" for n in range(6)]
    assert store.batches == [1, 5]
    assert actor.dirty_count().get(timeout=10) == 0
