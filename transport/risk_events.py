"""The Risk Hub's ControlBus consumer edge: ``risk_snapshot_updated`` records -> the consumer actor; a record
the actor dead-letters is published to ``<topic>.dlq``; the batch's offsets are committed only once every
record is done or dead-lettered (a timeout redelivers the batch)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from actors.bridge import Reply, asyncio_hook, error_reply
from actors.risk_consumer import DeadLetterNote, RiskEventReceived
from transport.kafka import ConsumedRecord
from transport.kafka_intake import RawSender, TransientRefusal


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def risk_event_handler(submit: Callable[[RiskEventReceived], None], sender: RawSender, dlq: str,
                       timeout_s: float = 60.0) -> Callable[[list[ConsumedRecord]], Awaitable[None]]:
    async def one(record: ConsumedRecord) -> Reply:
        future, hook = asyncio_hook(asyncio.get_running_loop())
        submit(RiskEventReceived(raw=record.value, reply=hook))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return error_reply(504, "the risk snapshot event was not processed in time")

    async def handle(records: list[ConsumedRecord]) -> None:
        replies = await asyncio.gather(*[one(record) for record in records])
        if any(reply.status == 504 for reply in replies):
            raise TransientRefusal("a risk snapshot event timed out; redeliver the batch")
        letters = [(record, reply.body) for record, reply in zip(records, replies, strict=True)
                   if isinstance(reply.body, DeadLetterNote)]
        await asyncio.gather(*[sender.send_raw(dlq, record.key, msgspec.json.encode(note))
                               for record, note in letters])

    return handle
