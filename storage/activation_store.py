"""Activation projections: where other services read a world's activation set quickly.

Both stores keep one document per world, ``{counter, {strategy: {side: entry}}}``, and are only ever
written after SQL committed; SQL's audit log is the record they are rebuilt from. Writes come as a list
of operations (``write_many``) applied together: Redis gets them as one MULTI/EXEC, one round trip.
The Redis store is in ``storage.redis_stores``, imported only where a Redis URL is configured.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from messages.activation import ActivationEntry

Entries = dict[str, dict[str, ActivationEntry]]


@dataclass(frozen=True, slots=True)
class PutEntry:
    """One strategy side's entry set, with the world's new counter."""

    world_id: str
    counter: int
    strategy_id: str
    side: str
    entry: ActivationEntry


@dataclass(frozen=True, slots=True)
class ReplaceWorld:
    """The world's whole document rewritten (a removal, a repair)."""

    world_id: str
    counter: int
    entries: Mapping[str, Mapping[str, ActivationEntry]]


@dataclass(frozen=True, slots=True)
class DeleteWorld:
    world_id: str


ProjectionWrite = PutEntry | ReplaceWorld | DeleteWorld


class SingleWrites:
    """One write as a one-element ``write_many``, for every store."""

    def write_many(self, writes: Sequence[ProjectionWrite]) -> None:
        raise NotImplementedError

    def put_entry(self, world_id: str, counter: int, strategy_id: str, side: str, entry: ActivationEntry) -> None:
        self.write_many([PutEntry(world_id, counter, strategy_id, side, entry)])

    def replace(self, world_id: str, counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> None:
        self.write_many([ReplaceWorld(world_id, counter, entries)])

    def delete(self, world_id: str) -> None:
        self.write_many([DeleteWorld(world_id)])


class MemoryActivationStore(SingleWrites):
    """The dev profile's projection: a dict behind a lock, with the same semantics as Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worlds: dict[str, tuple[int, Entries]] = {}
        self._complete = False

    def write_many(self, writes: Sequence[ProjectionWrite]) -> None:
        """All of them under one lock, so a reader sees none or all (as with Redis' MULTI/EXEC)."""
        with self._lock:
            for write in writes:
                self._apply(write)

    def _apply(self, write: ProjectionWrite) -> None:
        if isinstance(write, PutEntry):
            _, entries = self._worlds.get(write.world_id, (0, {}))
            entries = {sid: dict(sides) for sid, sides in entries.items()}
            entries.setdefault(write.strategy_id, {})[write.side] = write.entry
            self._worlds[write.world_id] = (write.counter, entries)
        elif isinstance(write, ReplaceWorld):
            self._worlds[write.world_id] = (write.counter, {sid: dict(sides) for sid, sides in write.entries.items()})
        else:
            self._worlds.pop(write.world_id, None)

    def get(self, world_id: str) -> tuple[int, Entries] | None:
        with self._lock:
            return self._worlds.get(world_id)

    def flush_all(self) -> None:
        with self._lock:
            self._worlds.clear()
            self._complete = False

    def mark_complete(self) -> None:
        self._complete = True

    def is_marked_complete(self) -> bool:
        return self._complete

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None
