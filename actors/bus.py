"""Bus: relays committed outbox rows to the ControlBus in commit order (so in order per world), marks them
sent. (Gateway ACKs come in through ``actors.ack_intake``.)

The writer hands over the rows each commit wrote (``Committed``), so the steady state reads nothing back
from SQL. The relay reads the pending rows from SQL (a sweep) only when what it was handed may not be
all: at start (rows a crash left unsent), after a failed publish or a commit of unknown outcome, and when
the daemon's timer or a drain asks (``Relay``).

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

from actors.mailbox import next_is
from domain.timefmt import iso_z
from storage.sql import OutboxRow, SqlStore

log = structlog.get_logger("worldservice.bus")


class Publisher(Protocol):
    def publish_many(self, messages: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Deliver (topic, key, event) in order; raise if any was not acknowledged by the broker."""


@dataclass(frozen=True, slots=True)
class Relay:
    """Publish everything pending in SQL (a sweep): the timer's retry, recovery, a drain."""


@dataclass(frozen=True, slots=True)
class Committed:
    """The outbox rows one commit wrote, in id order; ``None`` when the commit's outcome is unknown."""

    rows: list[OutboxRow] | None


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
        self._handed: list[OutboxRow] = []  # committed, handed over, not yet published
        self._sweep_wanted = True  # at start: rows a crash left unsent go out before any new one
        self.relayed = 0
        self.failing = False

    def on_receive(self, message: object) -> None:
        if isinstance(message, Committed):
            self._take(message.rows)
        elif isinstance(message, Relay):
            self._sweep_wanted = True
        else:
            return
        # Commits arrive in bursts; one pass after the burst covers them all (anything else next, a proxy
        # read of ``failing`` included, would not come back here: ``actors.mailbox``).
        if not next_is(self, (Committed, Relay)) or len(self._handed) >= self._batch:
            self._relay()

    def _take(self, rows: list[OutboxRow] | None) -> None:
        if rows is None:
            self._sweep_wanted = True  # whatever that commit wrote is read back from SQL
        else:  # a sweep may have published them already; ids grow in commit order (one writer)
            self._handed += [row for row in rows if row[0] > self._published_up_to]

    def _relay(self) -> None:
        try:
            if self._sweep_wanted:
                self._sweep()
            elif self._handed:
                handed, self._handed = self._handed, []
                self._publish(handed)
            self.failing = False
        except Exception as exc:  # noqa: BLE001 - an escaped error would stop the actor: retry later
            if not self.failing:
                log.error("controlbus_publish_failed", error=repr(exc))
            self.failing = True
            self._sweep_wanted = True  # the rows wait in SQL: the next pass reads them back, in order
            self._handed = []

    def _sweep(self) -> None:
        """Everything committed and unpublished, from SQL (it includes whatever was handed over)."""
        self._handed = []
        while rows := self._store.pending_outbox(self._published_up_to, self._batch):
            self._publish(rows)
            if len(rows) < self._batch:
                break
        self._sweep_wanted = False

    def _publish(self, rows: list[OutboxRow]) -> None:
        self._publisher.publish_many([(self._topics.get(topic, topic), world_id, payload)
                                      for _, world_id, topic, payload in rows])
        self._published_up_to = rows[-1][0]
        self._mark_sent([row[0] for row in rows], iso_z(self._clock()))
        self.relayed += len(rows)

    def pending_count(self) -> int:
        """Rows committed but not yet published by this relay."""
        return len(self._store.pending_outbox(self._published_up_to, self._batch))
