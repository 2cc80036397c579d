"""HTTP edge (Litestar on uvicorn): the reference's routes and JSON shapes over the actor system.

Handlers only translate: path/query/body -> a typed command, command -> the world's actor, reply ->
response. They never wait on a pykka future; the actor resolves an asyncio future instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import quote
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from litestar import Controller, Litestar, Request, Response, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from actors.bridge import Reply, Request as ActorRequest, asyncio_hook, error_reply
from actors.system import ActorSystem
from domain.policies import PRESETS
from messages import commands as c
from messages.activation import ActivationEnvelope, ActivationRequest, ActivationSetOut, StateHashOut
from messages.apply import ApplyAck, ApplyRequest, ApplyRunOut, EvaluateRequest, EvaluateResponse
from messages.audit import AuditEntry
from messages.bindings import StrategiesOut, StrategiesRequest
from messages.decisions import (
    DecisionEnvelope, DecisionHistoryOut, HistoryOut, HistoryRequest, PolicyDecisionEnvelope,
)
from domain.rebalancing import allocation_snapshot, plan_rebalance
from messages.errors import CommandRejected, ErrorBody
from messages.rebalancing import (
    AllocationSnapshotResponse, AllocationUpsertRequest, AllocationUpsertResponse, MultiWorldRebalanceRequest,
    MultiWorldRebalanceResponse, RebalanceNotice,
)
from messages.policies import PolicyInfo, PolicyRequest, PolicyVersionRef, SetDefaultRequest
from messages.types import Identifier, WorldId
from messages.worlds import WorldCreate, WorldDescription, WorldRecord, WorldUpdate
from messages.wvg import (
    EdgeOverrideOut, EdgeOverrideUpsertRequest, ValidationCacheResponse, ValidationContext, ValidationStoreRequest,
    WorldNodeRef, WorldNodeUpsertRequest,
)
from messages.config import Auth
from transport.auth import Authenticator, authorize, needs, require, require_command
from transport.errors import client_error_handler
from transport.metrics import EdgeMetrics

CORRELATION_HEADER = "X-Correlation-ID"
MAX_ID = 2**63 - 1  # audit ids are BIGINT: a larger cursor cannot name any entry
PUBLIC = {"public": True}


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    return {code: ResponseSpec(data_container=ErrorBody, description="refused") for code in codes}


@dataclass
class Edge:
    """What the handlers share: the actor system, metrics and the readiness flags."""

    system: ActorSystem
    call_timeout_s: float = 60.0
    metrics: EdgeMetrics = field(default=None)  # type: ignore[assignment]
    ready: bool = False
    draining: bool = False

    def __post_init__(self) -> None:
        if self.metrics is None:  # one /metrics page: the actors' counters live in the same registry
            self.metrics = EdgeMetrics(self.system.metrics.registry)

    async def call(self, command: c.Command) -> Reply:
        if self.draining:
            return error_reply(503, "draining; retry on another instance")
        future, hook = asyncio_hook(asyncio.get_running_loop())
        started = time.perf_counter()
        self.system.send(ActorRequest(command=command, reply=hook))
        try:
            reply = await asyncio.wait_for(future, self.call_timeout_s)
        except TimeoutError:
            reply = error_reply(504, "world did not answer in time; the outcome is unknown")
        self.metrics.observe(type(command).__name__, reply.status, time.perf_counter() - started)
        return reply


def _edge(request: Request) -> Edge:
    return request.app.state.edge


def _world_id(world_id: str) -> str:
    try:
        return msgspec.convert(world_id, WorldId)
    except msgspec.ValidationError as exc:
        raise HTTPException(status_code=400, extra=[{"message": str(exc).split(" - ")[0],
                                                     "key": "world_id", "source": "path"}]) from None


def _path_id(value: str, key: str) -> str:
    """Path identifiers (node ids) get the same checks a body field would: 422 with the key, not a 500."""
    try:
        return msgspec.convert(value, Identifier)
    except msgspec.ValidationError as exc:
        raise HTTPException(status_code=400, extra=[{"message": str(exc).split(" - ")[0],
                                                     "key": key, "source": "path"}]) from None


def _header(request: Request, name: str, max_length: int) -> str | None:
    """A caller-supplied identity header, kept only when it fits the audit column and is printable."""
    value = request.headers.get(name)
    return value if value and len(value) <= max_length and value.isprintable() else None


def _caller(request: Request) -> dict[str, Any]:
    """Who asked and under which correlation id: recorded on every audit entry. With auth on, the actor
    is the verified token's subject, never a header the caller chose."""
    principal = getattr(request.state, "principal", None)
    actor = principal.subject if principal is not None else _header(request, "X-Caller-Sub", 256)
    return {"actor": actor,
            "correlation_id": _header(request, CORRELATION_HEADER, 128) or uuid.uuid4().hex,
            "command_id": _header(request, "Idempotency-Key", 256)}


async def _run(request: Request, command_type: type, world_id: str, **fields: Any) -> Reply:
    caller = _caller(request)
    command = command_type(world_id=_world_id(world_id), **caller, **fields)
    require_command(request, command)  # the role table both edges share; routes check it early too
    reply = await _edge(request).call(command)
    request.state.correlation_id = caller["correlation_id"]
    return reply


def _respond(request: Request, reply: Reply, headers: dict[str, str] | None = None) -> Response:
    headers = {**(headers or {}), CORRELATION_HEADER: getattr(request.state, "correlation_id", "")}
    if reply.status == 204:
        return Response(content=None, status_code=204, headers=headers)
    return Response(content=reply.body, status_code=reply.status, headers=headers)


def header_etag(etag: str) -> str:
    """Etags embed strategy ids, which may be any Unicode; HTTP headers carry latin-1 printable text, so
    anything else is percent-encoded in the header (the body keeps the etag as is)."""
    return etag if etag.isascii() and etag.isprintable() else quote(etag, safe=":")


def _etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match``: a list of (weak or strong, quoted or bare) tags, or ``*``."""
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in header.split(",")}
    return "*" in tags or etag in tags or header_etag(etag) in tags


def _etagged(request: Request, reply: Reply) -> Response:
    """A read answered with its body's etag, or 304 when ``If-None-Match`` already names it."""
    if not reply.ok:
        return _respond(request, reply)
    etag = header_etag(reply.body.etag)
    if _etag_matches(request.headers.get("If-None-Match"), reply.body.etag):
        return Response(content=None, status_code=304, headers={"ETag": etag})
    return _respond(request, reply, {"ETag": etag})


class WorldsController(Controller):
    path = "/worlds"
    tags = ["worlds"]

    @post("/", status_code=201, responses=_errors(409), opt={"world_in_body": True})  # type: ignore[misc]
    async def create(self, request: Request, data: JSONBody[WorldCreate]) -> Response[WorldRecord]:
        return _respond(request, await _run(request, c.CreateWorld, data.id, body=data))

    @get("/", opt={"authenticated": True})
    async def list_worlds(self, request: Request) -> list[WorldRecord]:
        """Only the worlds the caller may read (all of them with auth off)."""
        worlds = await asyncio.to_thread(_edge(request).system.store.list_worlds)
        principal = getattr(request.state, "principal", None)
        return [w for w in worlds if principal is None or principal.may(w.id, "reader")]

    @get("/{world_id:str}")
    async def get_world(self, request: Request, world_id: FromPath[str]) -> Response[WorldRecord]:
        return _respond(request, await _run(request, c.GetWorld, world_id))

    @put("/{world_id:str}", opt=needs(c.UpdateWorld))
    async def update(self, request: Request, world_id: FromPath[str], data: JSONBody[WorldUpdate]) -> Response[WorldRecord]:
        return _respond(request, await _run(request, c.UpdateWorld, world_id, body=data))

    @delete("/{world_id:str}", status_code=204, opt=needs(c.DeleteWorld))
    async def delete_world(self, request: Request, world_id: FromPath[str], force: FromQuery[bool] = False) -> Response[None]:
        return _respond(request, await _run(request, c.DeleteWorld, world_id, force=force))

    @get("/{world_id:str}/describe")
    async def describe(self, request: Request, world_id: FromPath[str]) -> Response[WorldDescription]:
        return _respond(request, await _run(request, c.DescribeWorld, world_id))

    @get("/{world_id:str}/audit")
    async def audit(self, request: Request, world_id: FromPath[str],
                    after: Annotated[int, QueryParameter(ge=0, le=MAX_ID)] = 0,
                    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100) -> Response[list[AuditEntry]]:
        """Paginated: pass the ``X-Next-After`` header of a page as ``after`` to get the next one."""
        reply = await _run(request, c.GetAudit, world_id, after=after, limit=limit)
        if not reply.ok:
            return _respond(request, reply)
        page = reply.body
        headers = {"X-Next-After": str(page.next_after)} if page.next_after is not None else {}
        return _respond(request, Reply(200, page.entries), headers)

    @post("/{world_id:str}/history", status_code=204, opt=needs(c.PutHistory))
    async def put_history(self, request: Request, world_id: FromPath[str], data: JSONBody[HistoryRequest]) -> Response[None]:
        return _respond(request, await _run(request, c.PutHistory, world_id, body=data))

    @get("/{world_id:str}/history")
    async def get_history(self, request: Request, world_id: FromPath[str]) -> Response[HistoryOut]:
        return _respond(request, await _run(request, c.GetHistory, world_id))


class PoliciesController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["policies"]

    @post("/policies", status_code=200, opt=needs(c.AddPolicy))
    async def add(self, request: Request, world_id: FromPath[str], data: JSONBody[PolicyRequest]) -> Response[PolicyVersionRef]:
        return _respond(request, await _run(request, c.AddPolicy, world_id, body=data))

    @get("/policies")
    async def list_versions(self, request: Request, world_id: FromPath[str]) -> Response[list[PolicyVersionRef]]:
        return _respond(request, await _run(request, c.ListPolicies, world_id))

    @get("/policies/{version:int}")
    async def get_version(self, request: Request, world_id: FromPath[str], version: FromPath[int]) -> Response[dict[str, Any]]:
        return _respond(request, await _run(request, c.GetPolicy, world_id, version=max(version, 1)))

    @get("/policies/{version:int}/meta")
    async def get_meta(self, request: Request, world_id: FromPath[str], version: FromPath[int]) -> Response[PolicyInfo]:
        return _respond(request, await _run(request, c.GetPolicyInfo, world_id, version=max(version, 1)))

    @post("/set-default", status_code=200, opt=needs(c.SetDefaultPolicy))
    async def set_default(self, request: Request, world_id: FromPath[str], data: JSONBody[SetDefaultRequest | None] = None,
                          v: Annotated[int | None, QueryParameter(ge=1)] = None) -> Response[PolicyVersionRef]:
        """The version comes in the body ``{"version": V}`` (reference) or as ``?v=V`` (its documentation)."""
        body = data or (SetDefaultRequest(version=v) if v is not None else None)
        if body is None:
            raise HTTPException(status_code=400, detail="Missing required query parameter 'v' or body version")
        return _respond(request, await _run(request, c.SetDefaultPolicy, world_id, body=body))


@get("/policies/presets", tags=["policies"], opt={"authenticated": True})
async def list_presets() -> dict[str, dict[str, Any]]:
    return PRESETS


class StrategiesController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["bindings", "decisions"]

    @post("/bindings", status_code=200, opt=needs(c.AddBindings))
    async def add_bindings(self, request: Request, world_id: FromPath[str], data: JSONBody[StrategiesRequest]) -> Response[StrategiesOut]:
        return _respond(request, await _run(request, c.AddBindings, world_id, body=data))

    @get("/bindings")
    async def get_bindings(self, request: Request, world_id: FromPath[str],
                           strategy_id: FromQuery[str | None] = None) -> Response[StrategiesOut]:
        return _respond(request, await _run(request, c.GetBindings, world_id, strategy_id=strategy_id))

    @post("/decisions", status_code=200, opt=needs(c.SetDecisions))
    async def set_decisions(self, request: Request, world_id: FromPath[str], data: JSONBody[StrategiesRequest]) -> Response[StrategiesOut]:
        return _respond(request, await _run(request, c.SetDecisions, world_id, body=data))

    @get("/decisions")
    async def get_decisions(self, request: Request, world_id: FromPath[str]) -> Response[StrategiesOut]:
        return _respond(request, await _run(request, c.GetDecisions, world_id))

    @get("/decide")
    async def decide(self, request: Request, world_id: FromPath[str], as_of: FromQuery[str | None] = None
                     ) -> Response[DecisionEnvelope | PolicyDecisionEnvelope]:
        reply = await _run(request, c.Decide, world_id, as_of=as_of)
        if not reply.ok:
            return _respond(request, reply)
        headers = {"Cache-Control": f"max-age={reply.ttl}", "ETag": header_etag(reply.body.etag)}
        if _etag_matches(request.headers.get("If-None-Match"), reply.body.etag):
            return Response(content=None, status_code=304, headers=headers)
        return _respond(request, reply, headers)

    @get("/decide/history")
    async def decision_history(self, request: Request, world_id: FromPath[str],
                               limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100
                               ) -> Response[DecisionHistoryOut]:
        """The decision engine's evaluations (verdict, rules, hysteresis, mode), newest first."""
        return _respond(request, await _run(request, c.GetDecisionHistory, world_id, limit=limit))


_ONE_ENTRY = "with both strategy_id and side (long|short): that entry; with neither: the whole set"


class ActivationController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["activation"]

    @get("/activation")
    async def get_activation(self, request: Request, world_id: FromPath[str],
                             strategy_id: Annotated[str | None, QueryParameter(description=_ONE_ENTRY)] = None,
                             side: Annotated[str | None, QueryParameter(description=_ONE_ENTRY)] = None
                             ) -> Response[ActivationEnvelope | ActivationSetOut]:
        """With ``strategy_id`` and ``side``: that entry. With neither: the whole set, its ``version`` and
        ``state_hash`` (a Gateway's reconcile after an ACK gap). Both answer an ``ETag``; ``If-None-Match``
        naming it is 304."""
        if strategy_id is None and side is None:
            return _etagged(request, await _run(request, c.GetActivationSet, world_id))
        if strategy_id is None or side is None:  # one without the other: the 422 of a missing parameter
            missing = "side" if side is None else "strategy_id"
            raise HTTPException(status_code=400, detail=f"Missing required query parameter '{missing}'")
        if side not in ("long", "short"):
            raise HTTPException(status_code=400, extra=[{"message": "Expected `'long' | 'short'`",
                                                         "key": "side", "source": "query"}])
        return _etagged(request, await _run(request, c.GetActivation, world_id, strategy_id=strategy_id, side=side))

    @put("/activation", status_code=200, responses=_errors(404, 409, 412), opt=needs(c.PutActivation))
    async def put_activation(self, request: Request, world_id: FromPath[str],
                             data: JSONBody[ActivationRequest]) -> Response[ActivationEnvelope]:
        if_match = request.headers.get("If-Match")
        if_match = if_match.strip().removeprefix("W/").strip('"') if if_match else None
        reply = await _run(request, c.PutActivation, world_id, body=data, if_match=if_match)
        body = msgspec.to_builtins(reply.body) if reply.ok else {}  # a replayed reply is plain JSON already
        headers = {"ETag": header_etag(body["etag"])} if reply.ok else {}
        return _respond(request, reply, headers)

    @get("/activation/state_hash")
    async def activation_state_hash(self, request: Request, world_id: FromPath[str]) -> Response[StateHashOut]:
        # Litestar matches the static ``activation`` segment first, so the topic route below never sees it.
        return _respond(request, await _run(request, c.GetStateHash, world_id))

    @get("/{topic:str}/state_hash")
    async def state_hash(self, request: Request, world_id: FromPath[str], topic: FromPath[str]) -> Response[StateHashOut]:
        if topic.lower() != "activation":
            return Response(content=ErrorBody(detail="unsupported topic"), status_code=400)
        return _respond(request, await _run(request, c.GetStateHash, world_id))


class ApplyController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["apply"]

    @post("/evaluate", status_code=200, responses=_errors(404, 422))
    async def evaluate(self, request: Request, world_id: FromPath[str],
                       data: JSONBody[EvaluateRequest]) -> Response[EvaluateResponse]:
        """Policy selection only: the active set an apply of these metrics would choose; nothing changes."""
        return _respond(request, await _run(request, c.Evaluate, world_id, body=data))

    @post("/apply", status_code=200, opt=needs(c.StartApply), responses={**_errors(404, 409, 422, 500),
                                                202: ResponseSpec(data_container=ApplyAck, description="held")})
    async def apply(self, request: Request, world_id: FromPath[str], data: JSONBody[ApplyRequest]) -> Response[ApplyAck]:
        """Freeze -> switch -> unfreeze. Answers when the run completed (200), rolled back (500; a repeat
        of the run id then answers 200 ``ok: false``), or is held awaiting Gateway ACKs (202)."""
        return _respond(request, await _run(request, c.StartApply, world_id, body=data))

    @get("/apply/{run_id:str}", responses=_errors(404))
    async def get_run(self, request: Request, world_id: FromPath[str], run_id: FromPath[str]) -> Response[ApplyRunOut]:
        return _respond(request, await _run(request, c.GetApplyRun, world_id, run_id=run_id))


DomainQuery = Annotated[str | None, QueryParameter(max_length=32)]


class WorldViewGraphController(Controller):
    """World nodes, edge overrides and the validation cache. Execution domains take the reference's
    aliases (case-insensitive); an unknown one is 422 with the accepted names."""

    path = "/worlds/{world_id:str}"
    tags = ["world view graph"]

    @get("/nodes", responses=_errors(404, 422))
    async def list_nodes(self, request: Request, world_id: FromPath[str],
                         execution_domain: DomainQuery = None) -> Response[list[WorldNodeRef]]:
        """No ``execution_domain`` (or ``*`` / ``all``): the nodes of every domain."""
        return _respond(request, await _run(request, c.ListNodes, world_id, execution_domain=execution_domain))

    @get("/nodes/{node_id:str}", responses=_errors(404, 422))
    async def get_node(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                       execution_domain: DomainQuery = None) -> Response[WorldNodeRef]:
        """No ``execution_domain``: backtest."""
        return _respond(request, await _run(request, c.GetNode, world_id, node_id=_path_id(node_id, "node_id"),
                                            execution_domain=execution_domain))

    @put("/nodes/{node_id:str}", status_code=200, responses=_errors(404, 422), opt=needs(c.PutNode))
    async def put_node(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                       data: JSONBody[WorldNodeUpsertRequest]) -> Response[WorldNodeRef]:
        """Fields left out (``last_eval_key``, ``annotations``) keep their stored value."""
        return _respond(request, await _run(request, c.PutNode, world_id, node_id=_path_id(node_id, "node_id"),
                                            body=data))

    @delete("/nodes/{node_id:str}", status_code=204, responses=_errors(404, 422), opt=needs(c.DeleteNode))
    async def delete_node(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                          execution_domain: DomainQuery = None) -> Response[None]:
        return _respond(request, await _run(request, c.DeleteNode, world_id, node_id=_path_id(node_id, "node_id"),
                                            execution_domain=execution_domain))

    @get("/edges/overrides", responses=_errors(404))
    async def list_edges(self, request: Request, world_id: FromPath[str]) -> Response[list[EdgeOverrideOut]]:
        return _respond(request, await _run(request, c.ListEdgeOverrides, world_id))

    @put("/edges/{src_node_id:str}/{dst_node_id:str}", status_code=200, responses=_errors(404, 422),
         opt=needs(c.PutEdgeOverride))
    async def put_edge(self, request: Request, world_id: FromPath[str], src_node_id: FromPath[str],
                       dst_node_id: FromPath[str], data: JSONBody[EdgeOverrideUpsertRequest]) -> Response[EdgeOverrideOut]:
        """Leaving ``reason`` out keeps the stored reason. Every change is announced on the ControlBus
        (``edge_override_upserted``, topic ``control.edges``)."""
        return _respond(request, await _run(request, c.PutEdgeOverride, world_id,
                                            src_node_id=_path_id(src_node_id, "src_node_id"),
                                            dst_node_id=_path_id(dst_node_id, "dst_node_id"), body=data))

    @post("/validations/cache/lookup", status_code=200, responses=_errors(404, 422))
    async def lookup_validation(self, request: Request, world_id: FromPath[str],
                                data: JSONBody[ValidationContext]) -> Response[ValidationCacheResponse]:
        """A read for the caller (reader role); an entry cached under another context is evicted."""
        return _respond(request, await _run(request, c.LookupValidation, world_id, body=data))

    @post("/validations/cache", status_code=200, responses=_errors(404, 422), opt=needs(c.StoreValidation))
    async def store_validation(self, request: Request, world_id: FromPath[str],
                               data: JSONBody[ValidationStoreRequest]) -> Response[ValidationCacheResponse]:
        return _respond(request, await _run(request, c.StoreValidation, world_id, body=data))

    @delete("/validations/{node_id:str}", status_code=204, responses=_errors(404, 422),
            opt=needs(c.DeleteValidation))
    async def delete_validation(self, request: Request, world_id: FromPath[str], node_id: FromPath[str],
                                execution_domain: DomainQuery = None) -> Response[None]:
        """No ``execution_domain``: every domain of the node."""
        return _respond(request, await _run(request, c.DeleteValidation, world_id,
                                            node_id=_path_id(node_id, "node_id"), execution_domain=execution_domain))


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
        return Response(content=ErrorBody(detail=exc.detail), status_code=exc.status)


class RebalancingController(Controller):
    path = "/rebalancing"
    tags = ["rebalancing"]

    @post("/plan", status_code=200, responses=_errors(400, 422, 501), opt={"authenticated": True})
    async def plan(self, request: Request, data: JSONBody[MultiWorldRebalanceRequest]) -> Response[MultiWorldRebalanceResponse]:
        """A pure plan: nothing is stored or announced."""
        planned = await _planned(request, data)
        return planned if isinstance(planned, Response) else Response(content=planned, status_code=200)

    @post("/apply", status_code=200, responses=_errors(400, 403, 422, 501, 503), opt={"world_in_body": True})
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
            _run(request, c.RecordRebalance, world_id, body=RebalanceNotice(
                plan=plan, version=planned.schema_version, alpha_metrics=alpha,
                rebalance_intent=planned.rebalance_intent))
            for world_id, plan in planned.per_world.items()])
        failed = next((reply for reply in replies if not reply.ok), None)
        return _respond(request, failed) if failed else Response(content=planned, status_code=200)


class AllocationsController(Controller):
    path = "/allocations"
    tags = ["allocations"]

    @post("/", status_code=200, responses=_errors(403, 409, 422, 501, 502, 503), opt={"world_in_body": True})
    async def upsert(self, request: Request, data: JSONBody[AllocationUpsertRequest]) -> Response[AllocationUpsertResponse]:
        """Idempotent by ``run_id``: the same content replays the stored plan (executing it once if asked
        and not yet done); other content, or an ``etag`` that is not the run's, is 409."""
        first = min(data.world_allocations, default="allocations")
        return _respond(request, await _run(request, c.UpsertAllocations, first, body=data))

    @get("/", responses=_errors(404), opt={"authenticated": True})
    async def snapshots(self, request: Request, world_id: FromQuery[str | None] = None) -> Response[AllocationSnapshotResponse]:
        store, now = _edge(request).system.store, _edge(request).system.clock()
        rows = await asyncio.to_thread(store.world_allocations, [world_id] if world_id else None)
        principal = getattr(request.state, "principal", None)
        rows = {w: r for w, r in rows.items() if principal is None or principal.may(w, "reader")}
        if world_id and world_id not in rows:
            return Response(content=ErrorBody(detail="allocation snapshot not found"), status_code=404)
        snapshots = {w: allocation_snapshot(w, r["allocation"], now=now, run_id=r.get("run_id"), etag=r.get("etag"),
                                            strategy_alloc_total=r.get("strategy_alloc_total"),
                                            updated_at=r.get("updated_at")) for w, r in sorted(rows.items())}
        _edge(request).metrics.observe_snapshots(len(snapshots), sum(s.stale for s in snapshots.values()))
        return Response(content=AllocationSnapshotResponse(allocations=snapshots), status_code=200)


@get(["/healthz", "/health"], tags=["operations"], opt=PUBLIC)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["operations"], opt=PUBLIC)
async def readyz(request: Request) -> Response[dict[str, str]]:
    edge = _edge(request)
    if edge.ready and not edge.draining:
        return Response(content={"status": "ready"}, status_code=200)
    return Response(content={"status": "draining" if edge.draining else "starting"}, status_code=503)


@get("/metrics", tags=["operations"], include_in_schema=False, opt=PUBLIC)
async def metrics(request: Request) -> Response[bytes]:
    edge = _edge(request)
    system = edge.system
    edge.metrics.resident_worlds.set(len(await asyncio.to_thread(system.resident_worlds)))
    edge.metrics.outbox_pending.set(await asyncio.to_thread(system.outbox_pending))
    edge.metrics.projection_dirty.set(await asyncio.to_thread(system.projection_dirty))
    for actor, depth in (await asyncio.to_thread(system.mailbox_depths)).items():
        edge.metrics.mailbox_depth.labels(actor).set(depth)
    return Response(content=edge.metrics.render(), media_type="text/plain; version=0.0.4")


@get("/openapi.json", include_in_schema=False, opt={"authenticated": True})
async def openapi_json(request: Request) -> dict[str, Any]:
    return request.app.openapi_schema.to_schema()


def create_app(edge: Edge, auth: Auth | None = None, rebalance: RebalanceFlags | None = None) -> Litestar:
    """``auth`` with a JWT block or service tokens turns authentication and roles on (see transport/auth)."""
    app = Litestar(
        guards=[authorize],
        # A 1,000-world rebalancing plan (100k position slices) is about 9 MB of JSON; the default is 10 MB.
        request_max_body_size=64 * 1024 * 1024,
        route_handlers=[WorldsController, PoliciesController, StrategiesController, ActivationController,
                        ApplyController, WorldViewGraphController, RebalancingController, AllocationsController, list_presets, healthz, readyz, metrics, openapi_json],
        exception_handlers={HTTPException: client_error_handler},
        openapi_config=OpenAPIConfig(title="WorldService", version="1.0.0", path="/schema"),
        logging_config=None,  # the daemon owns logging (JSON lines); Litestar must not install handlers
        debug=False,
    )
    app.state.edge = edge
    app.state.rebalance_flags = rebalance or RebalanceFlags()
    app.state.authenticator = Authenticator(auth) if auth is not None and auth.enabled else None
    app.state.auth_header = auth.header if auth is not None else "Authorization"
    return app
