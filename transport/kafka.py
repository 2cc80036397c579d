"""Kafka edge: a producer for ControlBus events and replies (the consumer loop is in ``kafka_consumer``).

Every aiokafka object lives on the daemon's one event loop. Actor threads reach the producer only through
``KafkaPublisher.publish_many``, which hands the sends to the loop and waits in the calling thread; the loop
itself never waits on an actor.

Broker outages are survived rather than fatal, so the daemon can start (and keep accepting commands) while the
broker is down: the producer is created lazily and retried on the next publish, and the consumer loop keeps
retrying its start and its polls with a backoff. Delivery is at-least-once on both sides.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import msgspec
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from transport.kafka_consumer import ConsumedRecord, KafkaConsumerLoop

__all__ = ["BusUnavailable", "ConsumedRecord", "KafkaConsumerLoop", "KafkaPublisher", "brokers_unreachable"]
log = structlog.get_logger("worldservice.kafka")

# Structured-mode CloudEvents over Kafka are recognised by this content type.
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"

Message = tuple[str, str, dict[str, Any]]
RawMessage = tuple[str, str | None, bytes, dict[str, str] | None]  # topic, key, value, headers
Outgoing = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]
T = TypeVar("T")


class BusUnavailable(Exception):
    """The broker did not acknowledge a send in time; some earlier messages of the batch may have arrived."""


def _encode_headers(headers: dict[str, str] | None) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in (headers or {}).items()]


def _failure(ack: asyncio.Future[Any]) -> BaseException | None:
    return asyncio.CancelledError() if ack.cancelled() else ack.exception()


def _retrieve_outcome(future: asyncio.Future[Any]) -> None:
    # An ack that fails after we stopped waiting for it would otherwise be logged as "never retrieved".
    if not future.cancelled():
        future.exception()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class KafkaPublisher:
    """The daemon's one producer.

    ``start()`` never fails because the broker is down: it logs and leaves the producer to be created on the
    next send, so publishes fail with ``BusUnavailable`` until the broker is back and then simply work again.
    After any failed send the producer is retired and the next send connects afresh: that re-reads the
    cluster metadata (leaders may have moved; a memory-only broker such as tansu has even forgotten the
    topics and would otherwise take writes it cannot serve), and the old producer drains before the new one
    sends, so a late retry of an old batch cannot overtake newer messages.

    Idempotence stays off (tansu refuses it); per-partition order still holds because aiokafka keeps at most
    one request in flight per broker and retries a failed batch before sending the next one.
    """

    def __init__(self, brokers: list[str], loop: asyncio.AbstractEventLoop, send_timeout_s: float = 10.0,
                 **producer_options: Any) -> None:
        self._brokers = list(brokers)
        self._loop = loop
        self._send_timeout_s = send_timeout_s
        # A batch stops being retried once request_timeout_ms passed since it was queued. Keeping that under
        # our deadline makes a send the caller was told had failed fail inside the producer as well, rather
        # than linger (40 s by default) and arrive long after the caller moved on.
        self._options = {"acks": "all", "enable_idempotence": False,
                         "request_timeout_ms": max(500, int(send_timeout_s * 800)), **producer_options}
        self._producer: AIOKafkaProducer | None = None
        self._retiring: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._stopped = False

    async def start(self) -> None:
        self._stopped = False
        try:
            await self._ready_producer()
        except BusUnavailable as exc:
            log.warning("kafka.producer_deferred", brokers=self._brokers, error=str(exc))

    async def stop(self) -> None:
        """Flushes what is queued (bounded by the request timeout) and closes the connection."""
        self._stopped = True
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        await self._retired()

    async def _ready_producer(self) -> AIOKafkaProducer:
        if self._stopped:
            raise BusUnavailable("the publisher is stopped")
        if self._lock is None:
            self._lock = asyncio.Lock()  # created here: it must belong to the running loop
        async with self._lock:
            if self._producer is None:
                await self._retired()
                self._producer = await self._connect()
            return self._producer

    async def _connect(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(bootstrap_servers=self._brokers, **self._options)
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise BusUnavailable(f"cannot reach Kafka at {self._brokers}: {exc!r}") from exc
        log.info("kafka.producer_connected", brokers=self._brokers)
        return producer

    def _retire(self, producer: AIOKafkaProducer) -> None:
        if self._producer is producer:
            self._retiring = self._loop.create_task(producer.stop())
            self._producer = None

    async def _retired(self) -> None:
        if self._retiring is not None:
            # shielded: a caller giving up must not abandon the old producer half-closed
            await asyncio.shield(self._retiring)
            self._retiring = None

    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
        self.publish_many([(topic, key, event)])

    def publish_many(self, messages: Sequence[Message]) -> None:
        """Blocks the calling (non-loop) thread until the broker acknowledged every message.

        Raises ``BusUnavailable`` if any message was not acknowledged within ``send_timeout_s``. Order per
        partition is the order of ``messages``, and calls from one thread are delivered in call order; calls
        racing from several threads have no order between them.
        """
        if not messages:
            return
        if _on_loop(self._loop):
            raise RuntimeError("publish_many blocks; on the event loop use send_raw")
        headers = _encode_headers({"content-type": CLOUDEVENTS_CONTENT_TYPE})
        delivery = self._deliver([(topic, key.encode(), msgspec.json.encode(event), headers)
                                  for topic, key, event in messages])
        try:
            future = asyncio.run_coroutine_threadsafe(delivery, self._loop)
        except RuntimeError as exc:  # the loop is closed: the daemon is going down
            delivery.close()
            raise BusUnavailable("the event loop is closed") from exc
        try:
            # The coroutine enforces the deadline itself; the margin only covers a loop too busy to report.
            future.result(timeout=self._send_timeout_s + 5.0)
        except concurrent.futures.TimeoutError as exc:
            future.cancel()
            raise BusUnavailable(f"no acknowledgement within {self._send_timeout_s} s") from exc

    async def send_raw(self, topic: str, key: str | None, value: bytes,
                       headers: dict[str, str] | None = None) -> None:
        """For the loop itself (command replies, dead letters): waits for the broker's acknowledgement."""
        await self.send_raw_many([(topic, key, value, headers)])

    async def send_raw_many(self, messages: Sequence[RawMessage]) -> None:
        """Many raw messages in one delivery: every send is queued first, then every acknowledgement is
        awaited (one broker round trip per partition batch, not one per message). Order per partition is
        the order of ``messages``."""
        if messages:
            await self._deliver([(topic, None if key is None else key.encode(), value, _encode_headers(headers))
                                 for topic, key, value, headers in messages])

    async def _deliver(self, messages: list[Outgoing]) -> None:
        deadline = self._loop.time() + self._send_timeout_s
        producer = await self._within(deadline, self._ready_producer())
        try:
            acks = await self._within(deadline, self._enqueue(producer, messages))
            await self._await_acks(acks, deadline)
        except BusUnavailable:
            self._retire(producer)
            raise

    async def _within(self, deadline: float, step: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout_at(deadline):
                return await step
        except TimeoutError as exc:
            raise BusUnavailable(f"Kafka did not answer within {self._send_timeout_s} s") from exc

    @staticmethod
    async def _enqueue(producer: AIOKafkaProducer, messages: list[Outgoing]) -> list[asyncio.Future[Any]]:
        acks = []
        try:
            # send() in order from one coroutine: that order is the order within each partition.
            for topic, key, value, headers in messages:
                ack = await producer.send(topic, value, key=key, headers=headers)
                ack.add_done_callback(_retrieve_outcome)
                acks.append(ack)
        except KafkaError as exc:
            raise BusUnavailable(f"send to {topic} failed: {exc!r}") from exc
        return acks

    async def _await_acks(self, acks: list[asyncio.Future[Any]], deadline: float) -> None:
        _, pending = await asyncio.wait(acks, timeout=max(0.0, deadline - self._loop.time()))
        if pending:
            raise BusUnavailable(f"{len(pending)} of {len(acks)} messages unacknowledged after "
                                 f"{self._send_timeout_s} s")
        failures = [failure for failure in map(_failure, acks) if failure is not None]
        if failures:
            raise BusUnavailable(f"{len(failures)} of {len(acks)} messages failed: {failures[0]!r}") \
                from failures[0]


def brokers_unreachable(brokers: list[str], timeout_s: float = 3.0) -> str | None:
    """Preflight: ``None`` when at least one bootstrap broker accepts a TCP connection (the client finds
    the rest of the cluster through it), else why not."""
    errors = []
    for broker in brokers:
        host, _, port = broker.rpartition(":")
        try:
            socket.create_connection((host or broker, int(port or 9092)), timeout=timeout_s).close()
            return None
        except (OSError, ValueError) as exc:
            errors.append(f"{broker}: {exc}")
    return "; ".join(errors) or "no brokers"
