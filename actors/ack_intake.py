"""AckIntake: the bus actor that sequences Gateway ACKs (``activation_ack`` CloudEvents) per (world, run).

What it owns, using the pure rules of ``domain.acks``:

* **dedupe**: an ACK its world recorded is remembered (bounded), and copies that arrive while the first
  is being recorded ride on it, so a copy costs no world message and is counted once as ``duplicate``;
* **order and gaps**: it keeps each run's committed view (``RunView``, told by the world after every
  commit that changes a run, before that commit's callers are answered) and judges an ACK against it:
  duplicates and ACKs for finished runs stop here; one it cannot place (an unknown run, or a sequence its
  view may not have yet) goes to the world, whose durable record is the final judge;
* **phase completion**: when a run's view shows every event of a phase acknowledged, the world is told
  once (``PhaseAcknowledged``) and takes the transitions that waited for it.

Durability: an ACK counts only once its world committed it (``AckActivation`` -> ``SaveAck`` in the
world's fenced write); only then is it remembered and its caller answered, so the Kafka offset is
committed after the record, and a restart re-reads the recorded ACKs from SQL (the world's load tells
this actor the run again). The ACK wait's timeouts stay with the run in the world (they are persisted
run state: deadlines and re-sends survive a restart with it).

Stopping: an ACK the intake can no longer see through (it stopped or failed, or the worlds behind it did)
is answered ``503``, retryable, never left waiting: the Kafka consumer redelivers it, and an ACK that the
world did record meanwhile comes back as a duplicate.
"""

from __future__ import annotations

import queue
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import Reply, ReplyHook, Request, error_reply
from actors.metrics import ActorMetrics
from domain.acks import AckAnomaly, ack_verdict
from messages.apply import ActivationAckEvent, ApplyRun, activation_ack_decoder
from messages.commands import AckActivation, PhaseAcknowledged

log = structlog.get_logger("worldservice.acks")
AckKey = tuple[str, str, int, str]  # (world_id, run_id, sequence, phase)
STOPPED = "ACK intake stopped; retry"
WORLDS_STOPPED = "worlds are stopping; retry"
_FINAL = ("duplicate", "run_finished")  # verdicts a later commit cannot change: dropped here


class AckNote(msgspec.Struct, frozen=True):
    """A world's answer to an ``AckActivation``: what its durable record made of it."""

    anomaly: AckAnomaly | None


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK from the ControlBus; ``reply`` is answered once it is recorded (or dropped)."""

    raw: bytes | dict[str, Any]
    reply: ReplyHook


@dataclass(frozen=True, slots=True)
class RunView:
    """Told by a world after each commit that changed a run (and when it loads an open run)."""

    world_id: str
    run: ApplyRun


@dataclass(frozen=True, slots=True)
class _Settled:
    ack: AckActivation
    reply: Reply


@dataclass
class _InFlight:
    callers: list[ReplyHook] = field(default_factory=list)
    copies: int = 0  # copies that arrived meanwhile: each is a duplicate once the first is recorded


class AckIntake(pykka.ThreadingActor):
    def __init__(self, send: Callable[[Request], None], metrics: ActorMetrics | None = None,
                 remember: int = 100_000, runs: int = 10_000) -> None:
        super().__init__()
        self._send = send  # to a world's actor (through the directory)
        self._metrics = metrics or ActorMetrics()
        self._remember = remember
        self._max_runs = runs
        self._seen: OrderedDict[AckKey, None] = OrderedDict()
        self._in_flight: dict[AckKey, _InFlight] = {}
        self._runs: OrderedDict[tuple[str, str], ApplyRun] = OrderedDict()
        self._announced: set[tuple[str, str, str]] = set()  # (world, run, phase) told complete

    def on_receive(self, message: object) -> None:
        if isinstance(message, AckReceived):
            self._receive(message)
        elif isinstance(message, RunView):
            self._view(message)
        elif isinstance(message, _Settled):
            self._settled(message)

    # --- intake -------------------------------------------------------------------------------

    def _receive(self, received: AckReceived) -> None:
        ack = self._decode(received.raw)
        if ack is None:
            received.reply(Reply(status=204))
            return
        key = _key(ack)
        flight = self._in_flight.get(key)
        if flight is not None:
            flight.callers.append(received.reply)
            flight.copies += 1
            return
        verdict = "duplicate" if key in self._seen else \
            ack_verdict(self._runs.get((ack.world_id, ack.run_id)), ack).anomaly
        if verdict in _FINAL:
            self._note(verdict, ack)
            received.reply(Reply(status=204))
            return
        self._in_flight[key] = _InFlight(callers=[received.reply])
        try:
            self._send(Request(command=ack, reply=self._answer_to_me(ack)))
        except pykka.ActorDeadError:  # the worlds stopped under it: nobody is left to record it
            self._settled(_Settled(ack, error_reply(503, WORLDS_STOPPED)))

    def _answer_to_me(self, ack: AckActivation) -> ReplyHook:
        """The world's answer comes back through this mailbox (the in-flight map is this thread's)."""
        actor = self.actor_ref

        def hook(reply: Reply) -> None:
            try:
                actor.tell(_Settled(ack, reply))
            except pykka.ActorDeadError:  # stopped meanwhile: its callers were already told to retry
                pass

        return hook

    def _decode(self, raw: bytes | dict[str, Any]) -> AckActivation | None:
        try:
            event = (activation_ack_decoder.decode(raw) if isinstance(raw, bytes)
                     else msgspec.convert(raw, ActivationAckEvent))
            data = event.data
            return msgspec.convert({"kind": "ack_activation", "world_id": data.world_id, "run_id": data.run_id,
                                    "sequence": data.sequence, "phase": data.phase}, AckActivation)
        except msgspec.DecodeError as exc:  # also every ValidationError
            self._metrics.ack_anomaly("invalid", error=str(exc))
            return None

    def _settled(self, settled: _Settled) -> None:
        """The world answered: recorded (or judged) durably, or refused for now (a storage error)."""
        ack, reply = settled.ack, settled.reply
        flight = self._in_flight.pop(_key(ack), _InFlight())
        if reply.ok:
            note = reply.body if isinstance(reply.body, AckNote) else AckNote(anomaly=None)
            if note.anomaly is not None:
                self._note(note.anomaly, ack)
            for _ in range(flight.copies):
                self._note("duplicate", ack)
            self._remember_ack(_key(ack))
        for caller in flight.callers:
            caller(reply)

    def _note(self, anomaly: AckAnomaly, ack: AckActivation) -> None:
        self._metrics.ack_anomaly(anomaly, world_id=ack.world_id, run_id=ack.run_id, sequence=ack.sequence,
                                  phase=ack.phase)

    def _remember_ack(self, key: AckKey) -> None:
        self._seen[key] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)

    # --- runs ---------------------------------------------------------------------------------

    def _view(self, view: RunView) -> None:
        run = view.run
        key = (view.world_id, run.run_id)
        self._runs[key] = run
        self._runs.move_to_end(key)
        if len(self._runs) > self._max_runs:
            (world_id, run_id), _ = self._runs.popitem(last=False)
            self._announced -= {(world_id, run_id, p) for p in ("freeze", "unfreeze")}
        if not run.is_open:
            return
        for phase in sorted({e.phase for e in run.events}):
            done = (view.world_id, run.run_id, phase)
            if done not in self._announced and all(e.acked for e in run.events if e.phase == phase):
                self._announce(done)

    def _announce(self, done: tuple[str, str, str]) -> None:
        world_id, run_id, phase = done
        try:
            self._send(Request(command=PhaseAcknowledged(world_id=world_id, run_id=run_id, phase=phase),
                               reply=_nobody))
        except pykka.ActorDeadError:  # stopping: the world's next load tells the run again
            return
        self._announced.add(done)

    # --- stopping -----------------------------------------------------------------------------

    def on_stop(self) -> None:
        self._refuse_waiting()

    def on_failure(self, *exc_info: object) -> None:
        self._refuse_waiting()

    def _refuse_waiting(self) -> None:
        """Every caller still waiting, on a world or queued behind the stop, is told to retry. The queued
        messages go back for pykka's own teardown, which fails the futures of any ``ask`` among them."""
        callers = [caller for flight in self._in_flight.values() for caller in flight.callers]
        self._in_flight.clear()
        queued = []
        while True:
            try:
                queued.append(self.actor_inbox.get_nowait())
            except queue.Empty:
                break
        callers += [envelope.message.reply for envelope in queued if isinstance(envelope.message, AckReceived)]
        for envelope in queued:
            self.actor_inbox.put(envelope)
        if callers:
            log.warning("ack_intake_stopped", refused=len(callers))
        refusal = error_reply(503, STOPPED)
        for caller in callers:
            caller(refusal)


def _nobody(reply: Reply) -> None:
    """Reply hook of ``PhaseAcknowledged``: the world's transitions answer their own callers."""


def _key(ack: AckActivation) -> AckKey:
    return (ack.world_id, ack.run_id, ack.sequence, ack.phase)
