"""Kafka edges into the actors: the command topic (with replies and a dead-letter topic) and Gateway ACKs.

Commands: key = world_id, value = one JSON command of the ``kind``-tagged union, headers ``correlation_id``
and ``reply_to``. A batch is handed to the world actors in order (so per world in order), every reply is
awaited (the command is durable by then), replies are published, and only then does the consumer commit.
An undecodable or invalid command goes to the dead-letter topic with the reason and the consumer goes on. A
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

from actors.bridge import Reply
from actors.bus import AckIntake
from messages.commands import AnyCommand, Command, command_decoder
from transport.kafka import ConsumedRecord

log = structlog.get_logger("worldservice.kafka_intake")
_TRANSIENT = (503, 504)


class RawSender(Protocol):
    async def send_raw(self, topic: str, key: str | None, value: bytes,
                       headers: dict[str, str] | None = None) -> None: ...


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
        if any(reply.status in _TRANSIENT for reply in replies):
            raise TransientRefusal(f"{sum(r.status in _TRANSIENT for r in replies)} commands refused transiently")
        # Replies go out together (one broker round trip for the batch, not one per command).
        await asyncio.gather(*[self._reply(record, command, reply)
                               for (record, command), reply in zip(accepted, replies, strict=True)])
        self.applied += len(accepted)

    async def _decoded(self, record: ConsumedRecord) -> AnyCommand | None:
        try:
            command = command_decoder.decode(record.value)
        except msgspec.DecodeError as exc:
            await self._dead_letter(record, f"invalid command: {exc}")
            return None
        if record.key is not None and record.key != command.world_id:
            await self._dead_letter(record, f"message key {record.key!r} is not the command's world_id")
            return None
        return msgspec.structs.replace(
            command, correlation_id=command.correlation_id or record.headers.get("correlation_id"),
            command_id=command.command_id or f"kafka:{record.topic}:{record.partition}:{record.offset}")

    async def _dead_letter(self, record: ConsumedRecord, error: str) -> None:
        letter = DeadLetter(error=error, topic=record.topic, partition=record.partition, offset=record.offset,
                            key=record.key, value=record.value.decode(errors="replace"), headers=record.headers)
        await self.sender.send_raw(self.dlq_topic, record.key, msgspec.json.encode(letter), record.headers)
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


def ack_handler(intake: AckIntake, call: Callable[[Command], Awaitable[Reply]]) -> Callable[[list[ConsumedRecord]], Awaitable[None]]:
    """ACK records -> world actors; the offsets are committed only once every ACK of the batch is recorded
    in its run (a crash before that redelivers them, so no acknowledgement is lost)."""

    async def handle(records: list[ConsumedRecord]) -> None:
        acks = [ack for ack in (intake.parse(record.value) for record in records) if ack is not None]
        replies = await asyncio.gather(*[asyncio.ensure_future(call(ack)) for ack in acks])
        for ack, reply in zip(acks, replies, strict=True):
            if reply.ok:
                intake.remember(ack)
        if any(reply.status in _TRANSIENT for reply in replies):
            raise TransientRefusal("an ACK could not be recorded; redeliver the batch")

    return handle
