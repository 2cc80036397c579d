"""A world's commands queued together are handled as one batch with one commit, pipelined behind the
commit before; the edge reaches resident worlds directly and passivation never drops or reorders."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import msgspec

from actors.bridge import Reply, Request
from actors.directory_messages import Sweep
from actors.routes import Routes
from actors.sql_writer import WriteBatch
from messages.activation import ActivationRequest
from messages.commands import GetActivationSet, PutActivation
from storage.sql import StorageUnavailable
from tests.conftest import make_config

W = "batched"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedWrites:
    """Wraps the store's ``apply_batch``: chosen calls wait for their release (and may then fail);
    every call's items are recorded, with which callers had been answered before it ran."""

    def __init__(self, store, answered) -> None:  # type: ignore[no-untyped-def]
        self._apply = store.apply_batch
        self._answered = answered
        self.calls: list[list[str | None]] = []
        self.answered_before: list[list[str]] = []
        self.entered: dict[int, threading.Event] = {}
        self.release: dict[int, threading.Event] = {}
        self.fail: set[int] = set()
        store.apply_batch = self

    def gate(self, call: int, fail: bool = False) -> None:
        self.entered[call], self.release[call] = threading.Event(), threading.Event()
        if fail:
            self.fail.add(call)

    def __call__(self, items, *args, **kwargs):  # type: ignore[no-untyped-def]
        call = len(self.calls) + 1
        self.calls.append([item.correlation_id for item in items])
        self.answered_before.append(self._answered())
        if call in self.entered:
            self.entered[call].set()
            assert self.release[call].wait(10)
        if call in self.fail:
            raise StorageUnavailable("simulated: the database went away")
        return self._apply(items, *args, **kwargs)


class Callers:
    """Sends commands straight into the actor system (as the edge does) and keeps each caller's reply."""

    def __init__(self, system) -> None:  # type: ignore[no-untyped-def]
        self._system = system
        self.replies: dict[str, Future[Reply]] = {}

    def put(self, name: str, strategy: str = "s1", weight: float = 0.5, if_match: str | None = None,
            command_id: str | None = None) -> None:
        body = ActivationRequest(strategy_id=strategy, side="long", active=True, weight=weight)
        self._send(name, PutActivation(world_id=W, correlation_id=name, body=body, if_match=if_match,
                                       command_id=command_id))

    def read(self, name: str) -> None:
        self._send(name, GetActivationSet(world_id=W, correlation_id=name))

    def _send(self, name: str, command) -> None:  # type: ignore[no-untyped-def]
        future: Future[Reply] = Future()
        self.replies[name] = future
        self._system.send(Request(command=command, reply=future.set_result))

    def reply(self, name: str) -> Reply:
        return self.replies[name].result(timeout=10)

    def answered(self) -> list[str]:
        return sorted(name for name, future in self.replies.items() if future.done())


def _writes_told(writer) -> list[threading.Event]:  # type: ignore[no-untyped-def]
    """One event per WriteBatch the writer's mailbox receives, in order (set as it is queued)."""
    told: list[threading.Event] = [threading.Event() for _ in range(8)]
    inbox, put = writer.actor_inbox, writer.actor_inbox.put
    count = [0]

    def counting_put(envelope, *args, **kwargs):  # type: ignore[no-untyped-def]
        put(envelope, *args, **kwargs)
        if isinstance(envelope.message, WriteBatch):
            told[count[0]].set()
            count[0] += 1

    inbox.put = counting_put
    return told


def _setup(harness_factory, tmp_path, sql_dsn, **clocks):  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, sql_dsn)
    config.worldservice.actors.idle_timeout_s = 60
    h = harness_factory(config, **clocks)
    assert h.client.post("/worlds", json={"id": W}).status_code == 201
    callers = Callers(h.system)
    return h, callers, GatedWrites(h.runtime.store, callers.answered)


def _etag(reply: Reply) -> str:
    return reply.body.etag


def test_a_batch_commits_in_arrival_order_and_a_refused_command_refuses_only_itself(
        harness_factory, tmp_path, sql_dsn) -> None:
    h, callers, writes = _setup(harness_factory, tmp_path, sql_dsn)
    writes.gate(1)
    callers.put("a", weight=0.1)
    assert writes.entered[1].wait(10)  # a's commit is in progress
    callers.read("read")  # waits for a's commit: meanwhile the next four queue up in the world's mailbox
    callers.put("b", weight=0.2)
    callers.put("stale", strategy="s2", if_match="act:batched:s2:long:9")
    callers.put("c", weight=0.3)
    callers.put("d", strategy="s2", weight=0.4)
    writes.release[1].set()
    assert [callers.reply(n).status for n in ("a", "read", "b", "stale", "c", "d")] == [200, 200, 200, 412, 200, 200]
    assert writes.calls == [["a"], ["b", "c", "d"]]  # one write for the batch, in arrival order
    assert writes.answered_before[1] == ["a", "read"]  # nobody of the batch was answered before its commit
    assert [_etag(callers.reply(n)) for n in ("b", "c", "d")] == [
        "act:batched:s1:long:2", "act:batched:s1:long:3", "act:batched:s2:long:4"]
    entries = h.client.get(f"/worlds/{W}/audit").json()
    assert [e["result"].get("weight") for e in entries if e["event"] == "activation_updated"] == [0.1, 0.2, 0.3, 0.4]
    state = h.client.get(f"/worlds/{W}/activation", params={"strategy_id": "s1", "side": "long"}).json()
    assert (state["weight"], state["etag"]) == (0.3, "act:batched:s1:long:3")


def test_a_command_id_repeated_within_a_batch_is_applied_once(harness_factory, tmp_path, sql_dsn) -> None:
    h, callers, writes = _setup(harness_factory, tmp_path, sql_dsn)
    writes.gate(1)
    callers.put("a", weight=0.1)
    assert writes.entered[1].wait(10)
    callers.read("read")
    callers.put("first", weight=0.2, command_id="cmd-1")
    callers.put("again", weight=0.2, command_id="cmd-1")  # redelivered before the first one is committed
    callers.put("other", weight=0.9, command_id="cmd-1")  # the same id on other content
    writes.release[1].set()
    assert [callers.reply(n).status for n in ("first", "again", "other")] == [200, 200, 409]
    assert callers.reply("again").body == msgspec.to_builtins(callers.reply("first").body)
    assert writes.calls == [["a"], ["first"]]
    entries = h.client.get(f"/worlds/{W}/audit").json()
    assert [e["result"].get("weight") for e in entries if e["event"] == "activation_updated"] == [0.1, 0.2]


def test_a_failed_commit_fails_its_whole_batch_and_the_batch_sent_behind_it(
        harness_factory, tmp_path, sql_dsn) -> None:
    h, callers, writes = _setup(harness_factory, tmp_path, sql_dsn)
    told = _writes_told(h.system.writer)
    writes.gate(1)
    writes.gate(2, fail=True)
    callers.put("z", weight=0.1)
    assert writes.entered[1].wait(10)
    callers.read("read1")  # holds the world until z is committed, so a1 and a2 share a batch
    callers.put("a1", weight=0.2)
    callers.put("a2", strategy="s2", weight=0.3)
    writes.release[1].set()
    assert writes.entered[2].wait(10)  # the batch [a1, a2] is being committed (and will fail)
    callers.put("b", weight=0.4)  # pipelined: built on a1 and a2, sent before their commit is known
    assert told[2].wait(10)
    callers.read("read2")
    writes.release[2].set()
    assert [callers.reply(n).status for n in ("z", "a1", "a2", "b")] == [200, 503, 503, 503]
    assert callers.reply("a1").body.detail == "storage unavailable; retry"
    assert callers.reply("b").body.detail == "an earlier write of this world failed; retry"
    assert writes.calls[1:] == [["a1", "a2"], ["b"]]
    after = callers.reply("read2").body  # the world reloaded what SQL holds: z only
    assert {sid: sides["long"].weight for sid, sides in after.state.items()} == {"s1": 0.1}
    callers.put("next", strategy="s2", weight=0.5)
    assert (callers.reply("next").status, _etag(callers.reply("next"))) == (200, "act:batched:s2:long:2")
    assert h.system.resident_worlds() == [W]  # a failed commit reloads the world; it is not fenced off


def test_a_request_sent_while_its_world_is_passivated_reaches_the_next_actor_in_order(
        harness_factory, tmp_path, sql_dsn) -> None:
    clock = FakeMonotonic()
    h, callers, writes = _setup(harness_factory, tmp_path, sql_dsn, monotonic=clock)
    routes: Routes = h.system.routes
    old = routes._actors[W]
    writes.gate(1)
    callers.put("p1", weight=0.1)
    assert writes.entered[1].wait(10)
    clock.now += 61
    h.system.directory.tell(Sweep())  # passivates the world: its stop waits for p1's commit
    assert old.actor_stopped.wait(10)  # withdrawn from the routes, stopping
    callers.put("p2", weight=0.2)
    callers.put("p3", weight=0.3)
    writes.release[1].set()
    assert [_etag(callers.reply(n)) for n in ("p1", "p2", "p3")] == [
        f"act:{W}:s1:long:{n}" for n in (1, 2, 3)]
    fresh = routes._actors[W]
    assert fresh.actor_urn != old.actor_urn and h.system.resident_worlds() == [W]
    routes.publish(W, old)  # a stale entry (an actor that died under it) falls back to the Directory
    callers.put("p4", weight=0.4)
    assert _etag(callers.reply("p4")) == f"act:{W}:s1:long:4"
    assert [name for call in writes.calls for name in call] == ["p1", "p2", "p3", "p4"]


class _Ref:
    def __init__(self) -> None:
        self.told: list[object] = []

    def tell(self, message: object) -> None:
        self.told.append(message)


def test_a_worlds_requests_follow_one_on_its_way_through_the_directory() -> None:
    routes = Routes(lambda: 0.0)
    first = Request(command=GetActivationSet(world_id=W), reply=lambda _: None)
    second = Request(command=GetActivationSet(world_id=W), reply=lambda _: None)
    assert routes.deliver(first) is False  # not resident: to the Directory
    ref = _Ref()
    routes.publish(W, ref)  # the Directory started the actor, but has not delivered ``first`` yet
    assert routes.deliver(second) is False  # so ``second`` may not overtake it
    routes.detour_done(W)
    routes.detour_done(W)
    assert routes.deliver(second) is True and ref.told == [second]

