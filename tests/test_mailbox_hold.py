"""Actors that hold work back while more of it is queued (the SqlWriter's group commit, the relay's burst,
the projection's MULTI/EXEC) must not hold it behind a pykka proxy call: pykka serves those itself, so
nothing would come back to flush the held work. Found as a PUT left unanswered for the whole write
timeout on a quiet daemon: the watchdog's ``stats()`` call was queued right behind the PUT's commit."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pykka
import pytest

from actors.activation_store import ActivationStoreActor
from actors.bus import Committed, OutboxRelay
from actors.sql_writer import SqlWriter, WriteBatch, WriteRequest
from messages.activation import ActivationEntry
from storage.activation_store import MemoryActivationStore
from storage.sql import WriteItem


class _Gate:
    """The first call blocks until released; every call is recorded and signalled."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.calls: list[object] = []
        self.second = threading.Event()

    def pass_through(self, what: object) -> None:
        self.calls.append(what)
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(10)
        else:
            self.second.set()


class _GatedSql:
    def __init__(self) -> None:
        self.gate = _Gate()
        self.outbox_rows = [(1, "w", "activation", {"id": "e1"})]

    def apply_batch(self, items, sent, sent_at, outbox):  # type: ignore[no-untyped-def]
        self.gate.pass_through([item.world_id for item in items])
        return [None] * len(items)

    def pending_outbox(self, after: int, limit: int):  # type: ignore[no-untyped-def]
        rows, self.outbox_rows = self.outbox_rows, []
        return rows


def _item(world_id: str) -> WriteItem:
    return WriteItem(world_id=world_id, expected_version=0, activation_counter=0, effects=[])


@pytest.fixture
def actors():  # type: ignore[no-untyped-def]
    """Started actors, stopped after the test (a gate left closed would hold its actor forever)."""
    started: list[pykka.ActorRef] = []
    yield started
    for ref in started:
        ref.stop(block=False)


def test_a_write_queued_ahead_of_a_proxy_call_is_committed_without_further_writes(actors) -> None:
    sql = _GatedSql()
    writer = SqlWriter.start(sql)
    actors.append(writer)
    first = pykka.ThreadingFuture()
    writer.tell(WriteRequest(item=_item("a"), done=first))
    assert sql.gate.entered.wait(10)  # the writer is inside its first commit: the next two queue up
    second = pykka.ThreadingFuture()
    writer.tell(WriteBatch(items=[_item("b")], dones=[second]))
    stats = writer.proxy().stats()  # the watchdog's liveness call, right behind the write
    sql.gate.release.set()
    assert first.get(timeout=10) is None
    assert second.get(timeout=5) is None  # committed on its own, not left waiting for another write
    assert stats.get(timeout=5)["commits"] >= 1


def test_rows_handed_ahead_of_a_proxy_read_are_published_without_further_commits(actors) -> None:
    sql, gate, marked = _GatedSql(), _Gate(), []

    class Publisher:
        def publish_many(self, messages):  # type: ignore[no-untyped-def]
            gate.pass_through([event["id"] for _, _, event in messages])

    relay = OutboxRelay.start(sql, Publisher(), lambda: datetime(2026, 3, 2, tzinfo=timezone.utc),
                              lambda ids, at: marked.append(ids))
    actors.append(relay)
    relay.tell(Committed(rows=None))  # first pass: a sweep, which publishes row 1 and blocks there
    assert gate.entered.wait(10)
    relay.tell(Committed(rows=[(2, "w", "activation", {"id": "e2"})]))
    failing = relay.proxy().failing  # the watchdog's read, right behind the handed rows
    gate.release.set()
    assert gate.second.wait(5), "the handed rows were held behind a proxy read"
    assert gate.calls == [["e1"], ["e2"]] and failing.get(timeout=5) is False


def test_a_projection_write_queued_ahead_of_another_call_is_written_without_further_writes(actors) -> None:
    gate = _Gate()

    class Store(MemoryActivationStore):
        def write_many(self, writes) -> None:  # type: ignore[no-untyped-def]
            gate.pass_through(len(writes))
            super().write_many(writes)

    store = Store()
    actor = ActivationStoreActor.start(store).proxy()
    actors.append(actor.actor_ref)
    entry = ActivationEntry(active=True, weight=0.5, etag="e", run_id="r", ts="2026-03-02T09:00:00Z")
    actor.put_entry("w", 1, "s1", "long", entry)
    assert gate.entered.wait(10)
    actor.put_entry("w", 2, "s2", "long", entry)
    actor.recovered()  # the guard's call, right behind the write: it writes nothing itself
    gate.release.set()
    assert gate.second.wait(5), "the projection write was held behind an unrelated call"
    assert store.get("w") == (2, {"s1": {"long": entry}, "s2": {"long": entry}})
