"""Bus: relays committed outbox rows to the ControlBus in commit order (so in order per world), marks them
sent. (Gateway ACKs come in through ``actors.ack_intake``.)

Delivery is at-least-once (a crash between publish and mark re-sends); every event carries an
``idempotency_key`` and a deterministic id so consumers drop the duplicate. While the broker is down the
rows wait in SQL; the daemon's timer retries, and commands keep succeeding meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import pykka
import structlog

from domain.timefmt import iso_z
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
