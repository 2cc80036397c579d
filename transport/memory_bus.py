"""The dev profile's ControlBus: in-process, ordered per key, observable by tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PublishedEvent:
    topic: str
    key: str
    event: dict[str, Any]


class BusDown(ConnectionError):
    """The in-memory bus was switched off (a test's broker outage)."""


class InMemoryBus:
    """Same contract as the Kafka publisher: ordered delivery, and a publish either lands or raises."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self.events: list[PublishedEvent] = []
        self._subscribers: list[tuple[str | None, Callable[[PublishedEvent], None]]] = []
        self.available = True

    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
        self.publish_many([(topic, key, event)])

    def publish_many(self, messages: list[tuple[str, str, dict[str, Any]]]) -> None:
        if not self.available:
            raise BusDown("in-memory ControlBus is down")
        published = [PublishedEvent(topic, key, event) for topic, key, event in messages]
        with self._lock:
            self.events.extend(published)
            del self.events[: max(0, len(self.events) - self._capacity)]
            subscribers = list(self._subscribers)
        for item in published:
            for topic, callback in subscribers:
                if topic is None or topic == item.topic:
                    callback(item)

    def subscribe(self, callback: Callable[[PublishedEvent], None], topic: str | None = None) -> None:
        with self._lock:
            self._subscribers.append((topic, callback))

    def of_type(self, event_type: str) -> list[PublishedEvent]:
        with self._lock:
            return [e for e in self.events if e.event.get("type") == event_type]
