"""Activation projections: where other services read a world's activation set quickly.

Both stores keep one document per world, ``{counter, {strategy: {side: entry}}}``, and are only ever
written after SQL committed; SQL's audit log is the record they are rebuilt from.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import msgspec
import redis

from messages.activation import ActivationEntry

Entries = dict[str, dict[str, ActivationEntry]]
_VERSION_FIELD = "__version__"
_entry_decoder = msgspec.json.Decoder(ActivationEntry)
_encoder = msgspec.json.Encoder()


class MemoryActivationStore:
    """The dev profile's projection: a dict behind a lock, with the same semantics as Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worlds: dict[str, tuple[int, Entries]] = {}
        self._complete = False

    def put_entry(self, world_id: str, counter: int, strategy_id: str, side: str, entry: ActivationEntry) -> None:
        with self._lock:
            _, entries = self._worlds.get(world_id, (0, {}))
            entries = {sid: dict(sides) for sid, sides in entries.items()}
            entries.setdefault(strategy_id, {})[side] = entry
            self._worlds[world_id] = (counter, entries)

    def replace(self, world_id: str, counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> None:
        with self._lock:
            self._worlds[world_id] = (counter, {sid: dict(sides) for sid, sides in entries.items()})

    def delete(self, world_id: str) -> None:
        with self._lock:
            self._worlds.pop(world_id, None)

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


class RedisActivationStore:
    """Redis hash ``<prefix>world:<id>:activation``: one field per ``strategy|side`` plus the counter.

    Every write is one MULTI/EXEC, so a reader never sees an entry without its counter.
    """

    def __init__(self, url: str, prefix: str = "") -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._prefix = prefix

    def key(self, world_id: str) -> str:
        return f"{self._prefix}world:{world_id}:activation"

    def mark_complete(self) -> None:
        """Set once the projection equals SQL; its disappearance (FLUSHALL, a fresh Redis) means the
        projection must be rebuilt."""
        self._client.set(f"{self._prefix}projection:complete", b"1")

    def is_marked_complete(self) -> bool:
        return bool(self._client.exists(f"{self._prefix}projection:complete"))

    def put_entry(self, world_id: str, counter: int, strategy_id: str, side: str, entry: ActivationEntry) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self.key(world_id), mapping={f"{strategy_id}|{side}": _encoder.encode(entry),
                                                _VERSION_FIELD: counter})
        pipe.execute()

    def replace(self, world_id: str, counter: int, entries: Mapping[str, Mapping[str, ActivationEntry]]) -> None:
        mapping: dict[str, bytes | int] = {_VERSION_FIELD: counter}
        for sid, sides in entries.items():
            for side, entry in sides.items():
                mapping[f"{sid}|{side}"] = _encoder.encode(entry)
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self.key(world_id))
        pipe.hset(self.key(world_id), mapping=mapping)
        pipe.execute()

    def delete(self, world_id: str) -> None:
        self._client.delete(self.key(world_id))

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
