"""Kafka edges into the actors: the command topic (with replies and a dead-letter topic) and Gateway ACKs.

Commands: key = world_id, value = one JSON command of the external ``kind``-tagged union (the daemon's
internal messages are not decodable here), headers ``correlation_id``, ``reply_to`` and, with auth on,
``authorization: Bearer <token>`` (the HTTP edge's header name), verified with the HTTP edge's
configuration and role table; the command's ``actor`` is then the token's subject. A batch is handed to the
world actors in order (so per world in order), every reply is awaited (the command is durable by then),
replies are published, and only then does the consumer commit.
An undecodable, invalid, unauthenticated or unauthorised command goes to the dead-letter topic with the
reason (its token removed) and the consumer goes on; nothing of it reaches an actor. ``upsert_allocations``
(the body of ``POST /allocations``) goes to the allocation coordinator, idempotent by its ``run_id``. A
transient refusal (storage down, draining) fails the batch, so it is redelivered rather than acknowledged;
a redelivered command is applied once, because its ``command_id`` (or, without one, its topic, partition
and offset) is remembered with its outcome in the same transaction as its effects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import structlog

from actors.ack_intake import AckReceived
from actors.bridge import Reply, asyncio_hook, error_reply
from messages.commands import Command, ExternalCommand, external_command_decoder
from transport.kafka import ConsumedRecord
from transport.principals import Authenticator, Forbidden, Principal, Unauthenticated, authorize_command

log = structlog.get_logger("worldservice.kafka_intake")
_TRANSIENT = (503, 504)


class RawSender(Protocol):
    async def send_raw(self, topic: str, key: str | None, value: bytes,
                       headers: dict[str, str] | None = None) -> None: ...


def _transient(reply: Reply) -> bool:
    return reply.status in _TRANSIENT and not reply.permanent


class _Refused(Exception):
    """Why a record goes to the dead-letter topic instead of an actor."""


class TransientRefusal(Exception):
    """A command was refused for a reason that may pass (storage down, draining): redeliver the batch."""


class CommandReply(msgspec.Struct, kw_only=True):
    """What ``reply_to`` receives: the HTTP-equivalent status and body, with the command's ids."""

    status: int
    body: Any
    correlation_id: str | None
    command_id: str | None
    world_id: str
    kind: str


class DeadLetter(msgspec.Struct, kw_only=True):
    error: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value: str
    headers: dict[str, str]


@dataclass
class CommandIntake:
    call: Callable[[Command], Awaitable[Reply]]
    sender: RawSender
    dlq_topic: str
    authenticator: Authenticator | None = None  # None: auth off, commands are taken as sent
    auth_header: str = "Authorization"  # matched case-insensitively, like an HTTP header
    applied: int = 0
    dead_lettered: int = 0

    async def handle(self, records: list[ConsumedRecord]) -> None:
        accepted = []
        for record in records:
            command = await self._decoded(record)
            if command is not None:
                accepted.append((record, command))
        # Every send happens before the first await, in order, so a world sees its commands in log order.
        calls = [asyncio.ensure_future(self.call(command)) for _, command in accepted]
        replies = await asyncio.gather(*calls)
        transient = sum(_transient(reply) for reply in replies)
        if transient:
            raise TransientRefusal(f"{transient} commands refused transiently")
        # Replies go out together (one broker round trip for the batch, not one per command).
        await asyncio.gather(*[self._reply(record, command, reply)
                               for (record, command), reply in zip(accepted, replies, strict=True)])
        self.applied += len(accepted)

    async def _decoded(self, record: ConsumedRecord) -> ExternalCommand | None:
        try:
            return self._admitted(record)
        except _Refused as refused:
            await self._dead_letter(record, str(refused))
            return None

    def _admitted(self, record: ConsumedRecord) -> ExternalCommand:
        """Authenticate (before decoding, as HTTP does), decode, check the key and the role."""
        principal = self._principal(record)
        try:
            command = external_command_decoder.decode(record.value)
        except msgspec.DecodeError as exc:
            raise _Refused(f"invalid command: {exc}") from None
        if record.key is not None and record.key != command.world_id:
            raise _Refused(f"message key {record.key!r} is not the command's world_id")
        if principal is not None:
            try:
                authorize_command(principal, command)
            except Forbidden as exc:
                raise _Refused(f"403 forbidden: {exc.detail}") from None
        return msgspec.structs.replace(
            command, actor=principal.subject if principal is not None else command.actor,
            correlation_id=command.correlation_id or record.headers.get("correlation_id"),
            command_id=command.command_id or f"kafka:{record.topic}:{record.partition}:{record.offset}")

    def _principal(self, record: ConsumedRecord) -> Principal | None:
        if self.authenticator is None:
            return None
        try:
            return self.authenticator.authenticate(self._token_header(record.headers))
        except Unauthenticated as exc:
            raise _Refused(f"401 unauthenticated: {exc.detail}") from None

    def _token_header(self, headers: dict[str, str]) -> str | None:
        wanted = self.auth_header.lower()
        return next((value for name, value in headers.items() if name.lower() == wanted), None)

    def _without_token(self, headers: dict[str, str]) -> dict[str, str]:
        """Dead letters are read by people and tools that must not get a replayable credential."""
        wanted = self.auth_header.lower()
        return {name: value for name, value in headers.items() if name.lower() != wanted}

    async def _dead_letter(self, record: ConsumedRecord, error: str) -> None:
        headers = self._without_token(record.headers)
        letter = DeadLetter(error=error, topic=record.topic, partition=record.partition, offset=record.offset,
                            key=record.key, value=record.value.decode(errors="replace"), headers=headers)
        await self.sender.send_raw(self.dlq_topic, record.key, msgspec.json.encode(letter), headers)
        self.dead_lettered += 1
        log.warning("command_dead_lettered", error=error, offset=record.offset, partition=record.partition)

    async def _reply(self, record: ConsumedRecord, command: Command, reply: Reply) -> None:
        reply_to = record.headers.get("reply_to")
        if not reply_to:
            return
        body = CommandReply(status=reply.status, body=reply.body, correlation_id=command.correlation_id,
                            command_id=command.command_id, world_id=command.world_id,
                            kind=type(command).__struct_config__.tag)  # type: ignore[attr-defined]
        headers = {"correlation_id": command.correlation_id} if command.correlation_id else {}
        await self.sender.send_raw(reply_to, command.world_id, msgspec.json.encode(body), headers)


def ack_handler(submit: Callable[[AckReceived], None], timeout_s: float = 60.0,
                draining: Callable[[], bool] = lambda: False) -> Callable[[list[ConsumedRecord]], Awaitable[None]]:
    """ACK records -> the ACK intake actor (which sequences them and has each one recorded in its run by
    its world); the offsets are committed only once every ACK of the batch is recorded or dropped (a crash
    before that redelivers them, so no acknowledgement is lost)."""

    async def one(record: ConsumedRecord) -> Reply:
        if draining():
            return error_reply(503, "draining; retry on another instance")
        future, hook = asyncio_hook(asyncio.get_running_loop())
        submit(AckReceived(raw=record.value, reply=hook))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return error_reply(504, "the ACK was not recorded in time")

    async def handle(records: list[ConsumedRecord]) -> None:
        replies = await asyncio.gather(*[one(record) for record in records])
        if any(_transient(reply) for reply in replies):
            raise TransientRefusal("an ACK could not be recorded; redeliver the batch")

    return handle
