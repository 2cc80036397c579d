"""AllocationCoordinator: ``POST /allocations`` as one cross-world command.

One coordinator serializes allocation runs. A new run takes its worlds' actors in sorted order (each
answers with its fence and defers its other messages until released), so an allocation never interleaves
with a world's apply or activation writes and two runs cannot deadlock; the plan is computed from the
stored allocations and committed for every world in one transaction; then the worlds are released. The
executor runs only after the commit, and a repeat of an unexecuted run executes it once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pykka
import structlog

from actors.bridge import Reply, Request, error_reply, refusal_reply
from actors.sql_writer import AtomicWrite
from domain.effects import SaveAllocationRun
from domain.rebalancing import (
    allocation_etag, allocation_response, check_replay, plan_allocation, touched_worlds, validate_allocations,
)
from domain.rebalancing.events import allocation_effects
from domain.timefmt import iso_z
from messages.commands import HoldForAllocation, ReleaseAllocation
from messages.errors import CommandRejected, Refusal
from messages.rebalancing import AllocationUpsertRequest, MultiWorldRebalanceResponse
from storage.sql import SqlStore, WriteItem

log = structlog.get_logger("worldservice.allocations")
NO_EXECUTOR = "Rebalance executor not configured"
EXECUTION_FAILED = "Rebalance execution failed"


class NotConfigured(CommandRejected):
    """Unavailable until an operator configures the executor: not worth a redelivery."""

    def __init__(self) -> None:
        super().__init__(Refusal.UNAVAILABLE, NO_EXECUTOR)


class AllocationCoordinator(pykka.ThreadingActor):
    def __init__(self, store: SqlStore, writer: pykka.ActorRef, send: Callable[[Request], None],
                 clock: Callable[[], datetime], executor: Any = None, timeout_s: float = 30.0) -> None:
        super().__init__()
        self._store = store
        self._writer = writer
        self._send = send
        self._clock = clock
        self._executor = executor
        self._timeout_s = timeout_s

    def on_receive(self, message: object) -> None:
        if not isinstance(message, Request):
            return
        try:
            reply = self._upsert(message.command.body)
        except NotConfigured as exc:
            reply = refusal_reply(exc, permanent=True)
        except CommandRejected as exc:
            reply = refusal_reply(exc)
        except Exception as exc:  # noqa: BLE001 - the caller must get an answer; nothing half-committed
            log.exception("allocation_failed", error=repr(exc))
            reply = error_reply(503, "allocation could not be committed; retry with the same run_id")
        message.reply(reply)

    def _upsert(self, request: AllocationUpsertRequest) -> Reply:
        validate_allocations(request)
        etag = allocation_etag(request)
        stored = self._store.allocation_run(request.run_id)
        if stored is not None:
            return self._replay(request, etag, stored)
        if request.execute and self._executor is None:
            raise NotConfigured()  # before anything is stored
        snapshot, plan = self._commit(request, etag)
        executed, response = self._execute(request.run_id, snapshot) if request.execute else (False, None)
        return Reply(200, allocation_response(plan, run_id=request.run_id, etag=etag, executed=executed,
                                              execution_response=response))

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

    def _commit(self, request: AllocationUpsertRequest, etag: str) -> tuple[dict[str, Any], Any]:
        worlds = touched_worlds(request)
        fences: dict[str, dict[str, int]] = {}
        committed = False
        try:
            for world_id in worlds:  # sorted: every run takes worlds in the same order
                fences[world_id] = self._hold(world_id, request.run_id)
            snapshot, plan, items = self._planned_items(request, etag, worlds, fences)
            self._write(items)
            committed = True
        finally:
            for world_id, fence in fences.items():
                self._release(world_id, request.run_id, fence["row_version"] + 1 if committed else None)
        return snapshot, plan

    def _planned_items(self, request: AllocationUpsertRequest, etag: str, worlds: list[str],
                       fences: dict[str, dict[str, int]]) -> tuple[dict[str, Any], Any, list[WriteItem]]:
        stored = self._store.world_allocations(worlds)
        normalized, plan = plan_allocation(
            request, {w: r["allocation"] for w, r in stored.items()},
            {w: r.get("strategy_alloc_total") or {} for w, r in stored.items()})
        now = self._clock()
        snapshot = msgspec.to_builtins(normalized)
        run = SaveAllocationRun(run_id=request.run_id, etag=etag,
                                record={"plan": msgspec.to_builtins(plan), "snapshot": snapshot})
        items = [self._item(request, etag, world_id, fences[world_id], plan, now) for world_id in worlds]
        items[0] = dataclasses.replace(items[0], effects=[run, *items[0].effects])  # the run lands atomically too
        return snapshot, plan, items

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

    def _ask_world(self, command: Any) -> Reply:
        answer: pykka.ThreadingFuture = pykka.ThreadingFuture()
        self._send(Request(command=command, reply=answer.set))
        return answer.get(timeout=self._timeout_s)

    def _hold(self, world_id: str, run_id: str) -> dict[str, int]:
        reply = self._ask_world(HoldForAllocation(world_id=world_id, run_id=run_id))
        if reply.status != 200:
            raise CommandRejected(Refusal.UNAVAILABLE,
                                  f"world {world_id} unavailable; retry with the same run_id")
        return reply.body

    def _release(self, world_id: str, run_id: str, row_version: int | None) -> None:
        self._send(Request(command=ReleaseAllocation(world_id=world_id, run_id=run_id, row_version=row_version),
                           reply=lambda reply: None))

    def _write(self, items: list[WriteItem]) -> None:
        done: pykka.ThreadingFuture = pykka.ThreadingFuture()
        self._writer.tell(AtomicWrite(items=items, done=done))
        failure = done.get(timeout=self._timeout_s)
        if failure is not None:
            raise failure

    def _execute(self, run_id: str, snapshot: dict[str, Any]) -> tuple[bool, Any]:
        try:
            response = self._executor.execute(snapshot)
        except Exception as exc:  # noqa: BLE001 - any executor failure is a 502; the run stays unexecuted
            log.error("allocation_execution_failed", run_id=run_id, error=repr(exc))
            raise CommandRejected(Refusal.UPSTREAM_FAILED, EXECUTION_FAILED) from None
        self._store.mark_allocation_executed(run_id, response)
        return True, response
