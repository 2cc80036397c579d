"""Bus: relays committed outbox rows to the ControlBus in commit order (so in order per world), marks them
sent, and routes Gateway ACKs to the world actors.

Delivery is at-least-once (a crash between publish and mark re-sends); every event carries an
``idempotency_key`` and a deterministic id so consumers drop the duplicate. While the broker is down the
rows wait in SQL; the daemon's timer retries, and commands keep succeeding meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec
import pykka
import structlog

from actors.bridge import Request
from actors.metrics import ActorMetrics
from actors.directory_messages import noop_reply
from domain.timefmt import iso_z
from messages.apply import ActivationAckEvent, activation_ack_decoder
from messages.commands import AckActivation
from storage.sql import SqlStore

log = structlog.get_logger("worldservice.bus")


class Publisher(Protocol):
    def publish_many(self, messages: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Deliver (topic, key, event) in order; raise if any was not acknowledged by the broker."""


@dataclass(frozen=True, slots=True)
class Relay:
    """Something was committed: publish what is pending."""


class OutboxRelay(pykka.ThreadingActor):
    def __init__(self, store: SqlStore, publisher: Publisher, clock: Callable[[], datetime],
                 mark_sent: Callable[[list[int], str], None], batch: int = 500,
                 topics: dict[str, str] | None = None) -> None:
        super().__init__()
        self._topics = topics or {}  # logical event topic -> configured Kafka topic
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._mark_sent = mark_sent
        self._batch = batch
        self._published_up_to = 0  # marks travel through the writer, so never re-read what was sent
        self.relayed = 0
        self.failing = False

    def on_receive(self, message: object) -> None:
        # Commits arrive in bursts; one pass after the burst covers them all.
        if isinstance(message, Relay) and self.actor_inbox.empty():
            try:
                self._relay_pending()
                self.failing = False
            except Exception as exc:  # noqa: BLE001 - an escaped error would stop the actor: retry later
                if not self.failing:
                    log.error("controlbus_publish_failed", error=repr(exc))
                self.failing = True

    def _relay_pending(self) -> None:
        while rows := self._store.pending_outbox(self._published_up_to, self._batch):
            self._publisher.publish_many([(self._topics.get(topic, topic), world_id, payload)
                                          for _, world_id, topic, payload in rows])
            self._published_up_to = rows[-1][0]
            self._mark_sent([row[0] for row in rows], iso_z(self._clock()))
            self.relayed += len(rows)
            if len(rows) < self._batch:
                return

    def pending_count(self) -> int:
        """Rows committed but not yet published by this relay."""
        return len(self._store.pending_outbox(self._published_up_to, self._batch))


class AckIntake:
    """Gateway ACKs (``activation_ack`` CloudEvents) -> ``AckActivation`` for the world's actor.

    Duplicates are dropped here by ``(world_id, run_id, sequence, phase)`` before they cost a mailbox
    message; the run record (durable) is what finally ignores a repeat, so a bounded memory is enough. An
    ACK is remembered only once its world recorded it, so one lost to a failed write is taken again. Every
    ACK dropped here is counted and logged (``invalid``, ``duplicate``); the world notes the rest.
    """

    def __init__(self, send: Callable[[Request], None], remember: int = 100_000,
                 metrics: ActorMetrics | None = None) -> None:
        self._send = send
        self._remember = remember
        self._metrics = metrics or ActorMetrics()
        self._seen: OrderedDict[tuple[str, str, int, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def parse(self, raw: bytes | dict[str, Any]) -> AckActivation | None:
        """The ACK as a command, or ``None`` when it is malformed or was already recorded."""
        try:
            event = (activation_ack_decoder.decode(raw) if isinstance(raw, bytes)
                     else msgspec.convert(raw, ActivationAckEvent))
            ack = event.data
            command = msgspec.convert({"kind": "ack_activation", "world_id": ack.world_id, "run_id": ack.run_id,
                                       "sequence": ack.sequence, "phase": ack.phase}, AckActivation)
        except msgspec.DecodeError as exc:  # also every ValidationError
            self._metrics.ack_anomaly("invalid", error=str(exc))
            return None
        with self._lock:
            seen = _ack_key(command) in self._seen
        if seen:
            self._metrics.ack_anomaly("duplicate", world_id=command.world_id, run_id=command.run_id,
                                      sequence=command.sequence, phase=command.phase)
            return None
        return command

    def remember(self, ack: AckActivation) -> None:
        with self._lock:
            self._seen[_ack_key(ack)] = None
            if len(self._seen) > self._remember:
                self._seen.popitem(last=False)

    def receive(self, raw: bytes | dict[str, Any]) -> bool:
        """Fire and forget (the in-memory bus): tell the world and remember at once."""
        ack = self.parse(raw)
        if ack is None:
            return False
        self.remember(ack)
        self._send(Request(command=ack, reply=noop_reply))
        return True


def _ack_key(ack: AckActivation) -> tuple[str, str, int, str]:
    return (ack.world_id, ack.run_id, ack.sequence, ack.phase)
