"""The outbox relay publishes the rows each commit hands it, in commit order, and reads the outbox back from
SQL only to recover what it was not handed (rows a crash or an outage left unsent)."""

from __future__ import annotations

import threading

from tests.conftest import make_config, stop_harness


def _put(h, world_id: str, strategy_id: str) -> None:  # type: ignore[no-untyped-def]
    body = {"strategy_id": strategy_id, "side": "long", "active": True}
    assert h.client.put(f"/worlds/{world_id}/activation", json=body).status_code == 200


def _activations(h) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(e.key, e.event["data"]["strategy_id"]) for e in h.bus.of_type("activation_updated")]


def test_committed_events_are_published_without_reading_the_outbox_back(api, monkeypatch) -> None:
    for world_id in ("a", "b"):
        assert api.client.post("/worlds", json={"id": world_id}).status_code == 201
    api.system.relay_now()  # the start-up sweep is done: from here on the relay is only handed rows
    reads: list[int] = []
    real = api.runtime.store.pending_outbox
    monkeypatch.setattr(api.runtime.store, "pending_outbox", lambda *a: reads.append(1) or real(*a))
    all_seen = threading.Event()
    api.bus.subscribe(lambda _: len(_activations(api)) == 6 and all_seen.set())
    for n in range(3):
        _put(api, "a", f"s{n}")
        _put(api, "b", f"s{n}")
    assert all_seen.wait(10)
    assert _activations(api) == [(w, f"s{n}") for n in range(3) for w in ("a", "b")]
    assert reads == []


def test_rows_left_unsent_go_out_first_and_in_order_after_a_restart(harness_factory, tmp_path) -> None:
    first = harness_factory(make_config(tmp_path))
    assert first.client.post("/worlds", json={"id": "w1"}).status_code == 201
    first.system.relay_now()
    first.bus.available = False  # the broker is down until this daemon is gone: its rows stay unsent
    for n in range(3):
        _put(first, "w1", f"s{n}")
    first.system.relay_now()
    assert first.system.relay_failing() and first.system.outbox_pending() == 3
    stop_harness(first)
    restarted = harness_factory(make_config(tmp_path))
    all_seen = threading.Event()
    restarted.bus.subscribe(lambda _: len(_activations(restarted)) == 4 and all_seen.set())
    _put(restarted, "w1", "s3")  # the first commit after the start: the relay sweeps before it publishes
    assert all_seen.wait(10)
    assert _activations(restarted) == [("w1", f"s{n}") for n in range(4)]


def test_a_failed_publish_is_retried_from_sql_before_newer_rows(api) -> None:
    assert api.client.post("/worlds", json={"id": "w1"}).status_code == 201
    api.system.relay_now()
    api.bus.available = False
    _put(api, "w1", "s0")
    api.system.relay_now()
    assert api.system.relay_failing()
    api.bus.available = True
    all_seen = threading.Event()
    api.bus.subscribe(lambda _: len(_activations(api)) == 2 and all_seen.set())
    _put(api, "w1", "s1")  # handed over while s0 still waits in SQL: s0 must go first
    assert all_seen.wait(10)
    assert _activations(api) == [("w1", "s0"), ("w1", "s1")] and not api.system.relay_failing()
