"""Redis is a projection: flushed while the daemon runs, it is noticed and rebuilt from SQL."""

from __future__ import annotations

import uuid

import pytest
import redis

from domain.activation import state_hash
from tests import services
from tests.conftest import Harness, make_config

# A database of its own: FLUSHDB there is this test's FLUSHALL without touching anyone else's keys.
FLUSH_DB_URL = services.REDIS_URL.rsplit("/", 1)[0] + "/13"


@pytest.fixture
def redis_db13() -> redis.Redis:
    try:
        client = redis.Redis.from_url(FLUSH_DB_URL, socket_connect_timeout=3)
        client.ping()
    except Exception as exc:  # noqa: BLE001
        services.unavailable("Redis", exc)
    return client


def _sql_hash(h: Harness, world_id: str) -> str:
    state = h.runtime.store.load_world(world_id)
    return state_hash(state.activation_counter, state.activation)


def _seed(h: Harness, worlds: list[str]) -> None:
    for world_id in worlds:
        h.client.post("/worlds", json={"id": world_id})
        for n in range(3):
            body = {"strategy_id": f"s{n}", "side": "long", "active": True, "weight": 0.1 * n}
            assert h.client.put(f"/worlds/{world_id}/activation", json=body).status_code == 200


def test_flushed_projection_is_rebuilt_to_the_sql_state_hash(harness_factory, tmp_path, redis_db13) -> None:  # type: ignore[no-untyped-def]
    prefix = f"wsflush:{uuid.uuid4().hex[:8]}:"
    h = harness_factory(make_config(tmp_path, redis=FLUSH_DB_URL, redis_prefix=prefix))
    worlds = [f"f{i}" for i in range(4)]
    _seed(h, worlds)
    h.system.verify_projection()  # what startup does: the projection is now marked complete
    assert h.system.guard_projection() == []  # nothing to do while Redis holds it
    redis_db13.flushdb()
    late = {"strategy_id": "s9", "side": "short", "active": True}
    assert h.client.put("/worlds/f0/activation", json=late).status_code == 200  # written after the flush
    assert sorted(h.system.guard_projection()) == worlds
    projection = h.system.projection
    for world_id in worlds:
        assert projection.projection_hash(world_id).get() == _sql_hash(h, world_id), world_id
        hash_served = h.client.get(f"/worlds/{world_id}/activation/state_hash").json()["state_hash"]
        assert hash_served == _sql_hash(h, world_id)
    assert h.system.guard_projection() == []
    redis_db13.flushdb()
