"""``/decide`` over HTTP on SQLite and PostgreSQL: the policy's decision section end to end, its state across
a daemon restart, and the reference's answers for a world without a decision section."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeClock, Harness, make_config, stop_harness



@pytest.fixture
def daemon(harness_factory, tmp_path: Path, sql_dsn: str, clock: FakeClock) -> Callable[[], Harness]:
    """``daemon()`` starts a daemon on the test's database; calling it again after ``stop`` is a restart."""
    return lambda: harness_factory(make_config(tmp_path, sql_dsn), clock=clock)


DECISION = {"promote_to": "live", "ttl": "1h", "data_currency": {"max_lag": "30m"},
            "sample": {"min_trades": 20}, "gates": {"and": ["sharpe >= 1.0", "max_dd <= 0.3"]},
            "hysteresis": {"promote_after": 2, "demote_after": 2, "min_dwell": "2h"}}


def _world(c: Any, allow_live: bool = True, decision: dict | None = DECISION) -> None:
    assert c.post("/worlds", json={"id": "w", "allow_live": allow_live}).status_code == 201
    policy = {"thresholds": {}, **({"decision": decision} if decision else {})}
    assert c.post("/worlds/w/policies", json={"policy": policy}).status_code == 200
    c.post("/worlds/w/bindings", json={"strategies": ["s1"]})
    c.post("/worlds/w/decisions", json={"strategies": ["s1"]})


def _evidence(c: Any, clock: FakeClock, sharpe: float, **extra: Any) -> None:
    body = {"strategy_id": "s1", "node_id": "n1", "interval": 60, "rows": 5000, "dataset_fingerprint": "fp1",
            "data_end": clock.now.isoformat(), "metrics": {"sharpe": sharpe, "max_dd": 0.1, "n_trades_total": 50},
            **extra}
    r = c.post("/worlds/w/history", json=body)
    assert r.status_code == 204, r.text


def _decide(c: Any, **params: str) -> dict[str, Any]:
    r = c.get("/worlds/w/decide", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["cache-control"] == f"max-age={body['ttl'].removesuffix('s')}"
    assert r.headers["etag"] == body["etag"]
    return body


def test_promotion_waits_for_promote_after_and_min_dwell(daemon, clock) -> None:
    c = daemon().client
    _world(c)
    assert _decide(c)["reason"] == "awaiting_evaluation"
    _evidence(c, clock, sharpe=1.5)
    first = _decide(c)
    assert first["effective_mode"] == "compute-only"
    assert first["reason"] == "data_currency_ok & sample_ok & gates_pass & hysteresis_pending_promotion"
    assert first["hysteresis"]["pass_streak"] == 1 and first["hysteresis"]["promote_after"] == 2
    clock.advance(minutes=5)
    _evidence(c, clock, sharpe=1.6)
    live = _decide(c)
    assert (live["effective_mode"], live["hysteresis"]["status"]) == ("live", "promoted")
    assert live["reason"] == "data_currency_ok & sample_ok & gates_pass & hysteresis_settled"
    assert live["ttl"] == "3600s"
    clock.advance(minutes=10)
    assert _decide(c)["ttl"] == "3000s"  # the decision's remaining validity, not a fixed number
    # Two failures would demote, but the world entered live 10 minutes ago: min_dwell (2h) holds it.
    for _ in range(2):
        _evidence(c, clock, sharpe=0.2)
    held = _decide(c)
    assert held["effective_mode"] == "live" and held["reason"].endswith("gates_failed & hysteresis_min_dwell")
    clock.advance(hours=2)
    _evidence(c, clock, sharpe=0.2)
    demoted = _decide(c)
    assert (demoted["effective_mode"], demoted["hysteresis"]["status"]) == ("compute-only", "demoted")


def test_default_safe_rules_over_http(daemon, clock) -> None:
    c = daemon().client
    _world(c, decision={**DECISION, "hysteresis": {}})
    _evidence(c, clock, sharpe=2.0)
    assert _decide(c)["effective_mode"] == "live"
    clock.advance(minutes=31)
    stale = _decide(c)
    assert stale["effective_mode"] == "compute-only" and stale["reason"].endswith("data_stale")
    _evidence(c, clock, sharpe=2.0)
    assert _decide(c)["effective_mode"] == "live"
    c.put("/worlds/w", json={"allow_live": False})
    assert _decide(c)["reason"].endswith("allow_live_disabled")
    c.put("/worlds/w", json={"allow_live": True})
    c.post("/worlds/w/decisions", json={"strategies": ["s1", "s2"]})  # s2 has no evidence yet
    assert _decide(c)["reason"].endswith("evidence_missing")
    c.post("/worlds/w/decisions", json={"strategies": ["s1"]})
    _evidence(c, clock, sharpe=2.0, metrics={"sharpe": 2.0})  # the drawdown and trade count are gone
    missing = _decide(c)
    assert missing["effective_mode"] == "compute-only" and missing["reason"].startswith("sample_missing:trades")
    clock.advance(hours=2)
    assert _decide(c)["reason"].endswith("decision_stale")


def test_hysteresis_state_and_etag_survive_a_restart(daemon, clock) -> None:
    h = daemon()
    _world(h.client)
    _evidence(h.client, clock, sharpe=1.5)
    before = _decide(h.client)
    stop_harness(h)
    h = daemon()
    after = _decide(h.client)
    assert after == before
    assert h.client.get("/worlds/w/decide", headers={"If-None-Match": before["etag"]}).status_code == 304
    clock.advance(minutes=1)
    _evidence(h.client, clock, sharpe=1.5)  # the second pass counts on top of the first one
    assert _decide(h.client)["effective_mode"] == "live"


def test_the_etag_changes_only_when_the_decision_does(daemon, clock) -> None:
    c = daemon().client
    _world(c, decision={**DECISION, "hysteresis": {}})
    _evidence(c, clock, sharpe=2.0)
    first = _decide(c)
    clock.advance(minutes=1)
    _evidence(c, clock, sharpe=2.5)  # new evidence, same decision
    again = _decide(c)
    assert again["etag"] == first["etag"] and again["history_updated_at"] != first["history_updated_at"]
    _evidence(c, clock, sharpe=0.5)
    assert _decide(c)["etag"] != first["etag"]


def test_decide_as_of_reads_the_decision_then_in_effect(daemon, clock) -> None:
    c = daemon().client
    _world(c, decision={**DECISION, "hysteresis": {}})
    start = clock.now
    _evidence(c, clock, sharpe=2.0, as_of=start.isoformat())
    clock.advance(hours=1)
    _evidence(c, clock, sharpe=0.1, as_of=clock.now.isoformat())
    assert _decide(c)["effective_mode"] == "compute-only"
    earlier = _decide(c, as_of=(start + timedelta(minutes=10)).isoformat())
    # Live was decided then, but the evidence in hand dates from later: no look-ahead, so compute-only.
    assert earlier["effective_mode"] == "compute-only" and "evidence_missing" in earlier["reason"]
    assert _decide(c, as_of=(start - timedelta(days=1)).isoformat())["reason"] == "decision_unavailable"


def test_a_malformed_decision_section_is_refused_at_upload(daemon) -> None:
    c = daemon().client
    c.post("/worlds", json={"id": "w"})
    r = c.post("/worlds/w/policies", json={"policy": {"decision": {"gates": {"and": ["sharpe >>= 1"]}}}})
    assert r.status_code == 422 and "decision.gates.and[0]" in r.json()["detail"]
    assert c.get("/worlds/w/policies").json() == []


def test_evaluations_are_kept_in_the_decision_history(daemon, clock) -> None:
    h = daemon()
    _world(h.client, decision={**DECISION, "hysteresis": {}})
    for sharpe in (2.0, 0.5, 2.0):
        clock.advance(minutes=1)
        _evidence(h.client, clock, sharpe=sharpe)
    rows = h.client.get("/worlds/w/decide/history").json()["entries"]
    assert [(r["verdict"], r["mode"]) for r in rows] == [("pass", "live"), ("fail", "compute-only"), ("pass", "live")]
    assert len({r["evaluated_at"] for r in rows}) == 3
    assert [r["tokens"] for r in h.client.get("/worlds/w/decide/history?limit=2").json()["entries"]] == \
        [["data_currency_ok", "sample_ok", "gates_pass"], ["gates_failed"]]
    assert h.client.get("/worlds/nope/decide/history").status_code == 404
    audit = h.client.get("/worlds/w/audit").json()
    changes = [e["result"]["to"] for e in audit if e["event"] == "decision_changed"]
    assert changes == ["live", "compute-only", "live"]


# --- a world without a decision section: the reference's answers (reference facts §5.1) -------------


def test_without_a_decision_section_decide_answers_as_the_reference(daemon, clock) -> None:
    h = daemon()
    c = h.client
    c.post("/worlds", json={"id": "w"})
    assert (_decide(c)["effective_mode"], _decide(c)["reason"], _decide(c)["ttl"]) == ("validate", "no_bindings", "300s")
    c.post("/worlds/w/bindings", json={"strategies": ["s1"]})
    assert (_decide(c)["effective_mode"], _decide(c)["reason"]) == ("validate", "no_active_strategies")
    c.post("/worlds/w/decisions", json={"strategies": ["s1"]})
    assert _decide(c)["reason"] == ("bindings_present & decisions_present & allow_live_disabled & "
                                    "dataset_fingerprint_missing & required_metrics_missing")
    c.put("/worlds/w", json={"allow_live": True})
    history = {"strategy_id": "s1", "node_id": "n1", "interval": 60, "rows": 10, "dataset_fingerprint": "fp1"}
    c.post("/worlds/w/history", json=history)
    live = _decide(c)
    assert (live["effective_mode"], live["ttl"]) == ("live", "300s")
    assert live["reason"] == "bindings_present & decisions_present & allow_live & dataset_fingerprint_ok & metrics_ok"
    c.post("/worlds/w/history", json={**history, "rows": None})  # same fingerprint, metrics gone
    held = _decide(c)
    assert (held["effective_mode"], held["ttl"]) == ("live", "120s")
    assert held["reason"] == "bindings_present & decisions_present & allow_live & hysteresis_hold"
    stop_harness(h)
    c = daemon().client  # the reference forgets its hold on restart; we do not
    assert _decide(c)["reason"].endswith("hysteresis_hold")
    c.post("/worlds/w/history", json={**history, "rows": None, "dataset_fingerprint": "fp2"})
    assert _decide(c)["reason"] == "bindings_present & decisions_present & required_metrics_missing"
