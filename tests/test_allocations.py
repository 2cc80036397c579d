"""``POST /allocations`` as a cross-world command: idempotency and 409 rules, the executor's 503/502/success
paths, and concurrent runs over overlapping worlds (no deadlock, serial-equivalent results)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import Harness, make_config


class FakeExecutor:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def execute(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(snapshot)
        if self.fail:
            raise RuntimeError("broker refused")
        return {"orders": len(snapshot["positions"])}


def _body(run_id: str, **overrides: Any) -> dict[str, Any]:
    body = {"run_id": run_id, "total_equity": 1000, "world_allocations": {"w1": 0.2, "w2": 0.25},
            "positions": [{"world_id": "w1", "strategy_id": "s1", "symbol": "BTC", "qty": 1.0, "mark": 60000,
                           "venue": "x"},
                          {"world_id": "w2", "strategy_id": "s9", "symbol": "BTC", "qty": -0.5, "mark": 60000,
                           "venue": "x"}],
            "lot_size_by_symbol": {"BTC": 0.001}}
    return {**body, **overrides}


@pytest.fixture
def seeded(harness_factory, tmp_path):  # type: ignore[no-untyped-def]
    def factory(executor: FakeExecutor | None = None) -> Harness:
        h = harness_factory(make_config(tmp_path), executor)
        first = h.client.post("/allocations", json=_body("seed", world_allocations={"w1": 0.3, "w2": 0.2}))
        assert first.status_code == 200, first.text
        return h
    return factory


def test_allocation_plans_against_stored_allocations_and_is_idempotent(seeded) -> None:  # type: ignore[no-untyped-def]
    h = seeded()
    r = h.client.post("/allocations", json=_body("r1"))
    assert r.status_code == 200
    body = r.json()
    assert body["per_world"]["w1"]["deltas"] == [{"symbol": "BTC", "delta_qty": -0.333, "venue": "x"}]
    assert body["global_deltas"] == [{"symbol": "BTC", "delta_qty": -0.458, "venue": "x"}]
    assert body["etag"].startswith("blake3:") and body["executed"] is False and body["schema_version"] == 1
    again = h.client.post("/allocations", json=_body("r1"))
    assert again.status_code == 200 and again.json() == body
    other = h.client.post("/allocations", json=_body("r1", total_equity=2000))
    assert other.status_code == 409 and other.json()["detail"] == "run_id already used with a different payload"
    stale = h.client.post("/allocations", json=_body("r1", etag="blake3:" + "0" * 64))
    assert stale.status_code == 409
    snaps = h.client.get("/allocations").json()["allocations"]
    assert {w: s["allocation"] for w, s in snaps.items()} == {"w1": 0.2, "w2": 0.25}
    assert snaps["w1"]["run_id"] == "r1" and snaps["w1"]["ttl"] == "300s" and snaps["w1"]["stale"] is False
    assert h.client.get("/allocations", params={"world_id": "nope"}).status_code == 404
    metrics = h.client.get("/metrics").text
    assert "world_allocation_snapshot_total 2.0" in metrics and "world_allocation_snapshot_stale_ratio 0.0" in metrics
    h.system.relay_now()
    planned = [e for e in h.bus.of_type("rebalancing_planned") if e.event["data"]["version"] == 1]
    assert {e.key for e in planned} == {"w1", "w2"}


REFERENCE_UPSERT_KEYS = ["schema_version", "per_world", "global_deltas", "overlay_deltas", "alpha_metrics",
                         "rebalance_intent", "run_id", "etag", "executed", "execution_response"]


def test_allocation_answer_encodes_its_unset_fields_as_null(seeded) -> None:  # type: ignore[no-untyped-def]
    h = seeded()
    unrouted = [{**p, "venue": None} for p in _body("r1")["positions"]]
    first = h.client.post("/allocations", json=_body("r1", positions=unrouted)).json()
    replay = h.client.post("/allocations", json=_body("r1", positions=unrouted)).json()
    for body in (first, replay):
        assert list(body) == REFERENCE_UPSERT_KEYS  # the reference's keys, in its order
        assert [body[k] for k in ("overlay_deltas", "alpha_metrics", "rebalance_intent")] == [None, None, None]
        assert body["global_deltas"] == [{"symbol": "BTC", "delta_qty": -0.458, "venue": None}]  # not omitted
        assert body["per_world"]["w1"]["deltas"] == [{"symbol": "BTC", "delta_qty": -0.333, "venue": None}]


def test_bad_requests_are_refused_before_anything_is_stored(seeded) -> None:  # type: ignore[no-untyped-def]
    h = seeded()
    empty = h.client.post("/allocations", json=_body("r2", world_allocations={}))
    assert empty.status_code == 422 and empty.json()["detail"] == "world_allocations cannot be empty"
    ratio = h.client.post("/allocations", json=_body("r2", world_allocations={"w1": 1.5}))
    assert ratio.status_code == 422 and "between 0 and 1" in ratio.json()["detail"]
    assert h.client.post("/allocations", json=_body("r2", mode="hybrid")).status_code == 501
    assert h.client.get("/allocations", params={"world_id": "w1"}).json()["allocations"]["w1"]["run_id"] == "seed"


def test_execute_without_executor_is_503_and_stores_nothing(seeded) -> None:  # type: ignore[no-untyped-def]
    h = seeded()
    r = h.client.post("/allocations", json=_body("r3", execute=True))
    assert r.status_code == 503 and r.json()["detail"] == "Rebalance executor not configured"
    assert h.client.get("/allocations", params={"world_id": "w1"}).json()["allocations"]["w1"]["run_id"] == "seed"
    assert h.client.post("/allocations", json=_body("r3")).status_code == 200  # the run id is still free


def test_executor_failure_is_502_and_a_repeat_executes_once(seeded) -> None:  # type: ignore[no-untyped-def]
    executor = FakeExecutor(fail=True)
    h = seeded(executor)
    failed = h.client.post("/allocations", json=_body("r4", execute=True))
    assert failed.status_code == 502 and failed.json()["detail"] == "Rebalance execution failed"
    assert h.client.get("/allocations", params={"world_id": "w1"}).json()["allocations"]["w1"]["run_id"] == "r4"
    executor.fail = False
    done = h.client.post("/allocations", json=_body("r4", execute=True))
    assert done.status_code == 200 and done.json()["executed"] is True and done.json()["execution_response"]
    again = h.client.post("/allocations", json=_body("r4", execute=True))
    assert again.json()["executed"] is True and len(executor.calls) == 2  # one failure, one success, no more


def test_concurrent_overlapping_allocations_finish_and_serialize(seeded) -> None:  # type: ignore[no-untyped-def]
    h = seeded()
    worlds = ["w1", "w2", "w3"]
    bodies = [_body(f"c{n}", world_allocations={w: round(0.01 * (n + 1), 2) for w in worlds[n % 3:] + worlds[:1]})
              for n in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda b: h.client.post("/allocations", json=b), bodies))
    assert all(r.status_code == 200 for r in results), [r.text for r in results if r.status_code != 200]
    snaps = h.client.get("/allocations").json()["allocations"]
    for world_id, snap in snaps.items():  # each world ends with the value of the run that last wrote it
        writer = next(b for b in bodies if b["run_id"] == snap["run_id"])
        assert writer["world_allocations"][world_id] == snap["allocation"]
    audit = h.client.get("/worlds/w1/audit", params={"limit": 1000}).json()
    upserts = [a for a in audit if a["event"] == "world_allocation_upserted"]
    assert len(upserts) == 1 + sum(1 for b in bodies if "w1" in b["world_allocations"])
