"""The Risk Signal Hub over HTTP (reference §1.13) on SQLite and PostgreSQL, with the in-memory and the Redis
profile (blobs in SQL or Redis): pushes, the refusals, dedupe and version conflicts, reads with ``expand``,
the ``risk_snapshot_updated`` event, and the live-promotion gate reading the world's newest snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis

from config import load_config
from tests.conftest import FakeClock, Harness

HUB = "/risk-hub/worlds/w1/snapshots"
WHO = {"X-Actor": "gateway", "X-Stage": "paper"}
NOW = "2026-03-02T09:00:00Z"


def _hub_config(tmp_path: Path, dsn: str, hub: dict[str, Any] | None = None, **server: Any) -> Any:
    """The consumer off: its work is asynchronous (``tests/test_risk_events.py`` and ``test_risk_kafka.py``
    drive it); here only the HTTP path counts."""
    ws = {"data_dir": str(tmp_path), "server": {"dsn": dsn, **server}, "actors": {"sweep_interval_s": 3600},
          "risk_hub": {"consumer_enabled": False, **(hub or {})}}
    return load_config(environ={}, overrides={"worldservice": ws})


@pytest.fixture
def hub(harness_factory, tmp_path: Path, sql_dsn: str, projection: dict[str, str], clock: FakeClock) -> Harness:
    h = harness_factory(_hub_config(tmp_path, sql_dsn, **projection), clock=clock)
    assert h.client.post("/worlds", json={"id": "w1"}).status_code == 201
    return h


def _snapshot(version: str = "v1", **extra: Any) -> dict[str, Any]:
    return {"as_of": NOW, "version": version, "weights": {"s1": 0.6, "s2": 0.4}, **extra}


def _push(h: Harness, body: dict[str, Any], headers: dict[str, str] | None = None, world: str = "w1") -> Any:
    return h.client.post(f"/risk-hub/worlds/{world}/snapshots", json=body, headers=WHO if headers is None else headers)


def test_a_pushed_snapshot_is_stored_announced_and_read_back(hub: Harness) -> None:
    r = _push(hub, _snapshot())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ttl_sec"] == 900 and body["hash"].startswith("sha256:") and body["created_at"] == NOW
    assert body["provenance"] == {"actor": "gateway", "stage": "paper"} and body["world_id"] == "w1"
    assert hub.client.get(f"{HUB}/lookup", params={"version": "v1"}).json() == body
    assert hub.client.get(f"{HUB}/latest").json() == body
    assert hub.client.get(HUB).json() == {"snapshots": [body]}
    hub.system.relay_now()
    [event] = hub.bus.of_type("risk_snapshot_updated")
    assert event.topic == "risk_snapshot" and event.key == "w1"
    data = event.event["data"]
    assert data["version"] == "v1" and data["hash"] == body["hash"] and data["event_version"] == 1
    assert data["idempotency_key"] == f"risk_snapshot_updated:w1:{body['hash']}:1"
    assert event.event["correlation_id"]


def test_the_headers_the_world_id_and_an_unknown_world_are_refused(hub: Harness) -> None:
    assert _push(hub, _snapshot(), {"X-Stage": "paper"}).json() == {"detail": "missing actor header"}
    assert _push(hub, _snapshot(), {"X-Actor": "gw"}).status_code == 400
    assert _push(hub, _snapshot(), {"X-Actor": "gw"}).json() == {"detail": "missing stage header"}
    mismatch = _push(hub, _snapshot(world_id="w2"))
    assert (mismatch.status_code, mismatch.json()) == (400, {"detail": "world_id mismatch"})
    assert _push(hub, _snapshot(), world="nope").status_code == 404
    assert hub.client.get(f"{HUB}/latest").status_code == 404


@pytest.mark.parametrize(("change", "detail"), [
    ({"weights": {"s1": 0.6, "s2": 0.3}}, "weights must sum to 1"),
    ({"weights": {}}, "weights are required"),
    ({"ttl_sec": 86_401}, "ttl_sec must be <= 86400"),
    ({"ttl_sec": 0}, "ttl_sec must be positive"),
    ({"as_of": "yesterday"}, "invalid as_of timestamp"),
    ({"created_at": "2026-03-02T08:00:00Z", "ttl_sec": 60}, "snapshot is expired"),
    ({"covariance": {"s1": 0.1}}, "covariance key 's1' must name two assets"),
    ({"realized_returns": []}, "realized_returns must be a non-empty list"),
])
def test_an_invalid_or_expired_snapshot_is_422(hub: Harness, change: dict[str, Any], detail: str) -> None:
    r = _push(hub, {**_snapshot(), **change})
    assert r.status_code == 422 and detail in r.json()["detail"], r.text
    assert hub.client.get(HUB).json() == {"snapshots": []}


def test_the_same_version_again_is_a_duplicate_and_other_content_a_conflict(hub: Harness, clock: FakeClock) -> None:
    first = _push(hub, _snapshot()).json()
    clock.advance(seconds=30)
    again = _push(hub, _snapshot(hash="blake3:whatever"))
    assert again.status_code == 200 and again.json() == first  # the stored one, first created_at included
    conflict = _push(hub, _snapshot(weights={"s1": 0.5, "s2": 0.5}))
    assert conflict.status_code == 409 and "version collision" in conflict.json()["detail"]
    hub.system.relay_now()
    assert len(hub.bus.of_type("risk_snapshot_updated")) == 1  # neither the duplicate nor the conflict announced
    metrics = hub.client.get("/metrics").text
    assert 'risk_hub_snapshot_processed_total{stage="paper"} 1.0' in metrics
    assert 'risk_hub_snapshot_dedupe_total{stage="paper"} 1.0' in metrics
    assert 'risk_hub_snapshot_failed_total{stage="paper"} 1.0' in metrics


def test_reads_filter_by_stage_and_actor_and_skip_expired_snapshots(hub: Harness, clock: FakeClock) -> None:
    _push(hub, _snapshot("v1", as_of="2026-03-02T08:00:00Z", ttl_sec=60))
    _push(hub, _snapshot("v2", as_of="2026-03-02T08:30:00Z"), {"X-Actor": "risk-engine", "X-Stage": "live"})
    _push(hub, _snapshot("v3", as_of="2026-03-02T08:10:00Z"))
    assert [s["version"] for s in hub.client.get(HUB).json()["snapshots"]] == ["v2", "v3", "v1"]
    assert hub.client.get(f"{HUB}/latest").json()["version"] == "v2"
    assert hub.client.get(f"{HUB}/latest", params={"stage": "PAPER"}).json()["version"] == "v3"
    assert hub.client.get(f"{HUB}/latest", params={"actor": "risk-engine"}).json()["version"] == "v2"
    assert hub.client.get(f"{HUB}/lookup", params={"as_of": "2026-03-02T08:20:00Z"}).json()["version"] == "v3"
    assert hub.client.get(HUB, params={"limit": 1}).json()["snapshots"][0]["version"] == "v2"
    clock.advance(seconds=61)
    assert [s["version"] for s in hub.client.get(HUB).json()["snapshots"]] == ["v2", "v3"]
    assert hub.client.get(f"{HUB}/lookup", params={"version": "v1"}).status_code == 404
    assert hub.client.get(f"{HUB}/lookup", params={"as_of": "2026-03-02T08:05:00Z"}).status_code == 404


def _covariance(n: int) -> dict[str, float]:
    assets = [f"a{i}" for i in range(n)]
    return {f"{a},{b}": (0.04 if a == b else 0.01) for a in assets for b in assets}


def test_a_large_covariance_is_stored_by_reference_and_expanded_on_request(hub: Harness) -> None:
    weights = {f"a{i}": 1 / 11 for i in range(11)}
    cov = _covariance(11)  # 121 entries: over the inline threshold (100)
    body = _push(hub, _snapshot(weights=weights, covariance=cov)).json()
    assert "covariance" not in body and body["covariance_ref"].startswith("blob:sha256:")
    assert "covariance" not in hub.client.get(f"{HUB}/latest").json()
    expanded = hub.client.get(f"{HUB}/latest", params={"expand": "true"}).json()
    assert expanded["covariance"] == cov and expanded["covariance_ref"] == body["covariance_ref"]
    listed = hub.client.get(HUB, params={"expand": "true"}).json()["snapshots"]
    assert listed[0]["covariance"] == cov
    inline = _push(hub, _snapshot("v2", covariance={"s1,s1": 0.04, "s2,s2": 0.09, "s1,s2": 0.01})).json()
    assert inline["covariance"]["s1,s2"] == 0.01 and "covariance_ref" not in inline
    # The content hash does not depend on where the covariance travelled.
    assert _push(hub, _snapshot(weights=weights, covariance=cov)).json()["hash"] == body["hash"]


def _promotable(h: Harness) -> None:
    c = h.client
    policy = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}}
    assert c.post("/worlds/w1/policies", json={"policy": policy}).status_code == 200
    r = c.post("/worlds/w1/evaluate", json={"strategy_id": "s1", "run_id": "r1", "stage": "paper",
                                             "metrics": {"s1": {"sharpe": 1.0}}})
    assert r.status_code == 200, r.text


def _blocked(h: Harness) -> list[str]:
    plan = h.client.get("/worlds/w1/promotions/live/plan", params={"strategy_id": "s1", "run_id": "r1"})
    assert plan.status_code == 200, plan.text
    return plan.json()["blocked_reasons"]


def test_the_live_promotion_gate_reads_the_worlds_newest_snapshot(hub: Harness, clock: FakeClock,
                                                                  harness_factory) -> None:
    _promotable(hub)
    assert "risk_snapshot_missing_or_expired" in _blocked(hub)
    assert _push(hub, _snapshot(ttl_sec=600)).status_code == 200
    assert "risk_snapshot_missing_or_expired" not in _blocked(hub)
    # An older as_of pushed later does not replace the newest snapshot as the gate's evidence.
    assert _push(hub, _snapshot("v0", as_of="2026-03-02T07:00:00Z", ttl_sec=60)).status_code == 200
    clock.advance(seconds=120)
    assert "risk_snapshot_missing_or_expired" not in _blocked(hub)
    # A fresh daemon loads the stamp with the world.
    hub.runtime.close()
    h2 = harness_factory(hub.config, clock=clock)
    assert "risk_snapshot_missing_or_expired" not in _blocked(h2)
    clock.advance(seconds=600)
    assert "risk_snapshot_missing_or_expired" in _blocked(h2)


def test_a_configured_hub_token_is_required_for_pushes(harness_factory, tmp_path: Path) -> None:
    ws = {"data_dir": str(tmp_path), "risk_hub": {"token": "s3cret"}, "actors": {"sweep_interval_s": 3600}}
    h = harness_factory(load_config(environ={}, overrides={"worldservice": ws}))
    assert h.client.post("/worlds", json={"id": "w1"}).status_code == 201
    assert _push(h, _snapshot()).status_code == 401
    assert _push(h, _snapshot(), {**WHO, "Authorization": "Bearer nope"}).json() == {"detail": "unauthorized"}
    assert _push(h, _snapshot(), {**WHO, "Authorization": "Bearer s3cret"}).status_code == 200


def test_the_latest_snapshot_is_cached_in_redis_but_sql_decides(hub: Harness, projection: dict[str, str]) -> None:
    _push(hub, _snapshot("v2", as_of="2026-03-02T08:30:00Z"))
    _push(hub, _snapshot("v1", as_of="2026-03-02T08:00:00Z"))  # older: the cache keeps v2
    assert hub.client.get(f"{HUB}/latest").json()["version"] == "v2"
    if projection:
        client = redis.Redis.from_url(projection["redis"])
        key = f"{projection['redis_prefix']}risk-hub:latest:w1"
        assert msgspec.json.decode(client.hget(key, "snapshot"))["version"] == "v2"
        assert 0 < client.ttl(key) <= 300
        client.close()
    assert hub.client.delete("/worlds/w1").status_code == 204
    assert hub.client.get(f"{HUB}/latest").status_code == 404  # a deleted world's cached entry is not served
    assert hub.client.get(HUB).json() == {"snapshots": []}


def test_producers_and_stages_outside_the_allowed_lists_are_refused(harness_factory, tmp_path: Path, sql_dsn: str,
                                                                   clock: FakeClock) -> None:
    hub = {"allowed_actors": ["gateway"], "allowed_stages": ["paper", "live"]}
    h = harness_factory(_hub_config(tmp_path, sql_dsn, hub=hub), clock=clock)
    assert h.client.post("/worlds", json={"id": "w1"}).status_code == 201
    stranger = _push(h, _snapshot(), {"X-Actor": "risk-engine", "X-Stage": "paper"})
    assert (stranger.status_code, stranger.json()) == (422, {"detail": "actor 'risk-engine' not allowed"})
    backtest = _push(h, _snapshot(), {"X-Actor": "gateway", "X-Stage": "backtest"})
    assert (backtest.status_code, backtest.json()) == (422, {"detail": "stage 'backtest' not allowed"})
    # The body's provenance cannot name another producer than the header (nor slip past the list that way).
    claimed = _push(h, _snapshot(provenance={"actor": "risk-engine"}), {"X-Actor": "gateway", "X-Stage": "live"})
    assert (claimed.status_code, claimed.json()) == (422, {"detail": "actor mismatch between payload and header"})
    assert h.client.get(HUB).json() == {"snapshots": []}
    assert _push(h, _snapshot(provenance={"source": "ops"}), {"X-Actor": "gateway", "X-Stage": "live"}).status_code == 200
    metrics = h.client.get("/metrics").text
    assert 'risk_hub_snapshot_failed_total{stage="paper"} 1.0' in metrics


def test_realized_returns_over_the_size_limits_are_422(harness_factory, tmp_path: Path, sql_dsn: str,
                                                       clock: FakeClock) -> None:
    hub = {"realized_returns_max_points_per_series": 4, "realized_returns_max_points_total": 6}
    h = harness_factory(_hub_config(tmp_path, sql_dsn, hub=hub), clock=clock)
    assert h.client.post("/worlds", json={"id": "w1"}).status_code == 201
    long_series = _push(h, _snapshot(realized_returns={"s1": [0.01] * 5}))
    assert long_series.status_code == 422 and "series too long for 's1'" in long_series.json()["detail"]
    too_many = _push(h, _snapshot(realized_returns={"s1": [0.01] * 4, "s2": [0.02] * 3}))
    assert too_many.status_code == 422 and "total points exceed limit" in too_many.json()["detail"]
    one_series = _push(h, _snapshot(realized_returns=[0.01] * 7))
    assert one_series.status_code == 422 and "series too long" in one_series.json()["detail"]
    fits = _push(h, _snapshot(realized_returns={"s1": [0.01] * 4, "s2": [0.02] * 2}))
    assert fits.status_code == 200, fits.text
    assert fits.json()["realized_returns"] == {"s1": [0.01] * 4, "s2": [0.02] * 2}
