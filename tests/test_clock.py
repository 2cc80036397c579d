"""The daemon's default clock: wall time anchored once, advanced by monotonic time, so an NTP step neither
fires nor delays an apply timer. Fake sources drive it; nothing sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from actors.clock import MonotonicClock
from tests.conftest import Harness, make_config
from tests.test_apply import FakeGateway, _apply_in_background, _world

START = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


class SteppingWall:
    """A wall clock an operator (or NTP) can step."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_wall_steps_after_the_start_do_not_move_the_clock() -> None:
    wall, mono = SteppingWall(), FakeMonotonic()
    clock = MonotonicClock(wall=wall, monotonic=mono)
    assert clock() == START
    wall.now -= timedelta(hours=1)  # NTP steps the wall clock back
    mono.t += 3.0
    assert clock() == START + timedelta(seconds=3)
    wall.now += timedelta(hours=5)  # and then far forwards
    mono.t += 0.5
    assert clock() == START + timedelta(seconds=3.5)


def test_the_clock_never_goes_backwards_even_from_a_misbehaving_source() -> None:
    mono = FakeMonotonic()
    clock = MonotonicClock(wall=SteppingWall(), monotonic=mono)
    mono.t += 10.0
    ahead = clock()
    mono.t -= 7.0
    assert clock() == ahead
    mono.t += 8.0
    assert clock() == START + timedelta(seconds=11)


def _relayed(h: Harness, rounds: int = 50) -> int:
    """Events the relay published and handed to the writer as sent (a mark stamped with the clock). A relay
    already busy makes ``relay_now`` return early, so this asks again, a round trip each, never a sleep."""
    for _ in range(rounds):
        h.system.relay_now()
        if relayed := h.system.relay.proxy().relayed.get(timeout=10):
            return relayed
    return 0


def test_the_daemon_runs_on_the_monotonic_clock_unless_a_test_drives_it(api) -> None:
    assert isinstance(api.system.clock, MonotonicClock)
    before = datetime.now(timezone.utc)
    assert abs((api.system.clock() - before).total_seconds()) < 5  # anchored on the real wall clock
    # Every actor that stamps time runs on it: the world, the outbox relay, the allocation coordinator.
    _world(api)
    assert _relayed(api) and api.bus.of_type("activation_updated")
    alloc = api.client.post("/allocations", json={"run_id": "a1", "total_equity": 1000.0,
                                                  "world_allocations": {"w1": 1.0}, "positions": []})
    assert alloc.status_code == 200, alloc.text


def test_a_wall_clock_step_neither_fires_nor_delays_the_ack_gap_timeout(harness_factory, tmp_path: Path) -> None:
    wall, mono = SteppingWall(), FakeMonotonic()
    config = make_config(tmp_path)
    config.worldservice.apply.await_acks = True
    config.worldservice.apply.timeout_policy = "rollback"
    h = harness_factory(config, clock=MonotonicClock(wall=wall, monotonic=mono))
    gateway = FakeGateway(h, acking=False)
    _world(h)
    pending = _apply_in_background(h, {"run_id": "r1", "plan": {"activate": ["s2"]}})
    assert gateway.freeze_seen.wait(10)
    h.client.get("/worlds/w1/apply/r1")  # the actor has registered the open run for timer ticks
    wall.now += timedelta(hours=1)  # a wall clock read would see the 3 s gap timeout long past
    h.system.tick()
    assert h.client.get("/worlds/w1/apply/r1").json()["phase"] == "freezing"
    wall.now -= timedelta(hours=2)  # a wall clock read would wait an hour more
    mono.t += 3.001
    h.system.tick()
    failed = pending.result(timeout=10)
    assert failed.status_code == 500 and "apply failed" in failed.json()["detail"]
    assert h.client.get("/worlds/w1/apply/r1").json()["phase"] == "rolled_back"
