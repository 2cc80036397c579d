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


class InMemoryBus:
    def __init__(self, capacity: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self.events: list[PublishedEvent] = []
        self._subscribers: list[Callable[[PublishedEvent], None]] = []

    def publish(self, topic: str, key: str, event: dict[str, Any]) -> None:
        published = PublishedEvent(topic, key, event)
        with self._lock:
            self.events.append(published)
            del self.events[: max(0, len(self.events) - self._capacity)]
            subscribers = list(self._subscribers)
        for callback in subscribers:
            callback(published)

    def subscribe(self, callback: Callable[[PublishedEvent], None]) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def of_type(self, event_type: str) -> list[PublishedEvent]:
        with self._lock:
            return [e for e in self.events if e.event.get("type") == event_type]
