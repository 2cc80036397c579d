"""The ACK intake actor: what a Gateway's repeated, early, missing, unknown and late ACKs do, when a
world is told a phase is acknowledged, and what an ACK gets once the intake (or the worlds behind it) is
gone: a retryable 503, never a hang.

The first tests drive ``AckIntake`` alone, with a recording stand-in for the worlds (``Worlds``) so they
can see which ACKs reach a world and answer them when they choose; the others run the daemon with the
in-memory ControlBus and a fake clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import msgspec
import pykka
import pytest

from actors.ack_intake import STOPPED, WORLDS_STOPPED, AckIntake, AckNote, AckReceived, RunView
from actors.bridge import Reply, Request
from actors.metrics import ActorMetrics
from messages.apply import ApplyRun, RunEvent
from messages.commands import AckActivation, PhaseAcknowledged
from tests.test_apply import FakeGateway, _apply_in_background, _tick_after, _wait_for_phase, _world, apply_api, clock  # noqa: F401
from transport.kafka import ConsumedRecord
from transport.kafka_intake import TransientRefusal, ack_handler

RECORDED = Reply(status=202, body=AckNote(anomaly=None))


class Worlds:
    """Stands in for the directory: keeps every request the intake sends; ``down`` makes it refuse."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.down = False

    def send(self, request: Request) -> None:
        if self.down:
            raise pykka.ActorDeadError("directory stopped")
        self.requests.append(request)

    def acks(self) -> list[Request]:
        return [r for r in self.requests if isinstance(r.command, AckActivation)]

    def phases(self) -> list[tuple[str, str]]:
        return [(r.command.run_id, r.command.phase) for r in self.requests
                if isinstance(r.command, PhaseAcknowledged)]


class Caller:
    """One ACK's reply hook; ``reply`` is what it was answered (None: still waiting)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []

    def __call__(self, reply: Reply) -> None:
        self.replies.append(reply)

    @property
    def reply(self) -> Reply | None:
        assert len(self.replies) <= 1, "answered more than once"
        return self.replies[0] if self.replies else None


class Intake:
    def __init__(self) -> None:
        self.worlds = Worlds()
        self.metrics = ActorMetrics()
        self.ref = AckIntake.start(self.worlds.send, metrics=self.metrics)

    def settle(self) -> None:
        """A mailbox round trip: every message told before it has been handled."""
        self.ref.ask(None, timeout=10)

    def ack(self, sequence: int, phase: str = "freeze", run_id: str = "r1", **data: Any) -> Caller:
        caller = Caller()
        event = {"type": "activation_ack", "data": {"world_id": "w1", "run_id": run_id, "sequence": sequence,
                                                    "phase": phase, **data}}
        self.ref.tell(AckReceived(raw=msgspec.json.encode(event), reply=caller))
        self.settle()
        return caller

    def view(self, run: ApplyRun) -> None:
        self.ref.tell(RunView(world_id="w1", run=run))
        self.settle()

    def answer(self, request: Request, reply: Reply = RECORDED) -> None:
        request.reply(reply)  # what the world's actor does once its write committed
        self.settle()

    def count(self, reason: str) -> float:
        return self.metrics.registry.get_sample_value("world_activation_ack_anomalies_total", {"reason": reason})


@pytest.fixture
def intake() -> Iterator[Intake]:
    started = Intake()
    yield started
    started.ref.stop()


def _run(*events: tuple[int, str, bool], phase: str = "freezing", run_id: str = "r1") -> ApplyRun:
    """A run whose sequenced events are ``(sequence, phase, acked)``."""
    return ApplyRun(
        world_id="w1", run_id=run_id, plan_hash="h", phase=phase, target=["s2"], previous=["s1"], snapshot={},
        started_at="2026-01-01T00:00:00Z", updated_at="2026-01-01T00:00:00Z", deadline="2026-01-01T00:01:00Z",
        events=[RunEvent(sequence=s, phase=p, strategy_id=f"s{s}", side="long", etag=f"e{s}", acked=acked,
                         topic="activation", cloudevent={}) for s, p, acked in events])


# --- dedupe -------------------------------------------------------------------------------------------


def test_copies_of_an_ack_reach_the_world_once_and_every_copy_gets_the_recorded_answer(intake: Intake) -> None:
    intake.view(_run((1, "freeze", False), (2, "freeze", False)))
    first, copy, another = intake.ack(1), intake.ack(1), intake.ack(1)
    assert len(intake.worlds.acks()) == 1  # the copies ride on the first while it is being recorded
    assert (first.reply, copy.reply, another.reply) == (None, None, None)  # nobody is told before the commit
    intake.answer(intake.worlds.acks()[0])
    assert [c.reply for c in (first, copy, another)] == [RECORDED] * 3
    assert intake.count("duplicate") == 2
    late = intake.ack(1)  # after it was recorded: answered here, no world message
    assert late.reply is not None and late.reply.status == 204
    assert len(intake.worlds.acks()) == 1 and intake.count("duplicate") == 3


def test_an_ack_the_world_could_not_record_is_not_remembered_so_its_redelivery_is_recorded(intake: Intake) -> None:
    intake.view(_run((1, "freeze", False)))
    refused = intake.ack(1)
    intake.answer(intake.worlds.acks()[0], Reply(status=503, body={"detail": "storage unavailable; retry"}))
    assert refused.reply is not None and refused.reply.status == 503
    retried = intake.ack(1)
    assert len(intake.worlds.acks()) == 2 and retried.reply is None  # a second try, not a "duplicate"
    intake.answer(intake.worlds.acks()[1])
    assert retried.reply == RECORDED and intake.count("duplicate") == 0


def test_an_ack_of_an_event_the_view_shows_acknowledged_is_a_duplicate_without_a_world_message(
        intake: Intake) -> None:
    intake.view(_run((1, "freeze", True), (2, "freeze", False)))  # e.g. recorded before a restart
    again = intake.ack(1)
    assert again.reply is not None and again.reply.status == 204
    assert intake.worlds.acks() == [] and intake.count("duplicate") == 1


# --- order, gaps, unknown and finished runs -----------------------------------------------------------


def test_early_and_unplaceable_acks_go_to_the_world_which_judges_them(intake: Intake) -> None:
    """The intake neither holds back an early ACK nor drops one its view cannot place (the view may lag
    the world's record): the world's durable record decides, and the intake counts its verdict."""
    intake.view(_run((1, "freeze", False), (2, "freeze", False), (3, "freeze", False)))
    early, beyond, ghost = intake.ack(3), intake.ack(9), intake.ack(1, run_id="ghost")
    sent = intake.worlds.acks()
    assert [(r.command.run_id, r.command.sequence) for r in sent] == [("r1", 3), ("r1", 9), ("ghost", 1)]
    for request, anomaly in zip(sent, ["out_of_order", "unknown_sequence", "unknown_run"]):
        intake.answer(request, Reply(status=202, body=AckNote(anomaly=anomaly)))  # type: ignore[arg-type]
    assert all(c.reply is not None and c.reply.status == 202 for c in (early, beyond, ghost))
    assert [intake.count(r) for r in ("out_of_order", "unknown_sequence", "unknown_run")] == [1, 1, 1]


def test_an_ack_for_a_finished_run_stops_at_the_intake(intake: Intake) -> None:
    intake.view(_run((1, "freeze", True), (2, "unfreeze", False), phase="rolled_back"))
    late = intake.ack(2, phase="unfreeze")
    assert late.reply is not None and late.reply.status == 204
    assert intake.worlds.acks() == [] and intake.count("run_finished") == 1


def test_an_ack_that_is_not_an_activation_ack_is_answered_and_counted_invalid(intake: Intake) -> None:
    caller = Caller()
    intake.ref.tell(AckReceived(raw=b'{"type": "activation_ack", "data": {"world_id": "w1"}}', reply=caller))
    intake.settle()
    assert caller.reply is not None and caller.reply.status == 204
    assert intake.worlds.requests == [] and intake.count("invalid") == 1


# --- phase completion -----------------------------------------------------------------------------------


def test_the_world_is_told_once_when_every_event_of_a_phase_is_acknowledged(intake: Intake) -> None:
    intake.view(_run((1, "freeze", True), (2, "freeze", False)))
    assert intake.worlds.phases() == []  # one of two: nothing to tell
    intake.view(_run((1, "freeze", True), (2, "freeze", True)))
    intake.view(_run((1, "freeze", True), (2, "freeze", True), phase="switching"))  # a later commit, same phase
    assert intake.worlds.phases() == [("r1", "freeze")]
    intake.view(_run((1, "freeze", True), (2, "freeze", True), (3, "unfreeze", True), phase="unfreezing"))
    assert intake.worlds.phases() == [("r1", "freeze"), ("r1", "unfreeze")]
    intake.view(_run((1, "freeze", True), phase="completed", run_id="r0"))  # finished runs need nothing
    assert intake.worlds.phases() == [("r1", "freeze"), ("r1", "unfreeze")]


def test_a_phase_the_world_could_not_be_told_about_is_told_on_the_next_view(intake: Intake) -> None:
    intake.worlds.down = True
    intake.view(_run((1, "freeze", True)))
    intake.worlds.down = False
    intake.view(_run((1, "freeze", True)))  # what a world sends when it loads the run again
    assert intake.worlds.phases() == [("r1", "freeze")]


# --- a stopped intake, stopped worlds -----------------------------------------------------------------


def test_acks_waiting_on_a_world_when_the_intake_stops_are_told_to_retry(intake: Intake) -> None:
    intake.view(_run((1, "freeze", False)))
    waiting, copy = intake.ack(1), intake.ack(1)
    intake.ref.stop(block=True)
    assert [c.reply.status for c in (waiting, copy)] == [503, 503]  # type: ignore[union-attr]
    assert waiting.reply.body.detail == STOPPED  # type: ignore[union-attr]
    intake.worlds.acks()[0].reply(RECORDED)  # the world answers late: nobody is answered twice, nothing raises
    assert len(waiting.replies) == 1


def test_an_ack_the_worlds_cannot_take_is_a_retryable_503_and_is_recorded_when_retried(intake: Intake) -> None:
    intake.view(_run((1, "freeze", False)))
    intake.worlds.down = True
    refused = intake.ack(1)
    assert refused.reply is not None and (refused.reply.status, refused.reply.body.detail) == (503, WORLDS_STOPPED)
    intake.worlds.down = False
    retried = intake.ack(1)
    intake.answer(intake.worlds.acks()[0])
    assert retried.reply == RECORDED and intake.ref.is_alive()


def _ack_record(data: dict[str, Any]) -> ConsumedRecord:
    event = {"type": "activation_ack", "data": {k: data[k] for k in ("world_id", "run_id", "sequence", "phase")}}
    return ConsumedRecord(topic="control.activation.ack", partition=0, offset=0, key="w1",
                          value=msgspec.json.encode(event), headers={})


def test_an_ack_to_a_stopped_intake_is_a_retryable_503_and_the_kafka_batch_is_redelivered(apply_api) -> None:  # noqa: F811
    h = apply_api(await_acks=True)
    gateway = FakeGateway(h, acking=False)
    _world(h)
    _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert gateway.freeze_seen.wait(10)
    h.system.acks.stop(block=True)
    direct = Caller()
    h.system.receive_ack(AckReceived(raw=_ack_record(gateway.seen[0]).value, reply=direct))
    assert direct.reply is not None and (direct.reply.status, direct.reply.body.detail) == (503, STOPPED)
    handler = ack_handler(h.system.receive_ack, timeout_s=5)
    with pytest.raises(TransientRefusal):  # not an ActorDeadError, nor a wait for the 5 s timeout
        asyncio.run(handler([_ack_record(gateway.seen[0])]))
    h.system.receive_ack_now({"type": "activation_ack", "data": gateway.seen[0]})  # in-memory bus: dropped
    assert h.client.get("/worlds/w1/apply/r1").json()["state"] == "freezing"  # the ACK was not recorded


# --- with the daemon: gaps and timeouts on the fake clock -----------------------------------------------


def test_acks_in_reverse_order_complete_the_run_and_each_early_one_is_counted(apply_api) -> None:  # noqa: F811
    h = apply_api(await_acks=True)
    gateway = FakeGateway(h, acking=False)
    _world(h, entries={"s1": 0.3, "s2": 0.3, "s3": 0.3})  # three freeze events
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s4"]}})
    assert gateway.freeze_seen.wait(10)
    h.system.relay_now()
    freezes = [e for e in gateway.seen if e["phase"] == "freeze"]
    assert len(freezes) == 3
    gateway.acking = True  # unfreeze events are acknowledged as they come
    for event in reversed(freezes):
        gateway.ack(event)
    assert pending.result(timeout=10).json()["phase"] == "completed"
    early = h.system.metrics.registry.get_sample_value("world_activation_ack_anomalies_total",
                                                      {"reason": "out_of_order"})
    assert early == 2  # 3 overtook 1 and 2; 2 overtook 1


def test_a_gap_in_the_acks_holds_the_switch_until_the_missing_one_arrives(apply_api, clock) -> None:  # noqa: F811
    h = apply_api(await_acks=True, activation_gap_timeout_ms=3000, deadline_ms=60_000)
    gateway = FakeGateway(h, acking=False)
    _world(h, entries={"s1": 0.3, "s2": 0.3, "s3": 0.3})  # three freeze events
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s4"]}})
    assert gateway.freeze_seen.wait(10)
    h.system.relay_now()
    first, second, third = [e for e in gateway.seen if e["phase"] == "freeze"]
    gateway.ack(first)
    gateway.ack(third)
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert (run["state"], [e["acked"] for e in run["events"]]) == ("freezing", [True, False, True])
    _tick_after(h, clock, 3001)  # the gap outlives its timeout: the caller hears the run is held
    held = pending.result(timeout=10)
    assert held.status_code == 202 and held.json()["phase"] == "awaiting_ack"
    gateway.acking = True
    gateway.ack(second)
    assert _wait_for_phase(h, "r1", "completed")["phase"] == "completed"


def test_a_late_ack_after_a_timeout_rolled_the_run_back_changes_nothing(apply_api, clock) -> None:  # noqa: F811
    h = apply_api(await_acks=True, timeout_policy="rollback")
    gateway = FakeGateway(h, acking=False)
    _world(h)
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert gateway.freeze_seen.wait(10)
    _tick_after(h, clock, 3001)
    assert pending.result(timeout=10).status_code == 500
    gateway.ack(gateway.seen[0])
    run = h.client.get("/worlds/w1/apply/r1").json()
    assert run["phase"] == "rolled_back" and not any(e["acked"] for e in run["events"])
    finished = h.system.metrics.registry.get_sample_value("world_activation_ack_anomalies_total",
                                                         {"reason": "run_finished"})
    assert finished == 1
