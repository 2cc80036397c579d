"""Activation projections: where other services read a world's activation set quickly.

Both stores keep one document per world, ``{counter, {strategy: {side: entry}}}``, and are only ever
written after SQL committed; SQL's audit log is the record they are rebuilt from. Writes come as a list
of operations (``write_many``) applied together: Redis gets them as one MULTI/EXEC, one round trip.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from messages.activation import ActivationEntry

Entries = dict[str, dict[str, ActivationEntry]]
_VERSION_FIELD = "__version__"
_entry_decoder = msgspec.json.Decoder(ActivationEntry)
_encoder = msgspec.json.Encoder()
REDIS_TIMEOUT_S = 1.0


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


class MemoryActivationStore:
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

    def put_entry(self, world_id: str, counter: int, strategy_id: str, side: str, entry: ActivationEntry) -> None:
        self.write_many([PutEntry(world_id, counter, strategy_id, side, entry)])

    def replace(self, world_id: str, counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> None:
        self.write_many([ReplaceWorld(world_id, counter, entries)])

    def delete(self, world_id: str) -> None:
        self.write_many([DeleteWorld(world_id)])

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


def bounded_redis(url: str) -> redis.Redis:
    """A client with a bounded wait and no retries: a stalled or absent Redis costs a call at most ~1 s and
    makes the projection degraded (repaired from SQL once Redis answers again), instead of retries piling
    up behind an actor's mailbox."""
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False)


class RedisActivationStore:
    """Redis hash ``<prefix>world:<id>:activation``: one field per ``strategy|side`` plus the counter.

    Every ``write_many`` is one MULTI/EXEC (one round trip), so a reader never sees an entry without its
    counter, nor a part of what was written together.
    """

    def __init__(self, url: str, prefix: str = "") -> None:
        self._client = bounded_redis(url)
        self._prefix = prefix

    def key(self, world_id: str) -> str:
        return f"{self._prefix}world:{world_id}:activation"

    def mark_complete(self) -> None:
        """Set once the projection equals SQL; its disappearance (FLUSHALL, a fresh Redis) means the
        projection must be rebuilt."""
        self._client.set(f"{self._prefix}projection:complete", b"1")

    def is_marked_complete(self) -> bool:
        return bool(self._client.exists(f"{self._prefix}projection:complete"))

    def write_many(self, writes: Sequence[ProjectionWrite]) -> None:
        pipe = self._client.pipeline(transaction=True)
        for write in writes:
            key = self.key(write.world_id)
            if isinstance(write, PutEntry):
                pipe.hset(key, mapping={f"{write.strategy_id}|{write.side}": _encoder.encode(write.entry),
                                        _VERSION_FIELD: write.counter})
            elif isinstance(write, ReplaceWorld):
                pipe.delete(key)
                pipe.hset(key, mapping=_document(write.counter, write.entries))
            else:
                pipe.delete(key)
        pipe.execute()

    def put_entry(self, world_id: str, counter: int, strategy_id: str, side: str, entry: ActivationEntry) -> None:
        self.write_many([PutEntry(world_id, counter, strategy_id, side, entry)])

    def replace(self, world_id: str, counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> None:
        self.write_many([ReplaceWorld(world_id, counter, entries)])

    def delete(self, world_id: str) -> None:
        self.write_many([DeleteWorld(world_id)])

    def get(self, world_id: str) -> tuple[int, Entries] | None:
        raw = self._client.hgetall(self.key(world_id))
        if not raw:
            return None
        counter = int(raw.pop(_VERSION_FIELD.encode(), 0))
        entries: Entries = {}
        for field, value in raw.items():
            sid, _, side = field.decode().rpartition("|")
            entries.setdefault(sid, {})[side] = _entry_decoder.decode(value)
        return counter, dict(sorted(entries.items()))

    def flush_all(self) -> None:
        """Drop every projection key under this store's prefix (used by rebuild and tests)."""
        for key in self._client.scan_iter(match=f"{self._prefix}world:*:activation", count=500):
            self._client.delete(key)

    def ping(self) -> None:
        self._client.ping()

    def close(self) -> None:
        self._client.close()


def _document(counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> dict[str, bytes | int]:
    mapping: dict[str, bytes | int] = {_VERSION_FIELD: counter}
    for sid, sides in entries.items():
        for side, entry in sides.items():
            mapping[f"{sid}|{side}"] = _encoder.encode(entry)
    return mapping
