"""Strategy bindings and decisions of a world, ``/decide`` and the decision history (reference §1.3)."""

from typing import Annotated

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from messages import commands as c
from messages.bindings import StrategiesOut, StrategiesRequest
from messages.decisions import DecisionEnvelope, DecisionHistoryOut, PolicyDecisionEnvelope
from transport.auth import needs
from transport.edge import NOT_MODIFIED, checked_id, etag_matches, header_etag, respond, run


class StrategiesController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["bindings", "decisions"]

    @post("/bindings", status_code=200, opt=needs(c.AddBindings))
    async def add_bindings(self, request: Request, world_id: FromPath[str], data: JSONBody[StrategiesRequest]) -> Response[StrategiesOut]:
        return respond(request, await run(request, c.AddBindings, world_id, body=data))

    @get("/bindings", opt=needs(c.GetBindings))
    async def get_bindings(self, request: Request, world_id: FromPath[str],
                           strategy_id: FromQuery[str | None] = None) -> Response[StrategiesOut]:
        return respond(request, await run(request, c.GetBindings, world_id, strategy_id=checked_id(strategy_id, "strategy_id")))

    @post("/decisions", status_code=200, opt=needs(c.SetDecisions))
    async def set_decisions(self, request: Request, world_id: FromPath[str], data: JSONBody[StrategiesRequest]) -> Response[StrategiesOut]:
        return respond(request, await run(request, c.SetDecisions, world_id, body=data))

    @get("/decisions", opt=needs(c.GetDecisions))
    async def get_decisions(self, request: Request, world_id: FromPath[str]) -> Response[StrategiesOut]:
        return respond(request, await run(request, c.GetDecisions, world_id))

    @get("/decide", opt=needs(c.Decide), responses=NOT_MODIFIED)
    async def decide(self, request: Request, world_id: FromPath[str], as_of: FromQuery[str | None] = None
                     ) -> Response[DecisionEnvelope | PolicyDecisionEnvelope]:
        reply = await run(request, c.Decide, world_id, as_of=as_of)
        if not reply.ok:
            return respond(request, reply)
        headers = {"Cache-Control": f"max-age={reply.ttl}", "ETag": header_etag(reply.body.etag)}
        if etag_matches(request.headers.get("If-None-Match"), reply.body.etag):
            return Response(content=None, status_code=304, headers=headers)
        return respond(request, reply, headers)

    @get("/decide/history", opt=needs(c.GetDecisionHistory))
    async def decision_history(self, request: Request, world_id: FromPath[str],
                               limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100
                               ) -> Response[DecisionHistoryOut]:
        """The decision engine's evaluations (verdict, rules, hysteresis, mode), newest first."""
        return respond(request, await run(request, c.GetDecisionHistory, world_id, limit=limit))
