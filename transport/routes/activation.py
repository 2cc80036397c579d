"""A world's activation: one entry or the whole set (with ETags), writes with ``If-Match``, and the
activation state hash (reference §1.4)."""

from typing import Annotated

from litestar import Controller, Request, Response, get, put
from litestar.exceptions import HTTPException
from litestar.params import FromPath, JSONBody, QueryParameter

from messages import commands as c
from messages.activation import ActivationEnvelope, ActivationRequest, ActivationSetOut, StateHashOut
from messages.errors import ErrorBody
from messages.types import Side
from transport.auth import needs
from transport.edge import NOT_MODIFIED, checked_id, errors, etagged, header_etag, respond, run


_ONE_ENTRY = "with both strategy_id and side (long|short): that entry; with neither: the whole set"


class ActivationController(Controller):
    path = "/worlds/{world_id:str}"
    tags = ["activation"]

    @get("/activation", opt=needs(c.GetActivation), responses=NOT_MODIFIED)
    async def get_activation(self, request: Request, world_id: FromPath[str],
                             strategy_id: Annotated[str | None, QueryParameter(description=_ONE_ENTRY)] = None,
                             side: Annotated[Side | None, QueryParameter(description=_ONE_ENTRY)] = None
                             ) -> Response[ActivationEnvelope | ActivationSetOut]:
        """With ``strategy_id`` and ``side``: that entry. With neither: the whole set, its ``version`` and
        ``state_hash`` (a Gateway's reconcile after an ACK gap). Both answer an ``ETag``; ``If-None-Match``
        naming it is 304."""
        if strategy_id is None and side is None:
            return etagged(request, await run(request, c.GetActivationSet, world_id))
        if strategy_id is None or side is None:  # one without the other: the 422 of a missing parameter
            missing = "side" if side is None else "strategy_id"
            raise HTTPException(status_code=400, detail=f"Missing required query parameter '{missing}'")
        return etagged(request, await run(request, c.GetActivation, world_id,
                                          strategy_id=checked_id(strategy_id, "strategy_id"), side=side))

    @put("/activation", status_code=200, opt=needs(c.PutActivation))
    async def put_activation(self, request: Request, world_id: FromPath[str],
                             data: JSONBody[ActivationRequest]) -> Response[ActivationEnvelope]:
        if_match = request.headers.get("If-Match")
        if_match = if_match.strip().removeprefix("W/").strip('"') if if_match else None
        reply = await run(request, c.PutActivation, world_id, body=data, if_match=if_match)
        headers = {"ETag": header_etag(_etag_of(reply.body))} if reply.ok else {}
        return respond(request, reply, headers)

    @get("/activation/state_hash", opt=needs(c.GetStateHash))
    async def activation_state_hash(self, request: Request, world_id: FromPath[str]) -> Response[StateHashOut]:
        # Litestar matches the static ``activation`` segment first, so the topic route below never sees it.
        return respond(request, await run(request, c.GetStateHash, world_id))

    @get("/{topic:str}/state_hash", opt=needs(c.GetStateHash), responses=errors("unsupported topic", 400))
    async def state_hash(self, request: Request, world_id: FromPath[str], topic: FromPath[str]) -> Response[StateHashOut]:
        if topic.lower() != "activation":
            return Response(content=ErrorBody(detail="unsupported topic"), status_code=400)
        return respond(request, await run(request, c.GetStateHash, world_id))


def _etag_of(body: object) -> str:
    """The envelope's etag, read where it is: a replayed reply is plain JSON already, a fresh one a
    struct (encoding it to builtins only to read one field cost a full envelope conversion per PUT)."""
    return body["etag"] if isinstance(body, dict) else body.etag  # type: ignore[attr-defined]
