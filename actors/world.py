"""WorldActor: serializes every mutation of one world and answers its reads from memory.

A mutation is handled by a pure domain function, its effects are committed through the SqlWriter (the
reply waits for the commit), the activation projection update is *told* to the projection actor, and the
caller is answered. The reply does not wait for Redis: the projection is a cache of SQL, written just
after the reply (within milliseconds, in commit order), and repaired from SQL when it lags (a failed
write, a flushed or absent Redis). A reply means durable in SQL, not yet visible in Redis.

Plain mutations are batched and pipelined: a wake-up takes every plain mutation already waiting in the
mailbox, handles each against the evolving state (a refused one changes nothing for the others), sends
one write for them all and moves on; the commit's completion answers the callers (``world_commits``).
Everything else (reads, apply runs, the allocation hold) first waits for the commits in flight, then takes
the path where the world itself waits for its commit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import Reply, Request, answer_reply, error_reply, outcome_reply, refusal_reply
from actors.ack_intake import AckNote, PhaseAcknowledged, RunView
from actors.apply_driver import ApplyDriver, apply_settings
from actors.directory_messages import RunOpen, WorldStopped, WorldVacant
from actors.risk_world import store_snapshot
from actors.sql_writer import WriteRequest
from actors.world_batch import BatchedMutations
from actors.world_commits import Commit, Epoch, UnknownOutcome
from config import Config
from actors.metrics import ActorMetrics
from domain.effects import RememberCommand, RemoveActivation, RemoveWorld, SaveAck, SaveActivation, SaveApplyRun
from domain.handle import answer, handle, is_mutation
from domain.idempotency import StoredReply, command_hash, replayed
from domain.state import Outcome, WorldState, require_world
from messages.decisions import DecisionHistoryOut
from domain.timefmt import iso_z, parse_iso
from messages.commands import (
    AckActivation, ApplyPromotion, ApplyTick, AutoApplyPromotion, Command, GetAudit, GetDecisionHistory,
    HoldForAllocation, RefreshProjection, ReleaseAllocation, RunLiveMonitoring, StartApply, StoreRiskSnapshot,
)
from messages.apply import ApplyRun
from messages.errors import CommandRejected, not_found
from messages.kinds import kind_of
from storage.sql import SqlStore, StaleWriter, StorageUnavailable, WriteItem

log = structlog.get_logger("worldservice.world")


class WorldActor(BatchedMutations, pykka.ThreadingActor):
    def __init__(self, world_id: str, store: SqlStore, writer: pykka.ActorRef, projection: Any,
                 clock: Callable[[], datetime], tell_directory: Callable[[object], None],
                 config: Config | None = None, metrics: ActorMetrics | None = None,
                 tell_acks: Callable[[object], None] | None = None,
                 hand_off: Callable[[Callable[[], None]], None] | None = None) -> None:
        super().__init__()
        self._hand_off = hand_off or (lambda work: work())  # where a commit's callers are answered
        self._tell_acks = tell_acks or (lambda _: None)  # the ACK intake: each committed run view
        self._metrics = metrics or ActorMetrics()
        self.world_id = world_id
        self._store = store
        self._writer = writer
        self._projection = projection
        self._clock = clock
        self._tell_directory = tell_directory
        config = config if config is not None else Config()
        self._write_timeout_s = config.worldservice.actors.write_timeout_s
        self._max_batch = config.worldservice.actors.group_commit_max
        self._epoch = Epoch()
        self._tail: Commit | None = None  # the last batch sent, until known committed
        self._pending_ids: dict[str, StoredReply] = {}  # command ids handled but maybe not yet committed
        self._driver = ApplyDriver(world_id, lambda: self._state, self._persist, clock,
                                   apply_settings(config), self._metrics)
        self._run_open = False
        self._held_by: str | None = None  # an allocation run holding this world
        self._deferred: list[Request] = []
        self.state: WorldState | None = None  # loaded lazily so a storage outage is an error reply, not a hang

    def on_receive(self, message: object) -> None:
        if isinstance(message, Request):
            self._receive(message, take_waiting=True)

    def _receive(self, message: Request, take_waiting: bool) -> None:
        if self._deferring(message):
            self._deferred.append(message)
            return
        if isinstance(message.command, ReleaseAllocation):
            self._release(message)  # never through loading: a storage error must not keep the world held
            return
        if self._batchable(message):
            self._serve_batch([message, *self._take_waiting()] if take_waiting else [message])
            self._report_status()
            return
        try:
            self._settle_commits()  # what follows reads (or waits for) committed state
            reply = self._serve(message)
        except BaseException:  # even a failing logger must not leave a caller waiting forever
            self.state = None
            reply = error_reply(500, "internal error; retry")
        self._report_status()  # before the reply: a caller that reads residency next sees it settled
        if reply is not None:
            message.reply(reply)

    def _batchable(self, request: Request) -> bool:
        """A plain mutation: handled by the domain alone, so it can share a batch and a commit."""
        command = request.command
        return (self._held_by is None and is_mutation(command) and type(command) not in self._APPLY_HANDLERS
                and not isinstance(command, ReleaseAllocation))

    def _take_waiting(self) -> list[Request]:
        """The plain mutations queued right behind this one. Peeked under the inbox's own lock, so the
        first message that is not one stays first in line for the ordinary loop (order is kept)."""
        inbox, taken = self.actor_inbox, []
        with inbox.mutex:  # type: ignore[attr-defined]
            queue = inbox.queue  # type: ignore[attr-defined]
            while queue and len(taken) < self._max_batch and isinstance(queue[0].message, Request) \
                    and self._batchable(queue[0].message):
                taken.append(queue.popleft().message)
        return taken

    def _deferring(self, request: Request) -> bool:
        """While an allocation run holds this world, everything but its release waits, in order."""
        command = request.command
        return self._held_by is not None and not (isinstance(command, ReleaseAllocation)
                                                  and command.run_id == self._held_by)

    def _hold(self, request: Request, now: datetime) -> Reply:
        command = request.command
        assert isinstance(command, HoldForAllocation)
        self._held_by = command.run_id
        state = self._state
        return Reply(status=200, body={"row_version": state.row_version,
                                       "activation_counter": state.activation_counter})

    def _release(self, request: Request) -> None:
        command = request.command
        assert isinstance(command, ReleaseAllocation)
        if command.run_id != self._held_by:
            request.reply(Reply(status=204))
            return
        self._held_by = None
        if command.row_version is not None and self.state is not None:
            self.state.row_version = command.row_version  # the coordinator committed for this world
        request.reply(Reply(status=204))
        deferred, self._deferred = self._deferred, []
        for waiting in deferred:
            self._receive(waiting, take_waiting=False)  # the mailbox's messages came after these

    def on_stop(self) -> None:
        self._settle_commits()  # a successor loads from SQL: what this actor sent is committed first
        for waiting in self._deferred:
            waiting.reply(error_reply(503, "world stopped while held; retry"))

    def _report_status(self) -> None:
        if self.state is None:
            return
        if self.state.world is None and self.state.open_run() is None and self._held_by is None:
            self._tell_directory(WorldVacant(world_id=self.world_id, actor_urn=self.actor_urn))
        is_open = self.state.open_run() is not None
        if is_open != self._run_open:
            self._run_open = is_open
            self._tell_directory(RunOpen(world_id=self.world_id, actor_urn=self.actor_urn, open=is_open))

    def _serve(self, request: Request) -> Reply | None:
        command = request.command
        bound = log.bind(world_id=self.world_id, kind=type(command).__name__,
                         correlation_id=command.correlation_id)
        try:
            reply = self._dispatch(request)
        except CommandRejected as exc:
            reply = refusal_reply(exc)
        except StorageUnavailable as exc:
            bound.error("storage_unavailable", error=str(exc))
            reply = self._reset(request, 503, "storage unavailable; retry")
        except StaleWriter:
            bound.error("world_fenced_off")
            self._stop_fenced()
            reply = self._reset(request, 503, "world was changed by another writer; retry")
        except UnknownOutcome:
            bound.error("commit_unanswered")
            reply = self._reset(request, 503, "the write's outcome is unknown; read the world before retrying")
        except Exception as exc:  # an actor must outlive any one command: reload and answer
            bound.exception("command_failed", error=repr(exc))
            reply = self._reset(request, 500, "internal error; retry")
        if reply is not None:
            self._account(command, reply, bound)
        return reply

    def _account(self, command: Command, reply: Reply, bound: Any) -> None:
        """The command's log line (mutations) and the counters its answer feeds."""
        if kind_of(command).logged:  # declared with the kind (internal messages are quiet)
            bound.info("command", status=reply.status)
        if isinstance(command, RunLiveMonitoring):
            self._metrics.observe_live_monitoring(reply.status, getattr(reply.body, "updated", 0))

    def _reset(self, request: Request, status: int, detail: str) -> Reply | None:
        """Memory may be ahead of SQL: drop it (the next message reloads) and release parked callers, who
        retry with the same run id and attach to the run again. ``None`` when ``request`` was one of them."""
        self.state = None
        reply = error_reply(status, detail)
        return None if self._driver.release_parked(reply, request) else reply

    def _dispatch(self, request: Request) -> Reply | None:
        command = request.command
        state = self._loaded()
        storage_read = self._STORAGE_READS.get(type(command))
        if storage_read is not None:  # logs kept in SQL only, beyond what memory holds
            return storage_read(self, state, command)
        now = self._clock()
        special = self._APPLY_HANDLERS.get(type(command))
        if special is not None:
            return special(self, request, now)
        if is_mutation(command):
            return self._mutate(state, command, now)
        outcome = answer(state, command, now)
        self._persist(outcome, command.actor, command.correlation_id, now)  # a read rarely has effects
        return outcome_reply(outcome)

    def _mutate(self, state: WorldState, command: Command, now: datetime) -> Reply:
        if command.command_id is None:
            outcome = handle(state, command, now)
        else:
            digest = command_hash(command)
            stored = self._store.command_reply(self.world_id, command.command_id)
            if stored is not None:  # a redelivered command: the first outcome, not a second application
                return answer_reply(*replayed(command.command_id, stored, digest))
            outcome = handle(state, command, now)
            outcome.effects.append(RememberCommand(command_id=command.command_id, result=outcome.result,
                                                   reply=msgspec.to_builtins(outcome.reply), content_hash=digest))
        self._persist(outcome, command.actor, command.correlation_id, now)
        return outcome_reply(outcome)

    def _loaded(self) -> WorldState:
        if self.state is None:
            self.state = self._store.load_world(self.world_id)
            run = self.state.open_run()
            if run is not None:  # the intake sequences its ACKs from this committed view
                self._tell_acks(RunView(world_id=self.world_id, run=run))
            self._driver.resume()
        return self.state

    # --- apply runs: the driver sequences them; the world serializes and persists -----------------

    def _start_apply(self, request: Request, now: datetime) -> Reply | None:
        return self._driver.start(request, now)

    def _promote(self, request: Request, now: datetime) -> Reply | None:
        return self._driver.promote(request, now)

    def _on_ack(self, request: Request, now: datetime) -> Reply:
        command = request.command
        assert isinstance(command, AckActivation)
        return Reply(status=202, body=AckNote(anomaly=self._driver.record_ack(command, now).anomaly))

    def _on_phase_acknowledged(self, request: Request, now: datetime) -> Reply:
        command = request.command
        assert isinstance(command, PhaseAcknowledged)
        self._driver.phase_acknowledged(command.run_id)
        return Reply(status=204)

    def _on_tick(self, request: Request, now: datetime) -> Reply:
        self._driver.tick(now)
        return Reply(status=204)

    @property
    def _state(self) -> WorldState:
        assert self.state is not None
        return self.state

    def _refresh_projection(self, request: Request, now: datetime) -> Reply:
        """Told through this mailbox, so the rewrite is ordered with this world's own projection writes."""
        state = self._state
        if state.world is None:
            self._projection.delete(self.world_id)
        else:
            self._projection.replace(self.world_id, state.activation_counter, state.activation)
        return Reply(status=204)

    _APPLY_HANDLERS: dict[type, Callable[[WorldActor, Request, datetime], Reply | None]] = {
        StartApply: _start_apply, AckActivation: _on_ack, ApplyTick: _on_tick,
        PhaseAcknowledged: _on_phase_acknowledged,
        RefreshProjection: _refresh_projection, HoldForAllocation: _hold,
        ApplyPromotion: _promote, AutoApplyPromotion: _promote,
        StoreRiskSnapshot: store_snapshot,  # the version rule reads SQL inside this mailbox
    }

    # --- persistence -----------------------------------------------------------------------------

    def _persist(self, outcome: Outcome, actor: str | None, correlation_id: str | None, now: datetime) -> None:
        if not outcome.effects:
            self.state = outcome.state
            return
        before = self._state.row_version
        item = WriteItem(world_id=self.world_id, expected_version=before,
                         activation_counter=outcome.state.activation_counter, effects=outcome.effects,
                         actor=actor, correlation_id=correlation_id, created_at=iso_z(now))
        done = pykka.ThreadingFuture()
        self._writer.tell(WriteRequest(item=item, done=done))
        try:
            result = done.get(timeout=self._write_timeout_s)
        except pykka.Timeout:
            raise UnknownOutcome() from None
        if result is not None:
            raise result
        outcome.state.row_version = before + 1
        previous_runs = self._state.runs
        self.state = outcome.state
        self._committed(outcome, previous_runs)

    def _committed(self, outcome: Outcome, previous_runs: dict[str, ApplyRun]) -> None:
        """After the commit, before any caller of it is answered: the projection, the ACK intake's run
        views and the run counters. Runs on the writer's thread for a pipelined batch, so it reads only
        ``outcome`` (never ``self.state``, which may be ahead by later batches)."""
        self._project(outcome)
        changed: set[str] = set()
        for effect in outcome.effects:
            if isinstance(effect, SaveApplyRun):
                self._metrics.observe_run(previous_runs.get(effect.run.run_id), effect.run)
                changed.add(effect.run.run_id)
            elif isinstance(effect, SaveAck):
                self._observe_ack(previous_runs.get(effect.run_id))
                changed.add(effect.run_id)
        for run_id in sorted(changed):
            run = outcome.state.runs.get(run_id)
            if run is not None:
                self._tell_acks(RunView(world_id=self.world_id, run=run))

    def _observe_ack(self, run: ApplyRun | None) -> None:
        self._metrics.acks.inc()
        if run is not None and run.waiting_since is not None:
            self._metrics.ack_wait.observe((self._clock() - parse_iso(run.waiting_since)).total_seconds())

    def _project(self, outcome: Outcome) -> None:
        """Told, not asked: the projection actor applies a world's updates in mailbox order, records a
        failed write for repair, and SQL (already committed) stays the record; waiting would only add a
        thread hop to every write. A removal rewrites the world's whole projection."""
        state = outcome.state
        try:
            if any(isinstance(e, RemoveActivation) for e in outcome.effects):
                self._projection.replace(self.world_id, state.activation_counter, state.activation)
                return
            for effect in outcome.effects:
                if isinstance(effect, SaveActivation):
                    self._projection.put_entry(self.world_id, state.activation_counter, effect.strategy_id,
                                               effect.side, effect.entry)
                elif isinstance(effect, RemoveWorld):
                    self._projection.delete(self.world_id)
        except pykka.ActorDeadError:  # committed already; the startup check repairs the projection
            log.error("projection_unavailable", world_id=self.world_id)

    def _audit(self, state: WorldState, query: GetAudit) -> Reply:
        page = self._store.audit_page(self.world_id, query.after, query.limit)
        if state.world is None and not page.entries and query.after == 0:
            raise not_found("world")
        return Reply(status=200, body=page)

    def _decision_history(self, state: WorldState, query: GetDecisionHistory) -> Reply:
        require_world(state)
        return Reply(status=200, body=DecisionHistoryOut(
            entries=self._store.decision_history(self.world_id, query.limit)))

    _STORAGE_READS: dict[type, Callable[[WorldActor, WorldState, Any], Reply]] = {
        GetAudit: _audit, GetDecisionHistory: _decision_history,
    }


    def _stop_fenced(self) -> None:
        """The Directory stops this actor (as a passivation: withdrawn from routing first, then drained),
        so no request sent to it meanwhile is lost. A failure learned while stopping (``on_stop`` settles the
        commits in flight) may find the Directory stopped already: the whole system stops, this actor too."""
        try:
            self._tell_directory(WorldStopped(world_id=self.world_id, actor_urn=self.actor_urn))
        except pykka.ActorDeadError:
            pass

