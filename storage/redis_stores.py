"""Every store that lives in Redis, in the one module that imports the redis client (about 0.1 s of
start-up, with what it pulls in): the activation projection, the Risk Hub's blob store and its latest
snapshot cache. Only a daemon with a Redis URL configured imports it; the embedded default never does.

Each client waits a bounded time and never retries (``bounded_redis``): a stalled or absent Redis costs a
call about a second at most and surfaces as an error the caller turns into a degraded state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from messages.activation import ActivationEntry
from messages.risk_hub import RiskSnapshot
from storage.activation_store import Entries, ProjectionWrite, PutEntry, ReplaceWorld, SingleWrites
from storage.sql_types import StorageUnavailable

REDIS_TIMEOUT_S = 1.0
_VERSION_FIELD = "__version__"
_entry_decoder = msgspec.json.Decoder(ActivationEntry)
_encoder = msgspec.json.Encoder()


def bounded_redis(url: str) -> redis.Redis:
    """A client with a bounded wait and no retries: a stalled or absent Redis costs a call at most ~1 s and
    makes the projection degraded (repaired from SQL once Redis answers again), instead of retries piling
    up behind an actor's mailbox."""
    return redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False)


class RedisActivationStore(SingleWrites):
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



class RedisBlobStore:
    """Risk Hub blobs at ``<prefix>risk-blobs:<ref>`` (see ``storage.risk_blobs``). ``ttl_s``: blobs outlive every snapshot that names them (the hub's maximum TTL by default)."""

    def __init__(self, url: str, prefix: str = "", ttl_s: int = 86_400) -> None:
        self._client = bounded_redis(url)
        self._prefix = f"{prefix}risk-blobs:"
        self._ttl_s = ttl_s

    def put_many(self, blobs: dict[str, Any]) -> None:
        if not blobs:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for ref, payload in blobs.items():
                    pipe.set(self._prefix + ref, msgspec.json.encode(payload), ex=self._ttl_s)
                pipe.execute()
        except redis.RedisError as exc:
            raise StorageUnavailable(f"redis: {exc}") from exc

    def get(self, ref: str) -> Any | None:
        try:
            raw = self._client.get(self._prefix + ref)
        except redis.RedisError as exc:
            raise StorageUnavailable(f"redis: {exc}") from exc
        return None if raw is None else msgspec.json.decode(raw)

    def close(self) -> None:
        self._client.close()



_NEWER_ONLY = """
local current = redis.call('HGET', KEYS[1], 'order')
if current and current > ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'order', ARGV[1], 'snapshot', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisLatestCache:
    """The latest Risk Hub snapshot per world: ``<prefix>risk-hub:latest:<world>``, a hash of ``order`` (the
    snapshot's order key) and ``snapshot`` (its JSON, large parts by reference), expiring with the
    snapshot. Written after each accept, only when newer than what it holds (one script, so two writers
    cannot put an older one back). SQL stays the record: a hit is served only after SQL confirms that
    version and hash (a deleted world's entry is never served), and losing Redis loses nothing."""

    def __init__(self, url: str, prefix: str = "") -> None:
        self._client = bounded_redis(url)
        self._prefix = f"{prefix}risk-hub:latest:"
        self._put: Any = self._client.register_script(_NEWER_ONLY)

    def put(self, snapshot: RiskSnapshot, order: str, ttl_s: int) -> bool:
        try:
            return bool(self._put(keys=[self._prefix + snapshot.world_id],
                                  args=[order, msgspec.json.encode(snapshot), max(1, ttl_s)]))
        except redis.RedisError as exc:
            raise StorageUnavailable(f"redis: {exc}") from exc

    def get(self, world_id: str) -> RiskSnapshot | None:
        try:
            raw = self._client.hget(self._prefix + world_id, "snapshot")
        except redis.RedisError as exc:
            raise StorageUnavailable(f"redis: {exc}") from exc
        return None if raw is None else msgspec.json.decode(raw, type=RiskSnapshot)

    def close(self) -> None:
        self._client.close()
