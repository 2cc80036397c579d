"""What every HTTP route shares: the ``Edge`` (actor system, metrics, readiness) and the helpers that turn
a request into a typed command, send it to its world's actor and turn the reply into a response.

Handlers only translate: path/query/body -> a typed command, command -> the world's actor, reply ->
response. They never wait on a pykka future; the actor resolves an asyncio future instead.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec

from actors.bridge import Reply, ReplyHook, Request as ActorRequest, asyncio_hook, error_reply
from actors.storage_reader import StorageRead
from actors.system import ActorSystem
from messages import commands as c
from messages.errors import ErrorBody, Refusal
from messages.types import Identifier, WorldId
from transport.auth import require_command
from transport.metrics import EdgeMetrics

CORRELATION_HEADER = "X-Correlation-ID"
MAX_ID = 2**63 - 1  # audit ids are BIGINT: a larger cursor cannot name any entry
PUBLIC = {"public": True}
# What each identifier parameter (in the path or the query) is checked against before a command is built
# (``checked_id``); the OpenAPI document gives each the same schema (``transport.openapi``).
ID_PARAMETERS: dict[str, Any] = {
    "world_id": WorldId, "strategy_id": Identifier, "run_id": Identifier, "node_id": Identifier,
    "src_node_id": Identifier, "dst_node_id": Identifier,
}


def answers(*refusals: Refusal) -> dict[str, Any]:
    """A route's ``opt`` for what it refuses by itself, without sending a command kind that declares it (a
    pure plan, a cross-world read): the OpenAPI document lists these with the kinds' (``transport.openapi``)."""
    return {"refusals": refusals}


# A read answered with an ETag: ``If-None-Match`` naming it is answered 304 without a body.
NOT_MODIFIED = {304: ResponseSpec(data_container=None, description="If-None-Match names the current ETag")}


def errors(description: str, *codes: int) -> dict[int, ResponseSpec]:
    """Statuses a route answers by itself with an ``ErrorBody`` (its own header checks), beyond its refusals."""
    return {code: ResponseSpec(data_container=ErrorBody, description=description) for code in codes}


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

    async def call_many(self, commands: Sequence[c.Command]) -> list[Reply]:
        """Commands sent together (a fetched Kafka batch): every one is sent before the first await, in
        order, so each world gets its share as one run of its mailbox; one deadline covers them all."""
        if self.draining:
            return [error_reply(503, "draining; retry on another instance") for _ in commands]
        loop, started = asyncio.get_running_loop(), time.perf_counter()
        futures = []
        for command in commands:
            future, hook = asyncio_hook(loop)
            future.add_done_callback(self._observer(type(command).__name__, started))
            self.system.send(ActorRequest(command=command, reply=hook))
            futures.append(future)
        if futures:
            await asyncio.wait(futures, timeout=self.call_timeout_s)
        return [self._settled(command, future, started) for command, future in zip(commands, futures, strict=True)]

    def _settled(self, command: c.Command, future: asyncio.Future[Reply], started: float) -> Reply:
        if future.done():
            return future.result()
        future.cancel()  # a late answer then finds nobody waiting (and is not counted twice)
        self.metrics.observe(type(command).__name__, 504, time.perf_counter() - started)
        return error_reply(504, "world did not answer in time; the outcome is unknown")

    def _observer(self, name: str, started: float) -> Callable[[asyncio.Future[Reply]], None]:
        def observe(future: asyncio.Future[Reply]) -> None:
            if not future.cancelled():
                self.metrics.observe(name, future.result().status, time.perf_counter() - started)
        return observe

    async def read(self, make: Callable[[ReplyHook], StorageRead]) -> Reply:
        """A cross-world read through the storage reader actor: ``make(hook)`` builds the read message."""
        future, hook = asyncio_hook(asyncio.get_running_loop())
        started = time.perf_counter()
        read = make(hook)
        self.system.read(read)
        try:
            reply = await asyncio.wait_for(future, self.call_timeout_s)
        except TimeoutError:
            reply = error_reply(504, "storage did not answer in time")
        self.metrics.observe(type(read).__name__, reply.status, time.perf_counter() - started)
        return reply


def edge_of(request: Request) -> Edge:
    return request.app.state.edge


def checked_world_id(world_id: str) -> str:
    return checked_path_id(world_id, "world_id")


def checked_path_id(value: str, key: str) -> str:
    return checked_id(value, key, "path")


def checked_id(value: str | None, key: str, source: str = "query") -> Any:
    """Identifiers get the same checks a body field would (``ID_PARAMETERS``): 422 naming the parameter.
    ``None`` (an optional query parameter left out) stays ``None``."""
    if value is None:
        return None
    try:
        return msgspec.convert(value, ID_PARAMETERS[key])
    except msgspec.ValidationError as exc:
        raise HTTPException(status_code=400, extra=[{"message": str(exc).split(" - ")[0],
                                                     "key": key, "source": source}]) from None


def _header(request: Request, name: str, max_length: int) -> str | None:
    """A caller-supplied identity header, kept only when it fits the audit column and is printable."""
    value = request.headers.get(name)
    return value if value and len(value) <= max_length and value.isprintable() else None


def caller(request: Request) -> dict[str, Any]:
    """Who asked and under which correlation id: recorded on every audit entry. With auth on, the actor
    is the verified token's subject, never a header the caller chose."""
    principal = getattr(request.state, "principal", None)
    actor = principal.subject if principal is not None else _header(request, "X-Caller-Sub", 256)
    return {"actor": actor,
            "correlation_id": _header(request, CORRELATION_HEADER, 128) or uuid.uuid4().hex,
            "command_id": _header(request, "Idempotency-Key", 256)}


async def run(request: Request, command_type: type, world_id: str, **fields: Any) -> Reply:
    """Build the command (with the caller's identity), check its role and send it to its world."""
    who = caller(request)
    command = command_type(world_id=checked_world_id(world_id), **who, **fields)
    require_command(request, command)  # the role table both edges share; routes check it early too
    reply = await edge_of(request).call(command)
    request.state.correlation_id = who["correlation_id"]
    return reply


def respond(request: Request, reply: Reply, headers: dict[str, str] | None = None) -> Response:
    headers = {**(headers or {}), CORRELATION_HEADER: getattr(request.state, "correlation_id", "")}
    if reply.status == 204:
        return Response(content=None, status_code=204, headers=headers)
    return Response(content=reply.body, status_code=reply.status, headers=headers)


def header_etag(etag: str) -> str:
    """Etags embed strategy ids, which may be any Unicode; HTTP headers carry latin-1 printable text, so
    anything else is percent-encoded in the header (the body keeps the etag as is)."""
    return etag if etag.isascii() and etag.isprintable() else quote(etag, safe=":")


def etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match``: a list of (weak or strong, quoted or bare) tags, or ``*``."""
    if not header:
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in header.split(",")}
    return "*" in tags or etag in tags or header_etag(etag) in tags


def etagged(request: Request, reply: Reply) -> Response:
    """A read answered with its body's etag, or 304 when ``If-None-Match`` already names it."""
    if not reply.ok:
        return respond(request, reply)
    etag = header_etag(reply.body.etag)
    if etag_matches(request.headers.get("If-None-Match"), reply.body.etag):
        return Response(content=None, status_code=304, headers={"ETag": etag})
    return respond(request, reply, {"ETag": etag})
