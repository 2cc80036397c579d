"""Policy versions of a world, its default version and the built-in presets (reference §1.2)."""

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.policies import PRESETS
from messages import commands as c
from messages.policies import PolicyInfo, PolicyRequest, PolicyVersionRef, SetDefaultRequest
from transport.auth import needs
from transport.edge import respond, run


class PoliciesController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["policies"]

    @post("/policies", status_code=200, opt=needs(c.AddPolicy))
    async def add(self, request: Request, world_id: FromPath[str], data: JSONBody[PolicyRequest]) -> Response[PolicyVersionRef]:
        return respond(request, await run(request, c.AddPolicy, world_id, body=data))

    @get("/policies", opt=needs(c.ListPolicies))
    async def list_versions(self, request: Request, world_id: FromPath[str]) -> Response[list[PolicyVersionRef]]:
        return respond(request, await run(request, c.ListPolicies, world_id))

    @get("/policies/{version:int}", opt=needs(c.GetPolicy))
    async def get_version(self, request: Request, world_id: FromPath[str], version: FromPath[int]) -> Response[dict[str, Any]]:
        return respond(request, await run(request, c.GetPolicy, world_id, version=max(version, 1)))

    @get("/policies/{version:int}/meta", opt=needs(c.GetPolicyInfo))
    async def get_meta(self, request: Request, world_id: FromPath[str], version: FromPath[int]) -> Response[PolicyInfo]:
        return respond(request, await run(request, c.GetPolicyInfo, world_id, version=max(version, 1)))

    @post("/set-default", status_code=200, opt=needs(c.SetDefaultPolicy))
    async def set_default(self, request: Request, world_id: FromPath[str], data: JSONBody[SetDefaultRequest | None] = None,
                          v: Annotated[int | None, QueryParameter(ge=1)] = None) -> Response[PolicyVersionRef]:
        """The version comes in the body ``{"version": V}`` (reference) or as ``?v=V`` (its documentation)."""
        body = data or (SetDefaultRequest(version=v) if v is not None else None)
        if body is None:
            raise HTTPException(status_code=400, detail="Missing required query parameter 'v' or body version")
        return respond(request, await run(request, c.SetDefaultPolicy, world_id, body=body))


@get("/policies/presets", tags=["policies"], opt={"authenticated": True})
async def list_presets() -> dict[str, dict[str, Any]]:
    return PRESETS
