"""AllocationCoordinator: ``POST /allocations`` as one cross-world command.

One coordinator owns every allocation run, so runs never deadlock on each other's worlds. It serves what
queued in its mailbox as one batch, in waves: a wave holds runs of disjoint worlds (and distinct run ids),
and a run that shares a world or its run id with an earlier one of the batch goes in a later wave, so
overlapping runs keep their arrival order. A wave takes its worlds' actors at once (each answers with its
fence and defers its other messages until released), so an allocation never interleaves with a world's
apply or activation writes; the plans are computed from the stored allocations read once for the wave;
each run commits its worlds all or none, and the wave's runs share one commit (``AtomicWrite``); then the
worlds are released. The executor runs only after the commit, and a repeat of an unexecuted run executes
it once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import Reply, Request, error_reply, refusal_reply
from actors.sql_writer import AtomicWrite, AtomicWrites
from domain.effects import SaveAllocationRun
from domain.rebalancing import (
    allocation_etag, allocation_response, allocation_waves, check_replay, plan_allocation, touched_worlds, validate_allocations,
)
from domain.rebalancing.events import allocation_effects
from domain.timefmt import iso_z
from messages.commands import HoldForAllocation, ReleaseAllocation
from messages.errors import CommandRejected, Refusal
from messages.rebalancing import AllocationUpsertRequest, MultiWorldRebalanceResponse
from storage.sql import SqlStore, WriteItem

log = structlog.get_logger("worldservice.allocations")
NO_EXECUTOR = "Rebalance executor not configured"
_UNAVAILABLE = error_reply(503, "allocation could not be committed; retry with the same run_id")
EXECUTION_FAILED = "Rebalance execution failed"


class NotConfigured(CommandRejected):
    """Unavailable until an operator configures the executor: not worth a redelivery."""

    def __init__(self) -> None:
        super().__init__(Refusal.UNAVAILABLE, NO_EXECUTOR)


@dataclass
class _Run:
    """One queued upsert on its way through a wave."""

    message: Request
    request: AllocationUpsertRequest
    etag: str
    worlds: list[str]
    holds: dict[str, pykka.ThreadingFuture] = field(default_factory=dict)  # asked, per world
    fences: dict[str, dict[str, int]] = field(default_factory=dict)  # answered, per world
    plan: Any = None
    snapshot: dict[str, Any] | None = None
    done: pykka.ThreadingFuture | None = None  # the commit's outcome
    answered: bool = False

    def answer(self, reply: Reply) -> None:
        if not self.answered:
            self.answered = True
            self.message.reply(reply)


class AllocationCoordinator(pykka.ThreadingActor):
    def __init__(self, store: SqlStore, writer: pykka.ActorRef, send: Callable[[Request], None],
                 clock: Callable[[], datetime], executor: Any = None, timeout_s: float = 30.0,
                 max_batch: int = 256) -> None:
        super().__init__()
        self._store = store
        self._writer = writer
        self._send = send
        self._clock = clock
        self._executor = executor
        self._timeout_s = timeout_s
        self._max_batch = max_batch

    def on_receive(self, message: object) -> None:
        if not isinstance(message, Request):
            return
        runs = [run for m in [message, *self._take_waiting()] if (run := self._answered_or_run(m)) is not None]
        for indices in allocation_waves([(run.request.run_id, run.worlds) for run in runs]):
            wave = [runs[i] for i in indices]
            try:
                self._serve_wave(wave)
            except Exception as exc:  # noqa: BLE001 - storage failed: whoever is still waiting gets a 503
                log.exception("allocation_failed", error=repr(exc))
                for run in wave:
                    run.answer(_UNAVAILABLE)

    def _take_waiting(self) -> list[Request]:
        """The upserts queued right behind this one (peeked under the inbox's lock; order is kept)."""
        inbox, taken = self.actor_inbox, []
        with inbox.mutex:  # type: ignore[attr-defined]
            queue = inbox.queue  # type: ignore[attr-defined]
            while queue and len(taken) < self._max_batch and isinstance(queue[0].message, Request):
                taken.append(queue.popleft().message)
        return taken

    def _answered_or_run(self, message: Request) -> _Run | None:
        """A valid upsert as a run; anything refused on its own content is answered here."""
        request = message.command.body
        try:
            validate_allocations(request)
        except CommandRejected as exc:
            message.reply(refusal_reply(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - the caller must get an answer
            log.exception("allocation_failed", error=repr(exc))
            message.reply(_UNAVAILABLE)
            return None
        return _Run(message, request, allocation_etag(request), touched_worlds(request))

    def _serve_wave(self, wave: list[_Run]) -> None:
        stored = self._store.allocation_runs([run.request.run_id for run in wave])
        new: list[_Run] = []
        for run in wave:
            previous = stored.get(run.request.run_id)
            if previous is not None:
                self._answer(run, lambda r=run, s=previous: self._replay(r.request, r.etag, s))
            elif run.request.execute and self._executor is None:
                run.answer(refusal_reply(NotConfigured(), permanent=True))  # before anything is stored
            else:
                new.append(run)
        if new:
            self._commit_wave(new)

    @staticmethod
    def _answer(run: _Run, compute: Callable[[], Any]) -> None:
        """``compute``'s reply, or the refusal it raised; a run answered on the way is left alone."""
        try:
            reply = compute()
        except NotConfigured as exc:
            reply = refusal_reply(exc, permanent=True)
        except CommandRejected as exc:
            reply = refusal_reply(exc)
        except Exception as exc:  # noqa: BLE001 - the caller must get an answer; nothing half-committed
            log.exception("allocation_failed", run_id=run.request.run_id, error=repr(exc))
            reply = _UNAVAILABLE
        if reply is not None:
            run.answer(reply)

    def _replay(self, request: AllocationUpsertRequest, etag: str, stored: dict[str, Any]) -> Reply:
        check_replay(request, etag, stored["etag"])
        plan = msgspec.convert(stored["record"]["plan"], MultiWorldRebalanceResponse)
        executed, response = stored["executed"], None
        if request.execute and not executed:
            if self._executor is None:
                raise NotConfigured()
            executed, response = self._execute(request.run_id, stored["record"]["snapshot"])
        return Reply(200, allocation_response(plan, run_id=request.run_id, etag=etag, executed=executed,
                                              execution_response=response))

    def _commit_wave(self, wave: list[_Run]) -> None:
        """Hold every world of the wave, plan and write each run, release the worlds, answer."""
        for run in wave:  # every hold is sent before any answer is awaited
            run.holds = {world_id: self._hold(world_id, run.request.run_id) for world_id in run.worlds}
        try:
            held = [run for run in wave if self._all_held(run)]
            self._plan_and_write(held)
        finally:
            for run in wave:
                self._release_worlds(run)
        for run in wave:
            if run.done is not None:
                self._answer(run, lambda r=run: self._committed_reply(r))

    def _release_worlds(self, run: _Run) -> None:
        """Every world asked, held or not (a hold answered late is let go too); committed worlds move on to
        their next row version."""
        committed = run.done is not None and self._outcome(run) is None
        for world_id in run.worlds:
            fence = run.fences.get(world_id)
            self._release(world_id, run.request.run_id, fence["row_version"] + 1 if committed and fence else None)

    def _all_held(self, run: _Run) -> bool:
        """Waits for ``run``'s holds; a world that does not answer in time refuses the run (503)."""
        for world_id, answer in run.holds.items():
            try:
                reply = answer.get(timeout=self._timeout_s)
            except pykka.Timeout:
                reply = None
            if reply is None or reply.status != 200:
                run.answer(refusal_reply(CommandRejected(
                    Refusal.UNAVAILABLE, f"world {world_id} unavailable; retry with the same run_id")))
                return False
            run.fences[world_id] = reply.body
        return True

    def _plan_and_write(self, wave: list[_Run]) -> None:
        stored = self._store.world_allocations([w for run in wave for w in run.worlds])
        now = self._clock()
        writes: list[AtomicWrite] = []
        for run in wave:
            self._answer(run, lambda r=run: self._planned_write(r, stored, now, writes))
        if writes:
            self._writer.tell(AtomicWrites(runs=writes))  # the wave's runs in one message: one commit

    def _planned_write(self, run: _Run, stored: dict[str, dict[str, Any]], now: datetime,
                       writes: list[AtomicWrite]) -> None:
        """Plans ``run`` and adds its write to ``writes`` (``None``: answered after the commit)."""
        items = self._planned_items(run, stored, now)
        run.done = pykka.ThreadingFuture()
        writes.append(AtomicWrite(items=items, done=run.done))

    def _outcome(self, run: _Run) -> Exception | None:
        assert run.done is not None
        try:
            return run.done.get(timeout=self._timeout_s)
        except pykka.Timeout as exc:
            return exc

    def _committed_reply(self, run: _Run) -> Reply:
        failure = self._outcome(run)
        if failure is not None:
            raise failure
        request = run.request
        executed, response = self._execute(request.run_id, run.snapshot) if request.execute else (False, None)
        return Reply(200, allocation_response(run.plan, run_id=request.run_id, etag=run.etag, executed=executed,
                                              execution_response=response))

    def _planned_items(self, run: _Run, stored: dict[str, dict[str, Any]], now: datetime) -> list[WriteItem]:
        mine = {w: stored[w] for w in run.worlds if w in stored}
        normalized, run.plan = plan_allocation(
            run.request, {w: r["allocation"] for w, r in mine.items()},
            {w: r.get("strategy_alloc_total") or {} for w, r in mine.items()})
        run.snapshot = msgspec.to_builtins(normalized)
        record = SaveAllocationRun(run_id=run.request.run_id, etag=run.etag,
                                   record={"plan": msgspec.to_builtins(run.plan), "snapshot": run.snapshot})
        items = [self._item(run.request, run.etag, w, run.fences[w], run.plan, now) for w in run.worlds]
        items[0] = dataclasses.replace(items[0], effects=[record, *items[0].effects])  # the run lands atomically too
        return items

    @staticmethod
    def _item(request: AllocationUpsertRequest, etag: str, world_id: str, fence: dict[str, int],
              plan: MultiWorldRebalanceResponse, now: datetime) -> WriteItem:
        totals = (request.strategy_alloc_after_total or {}).get(world_id)
        record = {"world_id": world_id, "allocation": request.world_allocations[world_id], "run_id": request.run_id,
                  "etag": etag, "strategy_alloc_total": totals, "updated_at": iso_z(now)}
        effects = allocation_effects(world_id, record, plan.per_world.get(world_id), f"allocation:{request.run_id}", now)
        return WriteItem(world_id=world_id, expected_version=fence["row_version"],
                         activation_counter=fence["activation_counter"], effects=effects,
                         correlation_id=f"allocation:{request.run_id}", created_at=iso_z(now))

    def _hold(self, world_id: str, run_id: str) -> pykka.ThreadingFuture:
        answer: pykka.ThreadingFuture = pykka.ThreadingFuture()
        self._send(Request(command=HoldForAllocation(world_id=world_id, run_id=run_id), reply=answer.set))
        return answer

    def _release(self, world_id: str, run_id: str, row_version: int | None) -> None:
        self._send(Request(command=ReleaseAllocation(world_id=world_id, run_id=run_id, row_version=row_version),
                           reply=lambda reply: None))

    def _execute(self, run_id: str, snapshot: dict[str, Any]) -> tuple[bool, Any]:
        try:
            response = self._executor.execute(snapshot)
        except Exception as exc:  # noqa: BLE001 - any executor failure is a 502; the run stays unexecuted
            log.error("allocation_execution_failed", run_id=run_id, error=repr(exc))
            raise CommandRejected(Refusal.UPSTREAM_FAILED, EXECUTION_FAILED) from None
        self._store.mark_allocation_executed(run_id, response)
        return True, response
