"""Operations routes: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

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
    edge = edge_of(request)
    if edge.ready and not edge.draining:
        return Response(content={"status": "ready"}, status_code=200)
    return Response(content={"status": "draining" if edge.draining else "starting"}, status_code=503)


@get("/metrics", tags=["operations"], include_in_schema=False, opt=PUBLIC)
async def metrics(request: Request) -> Response[bytes]:
    edge = edge_of(request)
    system = edge.system
    edge.metrics.resident_worlds.set(len(await asyncio.to_thread(system.resident_worlds)))
    edge.metrics.outbox_pending.set(await asyncio.to_thread(system.outbox_pending))
    edge.metrics.projection_dirty.set(await asyncio.to_thread(system.projection_dirty))
    for actor, depth in (await asyncio.to_thread(system.mailbox_depths)).items():
        edge.metrics.mailbox_depth.labels(actor).set(depth)
    return Response(content=edge.metrics.render(), media_type="text/plain; version=0.0.4")


@get("/openapi.json", include_in_schema=False, opt={"authenticated": True})
async def openapi_json(request: Request) -> dict[str, Any]:
    """The document completed from the declarations (``transport.openapi``), not Litestar's raw one."""
    return document(request.app)
