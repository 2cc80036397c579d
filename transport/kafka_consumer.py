"""The Kafka consumer loop: fetched batches handled pipelined, their offsets committed in fetch order.

A batch's offsets are committed only after its handler returned and every earlier batch was committed, so a
crash redelivers from the oldest batch not yet handled. With ``max_in_flight`` above 1 the next batch is
fetched and handed to its handler while earlier ones are still being handled; the handler owns any order
between batches (the command intake keeps each world's commands in order). A handler that raises rewinds
the consumer: every batch in flight is let finish, and everything from the oldest uncommitted offset of
each partition is delivered again after ``backoff_s``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

log = structlog.get_logger("worldservice.kafka")


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    headers: dict[str, str]

    @classmethod
    def of(cls, record: ConsumerRecord[bytes, bytes]) -> ConsumedRecord:
        return cls(topic=record.topic, partition=record.partition, offset=record.offset,
                   key=None if record.key is None else record.key.decode(errors="replace"),
                   value=record.value or b"",
                   headers={name: value.decode(errors="replace") for name, value in record.headers or ()})


Handler = Callable[[list[ConsumedRecord]], Awaitable[None]]
Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


@dataclass
class _InFlight:
    batch: Batch
    task: asyncio.Task[None]

    def first_offsets(self) -> dict[TopicPartition, int]:
        return {partition: part[0].offset for partition, part in self.batch.items()}

    def next_offsets(self) -> dict[TopicPartition, int]:
        return {partition: part[-1].offset + 1 for partition, part in self.batch.items()}


class _DrainOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Partitions leave only after what was fetched from them is handled and committed, so their next owner
    starts where this one stopped instead of applying the same commands alongside it."""

    def __init__(self, loop: KafkaConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.settle()
        if self._loop.ownership is not None:  # cluster mode: the worlds go, then the epochs
            await self._loop.ownership.revoked({tp.partition for tp in revoked if tp.topic == self._loop.topic})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._loop.ownership is not None:  # cluster mode: taken under new epochs before any fetch
            await self._loop.ownership.assigned({tp.partition for tp in assigned if tp.topic == self._loop.topic})


class KafkaConsumerLoop:
    """Consumes one topic in a consumer group; a batch's offsets are committed only after its handler
    returned, in fetch order.

    A handler that raises gets the same records again (from the first uncommitted offset of each partition)
    after ``backoff_s``; ``on_rewind`` is called first, once every batch in flight has finished. ``start()``
    returns at once; connecting, joining the group and every retry after a broker outage happen in the
    background task.
    """

    def __init__(self, brokers: list[str], topic: str, group_id: str, handler: Handler,
                 loop: asyncio.AbstractEventLoop | None = None, *, max_records: int = 500,
                 poll_timeout_ms: int = 200, backoff_s: float = 0.5, max_in_flight: int = 1,
                 on_rewind: Callable[[], None] | None = None, ownership: Any = None,
                 **consumer_options: Any) -> None:
        self._brokers = list(brokers)
        self.topic = topic
        self.group_id = group_id
        self._handler = handler
        self._loop = loop
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._backoff_s = backoff_s
        self._max_in_flight = max(1, max_in_flight)
        self._in_flight_poll_ms = 5
        self._on_rewind = on_rewind
        # Cluster mode, commands topic: told the assignment (``transport.ownership.PartitionOwnership``).
        self.ownership = ownership
        self._options = {"auto_offset_reset": "earliest", "max_poll_records": max_records, **consumer_options,
                         "enable_auto_commit": False}
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._in_flight: collections.deque[_InFlight] = collections.deque()
        self._settling: asyncio.Lock | None = None

    async def wait_joined(self, timeout_s: float) -> bool:
        """Whether the group join gave this consumer partitions within ``timeout_s``."""
        try:
            await asyncio.wait_for(self._joined.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            raise RuntimeError("start the consumer loop on the event loop it was created for")
        self._stopping = asyncio.Event()
        self._settling = asyncio.Lock()
        self._task = loop.create_task(self._run(), name=f"kafka-consumer:{self.topic}")
        self._task.add_done_callback(self._report_crash)

    def _report_crash(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("kafka.consumer_crashed", topic=self.topic, error=repr(task.exception()))

    async def stop(self) -> None:
        """Lets the batches in flight finish (they are then committed) and leaves the group."""
        if self._task is None or self._stopping is None:
            return
        self._stopping.set()
        task, self._task = self._task, None
        # a crash was already logged when it happened; shutting down must go on regardless
        await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        consumer = await self._connected()
        if consumer is None:
            return
        self._consumer = consumer
        try:
            while not self._stopped():
                await self._poll_once(consumer)
            await self.settle()
            if self.ownership is not None:  # leaving: aiokafka revokes nothing on stop, so it is done here
                await self.ownership.revoked(set(self.ownership.owned))
        finally:
            self._consumer = None
            await consumer.stop()
            log.info("kafka.consumer_stopped", topic=self.topic, group_id=self.group_id)

    def _stopped(self) -> bool:
        return self._stopping is None or self._stopping.is_set()

    async def _connected(self) -> AIOKafkaConsumer | None:
        while not self._stopped():
            consumer = AIOKafkaConsumer(bootstrap_servers=self._brokers, group_id=self.group_id, **self._options)
            consumer.subscribe([self.topic], listener=_DrainOnRevoke(self))
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                await consumer.stop()
                log.warning("kafka.consumer_start_failed", topic=self.topic, error=repr(exc))
                await self._pause()
                continue
            log.info("kafka.consumer_started", topic=self.topic, group_id=self.group_id)
            return consumer
        return None

    async def _pause(self) -> None:
        """A backoff that ``stop()`` cuts short."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), self._backoff_s)
        except TimeoutError:
            pass

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        # While batches are in flight, poll briefly: a finished batch is committed within a few ms (its
        # replies left when it finished), and whatever arrived meanwhile is handed out without waiting.
        timeout_ms = self._in_flight_poll_ms if self._in_flight else self._poll_timeout_ms
        try:
            batch: Batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
        except KafkaError as exc:
            log.warning("kafka.poll_failed", topic=self.topic, error=repr(exc))
            await self._pause()
            return
        if consumer.assignment():
            self._joined.set()
        if batch:
            records = [ConsumedRecord.of(record) for part in batch.values() for record in part]
            self._in_flight.append(_InFlight(batch, asyncio.ensure_future(self._handler(records))))
        assert self._settling is not None
        async with self._settling:
            await self._commit_finished(wait=len(self._in_flight) >= self._max_in_flight)

    async def _commit_finished(self, wait: bool) -> None:
        """Commit the finished batches at the head of the queue; with ``wait`` (the pipeline is full), wait
        for the oldest first."""
        if wait and self._in_flight:
            await asyncio.wait([self._in_flight[0].task])
        while self._in_flight and self._in_flight[0].task.done():
            head = self._in_flight[0]
            if head.task.exception() is not None:
                await self._rewind(head)
                return
            self._in_flight.popleft()
            await self._commit(head.next_offsets())

    async def settle(self) -> None:
        """Finish and commit every batch in flight (before a rebalance takes partitions away, and at stop)."""
        assert self._settling is not None
        async with self._settling:
            while self._in_flight:
                await self._commit_finished(wait=True)

    async def _rewind(self, failed: _InFlight) -> None:
        log.error("kafka.handler_failed", topic=self.topic, error=repr(failed.task.exception()),
                  records=sum(len(part) for part in failed.batch.values()))
        await asyncio.gather(*(flight.task for flight in self._in_flight), return_exceptions=True)
        first: dict[TopicPartition, int] = {}
        for flight in self._in_flight:
            for partition, offset in flight.first_offsets().items():
                first.setdefault(partition, offset)  # the oldest batch holding the partition
        self._in_flight.clear()
        consumer = self._consumer
        if consumer is not None:
            assigned = consumer.assignment()
            for partition, offset in first.items():
                # A partition taken away by a rebalance is redelivered to its new owner from the committed offset.
                if partition in assigned:
                    consumer.seek(partition, offset)
        if self._on_rewind is not None:
            self._on_rewind()
        await self._pause()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # The handler did its work; a later commit covers these offsets, or they are redelivered.
            log.warning("kafka.commit_failed", topic=self.topic, error=repr(exc))
