"""Idle worlds give their thread back and come back with identical state; residency is capped."""

from __future__ import annotations

import threading

from tests.conftest import Harness, make_config


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _world_threads() -> int:
    """Live world-actor threads; a stopped actor's thread is joined first (it may still be returning)."""
    threads = [t for t in threading.enumerate() if t.name.startswith("WorldActor")]
    for thread in threads:
        thread.join(timeout=0.05)
    return sum(1 for t in threads if t.is_alive())


def _harness(harness_factory, tmp_path, clock: FakeMonotonic, **actors) -> Harness:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path)
    config.worldservice.actors.idle_timeout_s = 60
    for key, value in actors.items():
        setattr(config.worldservice.actors, key, value)
    return harness_factory(config, monotonic=clock)


def test_idle_world_is_passivated_and_restored_identically(harness_factory, tmp_path) -> None:
    clock = FakeMonotonic()
    h = _harness(harness_factory, tmp_path, clock)
    baseline = _world_threads()
    c = h.client
    c.post("/worlds", json={"id": "idle", "labels": ["x"]})
    c.post("/worlds/idle/bindings", json={"strategies": ["s1", "s2"]})
    c.put("/worlds/idle/activation", json={"strategy_id": "s1", "side": "long", "active": True, "weight": 0.4})
    c.post("/worlds/idle/policies", json={"preset": "conservative"})
    before = {p: c.get(p).json() for p in ("/worlds/idle/describe", "/worlds/idle/bindings",
                                            "/worlds/idle/activation/state_hash")}
    assert h.system.resident_worlds() == ["idle"] and _world_threads() == baseline + 1
    clock.now += 30
    h.system.sweep()
    assert h.system.resident_worlds() == ["idle"]  # not idle long enough yet
    clock.now += 31
    h.system.sweep()
    assert h.system.resident_worlds() == [] and _world_threads() == baseline
    after = {p: c.get(p).json() for p in before}
    assert after == before
    put = c.put("/worlds/idle/activation", json={"strategy_id": "s1", "side": "long", "active": False})
    assert put.json()["etag"] == "act:idle:s1:long:2"


def test_resident_worlds_are_capped_least_recently_used_first(harness_factory, tmp_path) -> None:
    clock = FakeMonotonic()
    h = _harness(harness_factory, tmp_path, clock, max_resident_worlds=3)
    for i in range(5):
        clock.now += 1
        assert h.client.post("/worlds", json={"id": f"w{i}"}).status_code == 201
    assert h.system.resident_worlds() == ["w2", "w3", "w4"]
    clock.now += 1
    assert h.client.get("/worlds/w0").json()["id"] == "w0"
    assert h.system.resident_worlds() == ["w0", "w3", "w4"]


def test_unknown_worlds_do_not_stay_resident(harness_factory, tmp_path) -> None:
    clock = FakeMonotonic()
    h = _harness(harness_factory, tmp_path, clock)
    baseline = _world_threads()
    for i in range(20):
        assert h.client.get(f"/worlds/ghost-{i}").status_code == 404
    assert h.system.resident_worlds() == [] and _world_threads() == baseline
    assert h.client.post("/worlds", json={"id": "real"}).status_code == 201
    assert h.client.delete("/worlds/real").status_code == 204
    assert h.system.resident_worlds() == []
    assert h.client.post("/worlds", json={"id": "real"}).status_code == 201
    assert h.system.resident_worlds() == ["real"]
