"""Multi-world rebalancing plans (``/rebalancing``) and stored allocations (``/allocations``)
(reference §1.5, §1.6)."""

import asyncio
from dataclasses import dataclass

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromQuery, JSONBody

from actors.bridge import STATUS
from actors.storage_reader import WorldAllocations
from domain.rebalancing import allocation_snapshot, plan_rebalance
from messages import commands as c
from messages.errors import CommandRejected, ErrorBody, Refusal
from messages.rebalancing import (
    AllocationSnapshotResponse, AllocationUpsertRequest, AllocationUpsertResponse, MultiWorldRebalanceRequest,
    MultiWorldRebalanceResponse, RebalanceNotice,
)
from transport.auth import needs, require
from transport.edge import answers, checked_id, edge_of, respond, run


# What planning refuses (``domain.rebalancing``): a schema version it must name, a hybrid mode it does not
# offer, content its rules reject.
PLAN_REFUSALS = (Refusal.INVALID, Refusal.NOT_IMPLEMENTED, Refusal.UNPROCESSABLE)


@dataclass(frozen=True)
class RebalanceFlags:
    compat_rebalance_v2: bool = False
    alpha_metrics_required: bool = False


async def _planned(request: Request, data: MultiWorldRebalanceRequest) -> MultiWorldRebalanceResponse | Response:
    """Planning is CPU work (1,000 worlds x 100 strategies take about a second): off the event loop."""
    flags: RebalanceFlags = request.app.state.rebalance_flags
    try:
        return await asyncio.to_thread(plan_rebalance, data, compat_rebalance_v2=flags.compat_rebalance_v2,
                                       alpha_metrics_required=flags.alpha_metrics_required)
    except CommandRejected as exc:
        return Response(content=ErrorBody(detail=exc.detail), status_code=STATUS[exc.refusal])


class RebalancingController(Controller):
    path = "/rebalancing"
    tags = ["rebalancing"]

    @post("/plan", status_code=200, opt={"authenticated": True, **answers(*PLAN_REFUSALS)})
    async def plan(self, request: Request, data: JSONBody[MultiWorldRebalanceRequest]) -> Response[MultiWorldRebalanceResponse]:
        """A pure plan: nothing is stored or announced."""
        planned = await _planned(request, data)
        return planned if isinstance(planned, Response) else Response(content=planned, status_code=200)

    @post("/apply", status_code=200, opt={**needs(c.RecordRebalance), **answers(*PLAN_REFUSALS), "world_in_body": True})
    async def apply(self, request: Request, data: JSONBody[MultiWorldRebalanceRequest]) -> Response[MultiWorldRebalanceResponse]:
        """The plan, plus an audit entry and one ``rebalancing_planned`` event per planned world (each through
        its world's actor); stored allocations do not change (that is ``POST /allocations``)."""
        planned = await _planned(request, data)
        if isinstance(planned, Response):
            return planned
        for world_id in planned.per_world:  # every world before any is recorded
            require(request, world_id, c.REQUIRED_ROLE[c.RecordRebalance])
        alpha = msgspec.to_builtins(planned.alpha_metrics) if planned.alpha_metrics else None
        replies = await asyncio.gather(*[
            run(request, c.RecordRebalance, world_id, body=RebalanceNotice(
                plan=plan, version=planned.schema_version, alpha_metrics=alpha,
                rebalance_intent=planned.rebalance_intent))
            for world_id, plan in planned.per_world.items()])
        failed = next((reply for reply in replies if not reply.ok), None)
        return respond(request, failed) if failed else Response(content=planned, status_code=200)


class AllocationsController(Controller):
    path = "/allocations"
    tags = ["allocations"]

    @post("/", status_code=200, opt={**needs(c.UpsertAllocations), "world_in_body": True})
    async def upsert(self, request: Request, data: JSONBody[AllocationUpsertRequest]) -> Response[AllocationUpsertResponse]:
        """Idempotent by ``run_id``: the same content replays the stored plan (executing it once if asked
        and not yet done); other content, or an ``etag`` that is not the run's, is 409."""
        first = min(data.world_allocations, default="allocations")
        return respond(request, await run(request, c.UpsertAllocations, first, body=data))

    @get("/", opt={"authenticated": True, **answers(Refusal.NOT_FOUND, Refusal.UNAVAILABLE)})
    async def snapshots(self, request: Request, world_id: FromQuery[str | None] = None) -> Response[AllocationSnapshotResponse]:
        edge, world_id = edge_of(request), checked_id(world_id, "world_id")
        reply = await edge.read(lambda hook: WorldAllocations(reply=hook, world_ids=[world_id] if world_id else None))
        if not reply.ok:
            return respond(request, reply)
        rows, now = reply.body, edge.system.clock()
        principal = getattr(request.state, "principal", None)
        rows = {w: r for w, r in rows.items() if principal is None or principal.may(w, "reader")}
        if world_id and world_id not in rows:
            return Response(content=ErrorBody(detail="allocation snapshot not found"), status_code=404)
        snapshots = {w: allocation_snapshot(w, r["allocation"], now=now, run_id=r.get("run_id"), etag=r.get("etag"),
                                            strategy_alloc_total=r.get("strategy_alloc_total"),
                                            updated_at=r.get("updated_at")) for w, r in sorted(rows.items())}
        edge.metrics.observe_snapshots(len(snapshots), sum(s.stale for s in snapshots.values()))
        return Response(content=AllocationSnapshotResponse(allocations=snapshots), status_code=200)
