"""Live monitoring (reference §1.11): a world's report, a monitoring run of one world, and of every world.

A run changes runs, so it goes through each world's actor as a ``RunLiveMonitoring`` command: ``run-all``
sends one per world (a bounded number at a time) and never writes a row itself.
"""

import asyncio

from litestar import Controller, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromPath

from actors.bridge import Reply
from actors.storage_reader import WorldIds
from messages import commands as c
from messages.live_monitoring import LiveMonitoringReport, LiveMonitoringRunAllFailed, LiveMonitoringRunAllResult, LiveMonitoringRunResult
from transport.auth import needs, require_command
from transport.edge import CORRELATION_HEADER, caller, checked_world_id, edge_of, respond, run

RUN_ALL_CONCURRENCY = 16  # worlds monitored at once by run-all: each may load its world into an actor


class LiveMonitoringController(Controller):
    path = "/worlds/{world_id:str}/live-monitoring"
    tags = ["live monitoring"]

    @get("/report", opt=needs(c.GetLiveMonitoringReport))
    async def report(self, request: Request, world_id: FromPath[str]) -> Response[LiveMonitoringReport]:
        """Each strategy's latest live run with its readings and verdict, and the verdicts counted."""
        return respond(request, await run(request, c.GetLiveMonitoringReport, world_id))

    @post("/run", status_code=200, opt=needs(c.RunLiveMonitoring))
    async def run_world(self, request: Request, world_id: FromPath[str]) -> Response[LiveMonitoringRunResult]:
        """Judge the latest live runs by the default policy's ``live_monitoring`` section; ``updated`` is
        how many got a new revision (0 when nothing changed or the policy has no such section)."""
        return respond(request, await run(request, c.RunLiveMonitoring, world_id))


# No world in the path: the guard asks for the operator role on every world ("*").
@post("/worlds/live-monitoring/run-all", status_code=200, tags=["live monitoring"], opt=needs(c.RunLiveMonitoring),
      responses={503: ResponseSpec(data_container=LiveMonitoringRunAllFailed,
                                   description="some world failed: the worlds that ran, and the others' errors")})
async def run_all(request: Request) -> Response[LiveMonitoringRunAllResult]:
    """A monitoring run in every world, through each world's actor. 503 when some world failed: the body
    still lists the worlds that ran, and ``failed`` names the others with their error."""
    edge, who = edge_of(request), caller(request)  # one correlation id (and idempotency key) for every world
    listed = await edge.read(WorldIds)
    if not listed.ok:
        return respond(request, listed)
    world_ids = listed.body
    gate = asyncio.Semaphore(RUN_ALL_CONCURRENCY)

    async def one(world_id: str) -> Reply:
        command = c.RunLiveMonitoring(world_id=checked_world_id(world_id), **who)
        require_command(request, command)
        async with gate:
            return await edge.call(command)

    replies = dict(zip(world_ids, await asyncio.gather(*(one(w) for w in world_ids)), strict=True))
    results = {w: r.body.updated for w, r in replies.items() if r.ok}
    failed = {w: getattr(r.body, "detail", str(r.status)) for w, r in replies.items() if not r.ok}
    headers = {CORRELATION_HEADER: who["correlation_id"]}
    if failed:
        return Response(content=LiveMonitoringRunAllFailed(results=results, failed=failed), status_code=503, headers=headers)
    return Response(content=LiveMonitoringRunAllResult(results=results), status_code=200, headers=headers)
