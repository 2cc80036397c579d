"""Operations routes: liveness, readiness, Prometheus metrics and the OpenAPI document."""

import asyncio
from typing import Any

from litestar import Request, Response, get

from litestar.openapi import ResponseSpec

from transport.edge import PUBLIC, edge_of
from transport.openapi import document


@get(["/healthz", "/health"], tags=["operations"], opt=PUBLIC)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["operations"], opt=PUBLIC,
     responses={503: ResponseSpec(data_container=dict[str, str], description="starting or draining")})
async def readyz(request: Request) -> Response[dict[str, str]]:
    """Ready while the daemon serves commands. A degraded projection (Redis away) keeps it ready: SQL is
    the system of record and every command and read is served from it; the body says ``"projection":
    "behind"`` (and ``worldservice_projection_degraded`` is 1) until Redis is back and rebuilt."""
    edge = edge_of(request)
    projection = "behind" if edge.system.projection_degraded() else "current"
    if edge.ready and not edge.draining:
        return Response(content={"status": "ready", "projection": projection}, status_code=200)
    return Response(content={"status": "draining" if edge.draining else "starting", "projection": projection},
                    status_code=503)


@get("/metrics", tags=["operations"], include_in_schema=False, opt=PUBLIC)
async def metrics(request: Request) -> Response[bytes]:
    edge = edge_of(request)
    system = edge.system
    # Every value is bounded (a slow actor shows its last answer): a poller never waits on a dependency.
    edge.metrics.resident_worlds.set(await asyncio.to_thread(system.resident_count))
    edge.metrics.outbox_pending.set(await asyncio.to_thread(system.outbox_pending))
    edge.metrics.projection_dirty.set(system.projection_dirty())
    edge.metrics.projection_degraded.set(1 if system.projection_degraded() else 0)
    for actor, depth in (await asyncio.to_thread(system.mailbox_depths)).items():
        edge.metrics.mailbox_depth.labels(actor).set(depth)
    return Response(content=edge.metrics.render(), media_type="text/plain; version=0.0.4")


@get("/openapi.json", include_in_schema=False, opt={"authenticated": True})
async def openapi_json(request: Request) -> dict[str, Any]:
    """The document completed from the declarations (``transport.openapi``), not Litestar's raw one."""
    return document(request.app)
