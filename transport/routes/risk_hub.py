"""The Risk Signal Hub (reference §1.13, prefix ``/risk-hub``): pushes and reads of a world's portfolio
snapshots, through the hub actor (``actors.risk_hub``).

A push needs ``X-Actor`` and ``X-Stage`` (400 without), a body whose ``world_id`` (if any) is the path's
(400), and, when ``risk_hub.token`` is set, ``Authorization: Bearer <token>`` (401). Then 422 for an invalid
or expired snapshot, 409 for a known version with another hash, 404 for an unknown world.
"""

import hmac
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from actors.bridge import error_reply
from messages import commands as c
from messages.risk_hub import RiskSnapshot, RiskSnapshotIn, RiskSnapshotList
from transport.auth import needs
from transport.edge import edge_of, errors, respond, run

Text = Annotated[str | None, QueryParameter(max_length=256)]


class _Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reply = error_reply(status, detail)


def _token_checked(request: Request) -> None:
    expected = edge_of(request).system.config.worldservice.risk_hub.token
    if not expected:
        return
    given = request.headers.get("Authorization") or ""
    scheme, _, token = given.partition(" ")
    if scheme != "Bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise _Refused(401, "unauthorized")


def _required_header(request: Request, name: str, what: str, max_length: int) -> str:
    value = (request.headers.get(name) or "").strip()
    if not value:
        raise _Refused(400, f"missing {what} header")
    if len(value) > max_length or not value.isprintable():
        raise _Refused(400, f"invalid {what} header")
    return value


def _pushed(request: Request, world_id: str, data: RiskSnapshotIn) -> dict[str, Any]:
    """The push's fields from its headers, or ``_Refused`` with the reference's answer."""
    _token_checked(request)
    producer = _required_header(request, "X-Actor", "actor", 256)
    stage = _required_header(request, "X-Stage", "stage", 64)
    if data.world_id and data.world_id != world_id:
        raise _Refused(400, "world_id mismatch")
    return {"body": data, "producer": producer, "stage": stage}


# Required (400 without: the reference's answer, so optional to the framework); as long as the columns allow.
_ActorHeader = Annotated[str | None, HeaderParameter(name="X-Actor", max_length=256,
                                               description="the producer (provenance.actor); required")]
_StageHeader = Annotated[str | None, HeaderParameter(name="X-Stage", max_length=64,
                                               description="the producer's stage (provenance.stage); required")]

# What the push refuses by itself, before the hub sees it (the reference's answers).
_PUSH_REFUSED = {**errors("X-Actor or X-Stage missing or invalid, or a body world_id that is not the path's", 400),
                 **errors("risk_hub.token is set and the request does not carry it (or auth is on and no token)",
                          401)}


class RiskHubController(Controller):
    path = "/risk-hub/worlds/{world_id:str}/snapshots"
    tags = ["risk hub"]

    @post("/", status_code=200, responses=_PUSH_REFUSED, opt=needs(c.PushRiskSnapshot))
    async def push(self, request: Request, world_id: FromPath[str], data: JSONBody[RiskSnapshotIn],
                   x_actor: _ActorHeader = None, x_stage: _StageHeader = None) -> Response[RiskSnapshot]:
        """Accepts the snapshot (the same version and content again: the stored one, nothing new) and
        announces it with ``risk_snapshot_updated``."""
        # The headers are declared so the document shows them (and their lengths); ``_pushed`` reads them,
        # so a missing one keeps the reference's 400 rather than a validation 422.
        del x_actor, x_stage
        try:
            fields = _pushed(request, world_id, data)
        except _Refused as refused:
            return respond(request, refused.reply)
        return respond(request, await run(request, c.PushRiskSnapshot, world_id, **fields))

    @get("/lookup", opt=needs(c.LookupRiskSnapshot))
    async def lookup(self, request: Request, world_id: FromPath[str], version: Text = None, as_of: Text = None,
                     expand: FromQuery[bool] = False) -> Response[RiskSnapshot]:
        """By ``version``; else the newest with ``as_of`` at most the one given; else the newest."""
        return respond(request, await run(request, c.LookupRiskSnapshot, world_id, version=version or None,
                                          as_of=as_of or None, expand=expand))

    @get("/latest", opt=needs(c.LatestRiskSnapshot))
    async def latest(self, request: Request, world_id: FromPath[str], stage: Text = None, actor: Text = None,
                     limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
                     expand: FromQuery[bool] = False) -> Response[RiskSnapshot]:
        """The newest unexpired snapshot (of ``stage`` / ``actor``, among the newest ``limit``)."""
        return respond(request, await run(request, c.LatestRiskSnapshot, world_id, stage=stage, producer=actor,
                                          limit=limit, expand=expand))

    @get("/", opt=needs(c.ListRiskSnapshots))
    async def list_snapshots(self, request: Request, world_id: FromPath[str], stage: Text = None,
                             actor: Text = None, limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 10,
                             expand: FromQuery[bool] = False) -> Response[RiskSnapshotList]:
        """The newest unexpired snapshots first."""
        return respond(request, await run(request, c.ListRiskSnapshots, world_id, stage=stage, producer=actor,
                                          limit=limit, expand=expand))
