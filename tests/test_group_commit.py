"""Group commit: concurrent commands share commits, and one refused item never takes its batch down."""

from __future__ import annotations

import concurrent.futures
import threading

import pykka

from actors.sql_writer import SqlWriter, WriteRequest
from domain.effects import AuditRecord, OutboxEvent, RememberCommand
from storage.sql import StaleWriter, WriteItem
from messages.errors import Result


def test_concurrent_writes_share_commits(api) -> None:
    worlds = [f"w{i}" for i in range(16)]
    for w in worlds:
        api.client.post("/worlds", json={"id": w})
    before = api.system.writer.proxy().stats().get()

    def write(i: int) -> int:
        body = {"strategy_id": f"s{i % 4}", "side": "long", "active": True, "weight": (i % 10) / 10}
        return api.client.put(f"/worlds/{worlds[i % 16]}/activation", json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(write, range(320)))
    after = api.system.writer.proxy().stats().get()
    assert statuses == [200] * 320
    items, commits = after["items"] - before["items"], after["commits"] - before["commits"]
    assert items == 320
    assert commits < items  # at least some commands shared a transaction


def _audit_item(world_id: str, expected: int) -> WriteItem:
    return WriteItem(world_id=world_id, expected_version=expected, activation_counter=0,
                     effects=[AuditRecord(event="probe", request=None, result={"world": world_id})])


def test_a_stale_item_is_refused_alone(api) -> None:
    store = api.runtime.store
    assert store.apply_batch([_audit_item("a", 0), _audit_item("b", 0)]) == [None, None]
    results = store.apply_batch([_audit_item("a", 1), _audit_item("b", 7), _audit_item("c", 0)])
    assert results[0] is None and isinstance(results[1], StaleWriter) and results[2] is None
    assert [e.result for e in store.audit_page("b", 0, 10).entries] == [{"world": "b"}]
    assert len(store.audit_page("a", 0, 10).entries) == 2


def _event_item(world_id: str, expected: int, n: int, command_id: str | None = None) -> WriteItem:
    effects: list = [AuditRecord(event="probe", request=None, result={"n": n}),
                     OutboxEvent(topic="activation", key=world_id, cloudevent={"id": f"{world_id}-{n}"})]
    if command_id is not None:
        effects.append(RememberCommand(command_id=command_id, result=Result.OK, reply={"n": n}))
    return WriteItem(world_id=world_id, expected_version=expected, activation_counter=n, effects=effects)


def test_a_worlds_items_in_one_batch_commit_in_order_and_hand_back_their_outbox_rows(api) -> None:
    store = api.runtime.store
    outbox: list = []
    batch = [_event_item("a", 0, 1), _event_item("b", 0, 1), _event_item("a", 1, 2), _event_item("a", 2, 3)]
    assert store.apply_batch(batch, (), None, outbox) == [None] * 4
    assert [e.result["n"] for e in store.audit_page("a", 0, 10).entries] == [1, 2, 3]
    assert [(world, payload["id"]) for _, world, _, payload in outbox] == [
        ("a", "a-1"), ("b", "b-1"), ("a", "a-2"), ("a", "a-3")]
    assert [row[0] for row in outbox] == [row[0] for row in store.pending_outbox()]  # the committed ids
    state = store.load_world("a")
    assert (state.row_version, state.activation_counter) == (3, 3)
    assert store.apply_batch([_event_item("a", 3, 4)]) == [None]  # the fence moved once, to the last item


def test_a_stale_world_and_a_refused_command_leave_the_rest_of_the_batch_committed(api) -> None:
    store = api.runtime.store
    assert store.apply_batch([_event_item("a", 0, 1, "cmd-1"), _event_item("b", 0, 1)]) == [None, None]
    outbox: list = []
    results = store.apply_batch([_event_item("a", 1, 2, "cmd-1"), _event_item("b", 5, 2), _event_item("c", 0, 1),
                                 _event_item("c", 1, 2)], (), None, outbox)
    assert results[0] is not None and isinstance(results[1], StaleWriter) and results[2:] == [None, None]
    assert [e.result["n"] for e in store.audit_page("c", 0, 10).entries] == [1, 2]
    assert [e.result["n"] for e in store.audit_page("a", 0, 10).entries] == [1]
    assert [payload["id"] for _, _, _, payload in outbox] == ["c-1", "c-2"]  # only what committed


def test_writer_batches_whatever_is_queued(api, request) -> None:
    """While one commit is in progress, requests pile up in the mailbox and leave in one transaction."""
    store = api.runtime.store
    calls: list[int] = []
    in_commit, release = threading.Event(), threading.Event()

    class GatedStore:
        def apply_batch(self, items, *marks):  # type: ignore[no-untyped-def]
            calls.append(len(items))
            if len(calls) == 1:
                in_commit.set()
                assert release.wait(10)
            return store.apply_batch(items, *marks)

    writer = SqlWriter.start(GatedStore())
    request.addfinalizer(lambda: writer.stop(block=False))
    first = pykka.ThreadingFuture()
    writer.tell(WriteRequest(item=_audit_item("x", 0), done=first))
    assert in_commit.wait(10)
    futures = [pykka.ThreadingFuture() for _ in range(5)]
    for i, f in enumerate(futures):
        writer.tell(WriteRequest(item=_audit_item(f"y{i}", 0), done=f))
    release.set()
    assert [first.get(timeout=10)] + [f.get(timeout=10) for f in futures] == [None] * 6
    writer.stop()
    assert calls == [1, 5]
