"""The world registry: create, list, read, update and delete worlds, their description, audit log and
history metadata (reference §1.1)."""

from typing import Annotated

from litestar import Controller, Request, Response, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from actors.bridge import Reply
from actors.storage_reader import ListWorlds
from messages import commands as c
from messages.audit import AuditEntry
from messages.decisions import HistoryOut, HistoryRequest
from messages.worlds import WorldCreate, WorldDescription, WorldRecord, WorldUpdate
from transport.auth import needs
from messages.errors import Refusal
from transport.edge import MAX_ID, answers, edge_of, respond, run


class WorldsController(Controller):
    path = "/worlds"
    tags = ["worlds"]

    @post("/", status_code=201, opt={**needs(c.CreateWorld), "world_in_body": True})  # type: ignore[misc]
    async def create(self, request: Request, data: JSONBody[WorldCreate]) -> Response[WorldRecord]:
        return respond(request, await run(request, c.CreateWorld, data.id, body=data))

    @get("/", opt={"authenticated": True, **answers(Refusal.UNAVAILABLE)})
    async def list_worlds(self, request: Request) -> Response[list[WorldRecord]]:
        """Only the worlds the caller may read (all of them with auth off)."""
        reply = await edge_of(request).read(ListWorlds)
        if not reply.ok:
            return respond(request, reply)
        principal = getattr(request.state, "principal", None)
        return Response(content=[w for w in reply.body if principal is None or principal.may(w.id, "reader")],
                        status_code=200)

    @get("/{world_id:str}", opt=needs(c.GetWorld))
    async def get_world(self, request: Request, world_id: FromPath[str]) -> Response[WorldRecord]:
        return respond(request, await run(request, c.GetWorld, world_id))

    @put("/{world_id:str}", opt=needs(c.UpdateWorld))
    async def update(self, request: Request, world_id: FromPath[str], data: JSONBody[WorldUpdate]) -> Response[WorldRecord]:
        return respond(request, await run(request, c.UpdateWorld, world_id, body=data))

    @delete("/{world_id:str}", status_code=204, opt=needs(c.DeleteWorld))
    async def delete_world(self, request: Request, world_id: FromPath[str], force: FromQuery[bool] = False) -> Response[None]:
        return respond(request, await run(request, c.DeleteWorld, world_id, force=force))

    @get("/{world_id:str}/describe", opt=needs(c.DescribeWorld))
    async def describe(self, request: Request, world_id: FromPath[str]) -> Response[WorldDescription]:
        return respond(request, await run(request, c.DescribeWorld, world_id))

    @get("/{world_id:str}/audit", opt=needs(c.GetAudit))
    async def audit(self, request: Request, world_id: FromPath[str],
                    after: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0,
                    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100) -> Response[list[AuditEntry]]:
        """Paginated: pass the ``X-Next-After`` header of a page as ``after`` to get the next one."""
        reply = await run(request, c.GetAudit, world_id, after=after, limit=limit)
        if not reply.ok:
            return respond(request, reply)
        page = reply.body
        headers = {"X-Next-After": str(page.next_after)} if page.next_after is not None else {}
        return respond(request, Reply(200, page.entries), headers)

    @post("/{world_id:str}/history", status_code=204, opt=needs(c.PutHistory))
    async def put_history(self, request: Request, world_id: FromPath[str], data: JSONBody[HistoryRequest]) -> Response[None]:
        return respond(request, await run(request, c.PutHistory, world_id, body=data))

    @get("/{world_id:str}/history", opt=needs(c.GetHistory))
    async def get_history(self, request: Request, world_id: FromPath[str]) -> Response[HistoryOut]:
        return respond(request, await run(request, c.GetHistory, world_id))
