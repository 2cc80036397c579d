"""Kafka edges into the actors: the command topic (with replies and a dead-letter topic) and Gateway ACKs.

Commands: key = world_id, value = one JSON command of the external ``kind``-tagged union (the daemon's
internal messages are not decodable here), headers ``correlation_id``, ``reply_to`` and, with auth on,
``authorization: Bearer <token>`` (the HTTP edge's header name), verified with the HTTP edge's
configuration and role table; the command's ``actor`` is then the token's subject.

Batches are handled pipelined (the consumer hands out the next fetched batch while earlier ones are still
being handled) and each is handed to the world actors at once: every world's share is sent as one run, in
log order, without waiting for any other world, unless that world still has commands of an earlier batch in
flight, in which case its share follows them once they succeeded. Every reply of the batch is awaited (the command is durable by
then), the replies and dead letters are produced together, and only then is the batch done; the consumer
commits offsets in fetch order, so a commit never covers a command that was not durable and answered.
An undecodable, invalid, unauthenticated or unauthorised command goes to the dead-letter topic with the
reason (its token removed) and the consumer goes on; nothing of it reaches an actor. ``upsert_allocations``
(the body of ``POST /allocations``) goes to the allocation coordinator, idempotent by its ``run_id``. A
transient refusal (storage down, draining) fails the batch, so it is redelivered rather than acknowledged;
from then until the consumer has rewound nothing more is handed out (a world's later commands never
overtake its refused one);
a redelivered command is applied once, because its ``command_id`` (or, without one, its topic, partition
and offset) is remembered with its outcome in the same transaction as its effects.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import structlog

from actors.ack_intake import AckReceived
from actors.bridge import Reply, asyncio_hook, error_reply
from messages.commands import Command, ExternalCommand, external_command_decoder
from transport.kafka import ConsumedRecord, RawMessage
from transport.principals import Authenticator, Forbidden, Principal, Unauthenticated, authorize_command

log = structlog.get_logger("worldservice.kafka_intake")
_TRANSIENT = (503, 504)


class RawSender(Protocol):
    async def send_raw_many(self, messages: Sequence[RawMessage]) -> None: ...


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


CallMany = Callable[[Sequence[Command]], Awaitable[list[Reply]]]
Admitted = tuple[ConsumedRecord, ExternalCommand]
Group = asyncio.Task["list[Reply] | None"]  # one world's commands of one batch; None: not applied in full


@dataclass
class CommandIntake:
    call: Callable[[Command], Awaitable[Reply]]
    sender: RawSender
    dlq_topic: str
    authenticator: Authenticator | None = None  # None: auth off, commands are taken as sent
    auth_header: str = "Authorization"  # matched case-insensitively, like an HTTP header
    call_many: CallMany | None = None  # the edge's batch call; None: ``call`` once per command
    applied: int = 0
    dead_lettered: int = 0
    # The newest unfinished group of each world: a world's commands of the next batch wait for it.
    _tails: dict[str, Group] = field(default_factory=dict)
    # Set by the first transient refusal, cleared by ``rewound``: no command is handed out in between.
    _halted: bool = False
    _sent: asyncio.Future[None] | None = None  # done once the latest batch's replies are sent (or it failed)

    async def handle(self, records: list[ConsumedRecord]) -> None:
        if self._halted:
            raise TransientRefusal("an earlier batch was refused; waiting for its redelivery")
        # Batches start in fetch order; each one's replies leave after the previous batch's, so a caller
        # sees a world's replies in the order of its commands.
        previous, mine = self._sent, asyncio.get_running_loop().create_future()
        self._sent = mine
        try:
            outgoing = await self._applied_batch(records)
            if previous is not None:
                await asyncio.wait([previous])
            # Replies and dead letters go out together: every send is queued, then every ack awaited.
            await self.sender.send_raw_many(outgoing)
        except BaseException:
            self._halted = True  # whatever failed, this batch comes back: nothing may overtake it
            raise
        finally:
            mine.set_result(None)

    async def _applied_batch(self, records: list[ConsumedRecord]) -> list[RawMessage]:
        """Hand the batch to the worlds and await every reply; the replies and dead letters to send."""
        accepted, outgoing = self._admit_all(records)
        by_world: dict[str, list[Admitted]] = {}
        for item in accepted:
            by_world.setdefault(item[1].world_id, []).append(item)
        # Every world's share goes out as one run, in log order, unless that world still has commands of an
        # earlier batch in flight: then its share follows those, once they succeeded.
        groups = [self._hand_over(world_id, items) for world_id, items in by_world.items()]
        results = await asyncio.gather(*groups)
        if any(result is None for result in results):
            raise TransientRefusal("commands refused transiently; the batch is redelivered")
        for items, replies in zip(by_world.values(), results, strict=True):
            outgoing += [message for (record, command), reply in zip(items, replies or [], strict=True)
                         if (message := self._reply(record, command, reply)) is not None]
        self.applied += len(accepted)
        return outgoing

    def rewound(self) -> None:
        """The consumer rewound to the oldest unfinished batch (nothing is in flight any more)."""
        self._halted = False
        self._tails.clear()
        self._sent = None

    def _hand_over(self, world_id: str, items: list[Admitted]) -> Group:
        previous = self._tails.get(world_id)
        commands = [command for _, command in items]
        if previous is None:
            group = asyncio.ensure_future(self._applied(self._calls(commands)))
        else:
            group = asyncio.ensure_future(self._after(previous, commands))
        self._tails[world_id] = group
        group.add_done_callback(functools.partial(self._forget, world_id))
        return group

    def _forget(self, world_id: str, done: Group) -> None:
        if self._tails.get(world_id) is done:
            del self._tails[world_id]

    async def _after(self, previous: Group, commands: list[ExternalCommand]) -> list[Reply] | None:
        await asyncio.wait([previous])  # not ``await previous``: cancelling this group must not cancel that one
        if previous.cancelled() or previous.exception() is not None or previous.result() is None or self._halted:
            return None  # the earlier commands are redelivered first; these follow them then
        return await self._applied(self._calls(commands))

    async def _applied(self, calls: Awaitable[list[Reply]]) -> list[Reply] | None:
        try:
            replies = await calls
        except BaseException:
            self._halted = True
            raise
        if any(_transient(reply) for reply in replies):
            self._halted = True
            return None
        return replies

    def _calls(self, commands: list[ExternalCommand]) -> Awaitable[list[Reply]]:
        if self.call_many is not None:
            return self.call_many(commands)
        return asyncio.gather(*[self.call(command) for command in commands])

    def _admit_all(self, records: list[ConsumedRecord]) -> tuple[list[Admitted], list[RawMessage]]:
        accepted, dead = [], []
        for record in records:
            try:
                accepted.append((record, self._admitted(record)))
            except _Refused as refused:
                dead.append(self._dead_letter(record, str(refused)))
        return accepted, dead

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

    def _dead_letter(self, record: ConsumedRecord, error: str) -> RawMessage:
        headers = self._without_token(record.headers)
        letter = DeadLetter(error=error, topic=record.topic, partition=record.partition, offset=record.offset,
                            key=record.key, value=record.value.decode(errors="replace"), headers=headers)
        self.dead_lettered += 1
        log.warning("command_dead_lettered", error=error, offset=record.offset, partition=record.partition)
        return self.dlq_topic, record.key, msgspec.json.encode(letter), headers

    @staticmethod
    def _reply(record: ConsumedRecord, command: Command, reply: Reply) -> RawMessage | None:
        reply_to = record.headers.get("reply_to")
        if not reply_to:
            return None
        body = CommandReply(status=reply.status, body=reply.body, correlation_id=command.correlation_id,
                            command_id=command.command_id, world_id=command.world_id,
                            kind=type(command).__struct_config__.tag)  # type: ignore[attr-defined]
        headers = {"correlation_id": command.correlation_id} if command.correlation_id else {}
        return reply_to, command.world_id, msgspec.json.encode(body), headers


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
