"""Bus: relays committed outbox rows to the ControlBus publisher in commit order, then marks them sent.

Delivery is at-least-once (a crash between publish and mark re-sends); every event carries an
``idempotency_key`` and a deterministic id so consumers drop the duplicate.
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
    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Relay:
    """Something was committed: publish what is pending."""


class OutboxRelay(pykka.ThreadingActor):
    def __init__(self, store: SqlStore, publisher: Publisher, clock: Callable[[], datetime],
                 mark_sent: Callable[[list[int], str], None], batch: int = 500) -> None:
        super().__init__()
        self._store = store
        self._publisher = publisher
        self._clock = clock
        self._mark_sent = mark_sent
        self._batch = batch
        self._published_up_to = 0  # marks travel through the writer, so never re-read what was sent
        self.relayed = 0

    def on_receive(self, message: object) -> None:
        # Commits arrive in bursts; one pass after the burst covers them all.
        if isinstance(message, Relay) and self.actor_inbox.empty():
            self._relay_pending()

    def _relay_pending(self) -> None:
        while rows := self._store.pending_outbox(self._published_up_to, self._batch):
            sent = []
            try:
                for row_id, world_id, topic, payload in rows:
                    self._publisher.publish(topic, world_id, payload)
                    sent.append(row_id)
                    self._published_up_to = row_id
            finally:
                if sent:
                    self._mark_sent(sent, iso_z(self._clock()))
                    self.relayed += len(sent)
            if len(rows) < self._batch:
                return

    def pending_count(self) -> int:
        """Rows committed but not yet published by this relay."""
        return len(self._store.pending_outbox(self._published_up_to, self._batch))
