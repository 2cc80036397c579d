"""The latest Risk Hub snapshot per world in Redis (prod): ``<prefix>risk-hub:latest:<world>``, a hash of
``order`` (the snapshot's order key) and ``snapshot`` (its JSON, large parts by reference), expiring with
the snapshot. Written after each accept, only when newer than what it holds (one script, so two writers
cannot put an older one back). SQL stays the record: a hit is served only after SQL confirms that version
and hash (a deleted world's entry is never served), and losing Redis loses nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec
import redis

from storage.activation_store import bounded_redis

from messages.risk_hub import RiskSnapshot
from storage.sql_types import StorageUnavailable

_NEWER_ONLY = """
local current = redis.call('HGET', KEYS[1], 'order')
if current and current > ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'order', ARGV[1], 'snapshot', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class RedisLatestCache:
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
