"""The default-safe rule end to end (seed §0 "Default-safe", §3, §4): a world is never live unless it may be,
the Gateway sees the domain a world is in, and a world that may no longer be live is demoted at once.

The two regressions this file was written for: an apply promoting a world with ``allow_live: false`` to live
completed and opened the ``backtest -> live`` edge; a decision section reached ``live`` with no pinned
dataset fingerprint. The stateful property over random API sequences is test_default_safe_property.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from domain.default_safe import live_refusals, must_demote, world_refusals
from messages.worlds import WorldRecord
from tests.conftest import Harness
from tests.test_decision_engine import DECISION, FakeClock, _decide, _evidence

GATING = {"dataset_fingerprint": "fp-1", "share_policy": "feature-artifacts-only",
          "snapshot": {"strategy_plane": "cow", "feature_plane": "readonly"}, "domains": {"to": "live"},
          "edges": {"pre_promotion": {"disable_edges_to": "live"}, "post_promotion": {"enable_edges_to": "live"}}}


def _world(h: Harness, allow_live: bool) -> None:
    c = h.client
    assert c.post("/worlds", json={"id": "w1", "allow_live": allow_live}).status_code == 201
    assert c.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": True}).status_code == 200


def _apply_live(h: Harness, run_id: str = "r1") -> Any:
    return h.client.post("/worlds/w1/apply", json={"run_id": run_id, "plan": {"activate": ["s1"]},
                                                   "gating_policy": GATING})


def _live_edge(h: Harness) -> bool:
    edges = h.client.get("/worlds/w1/edges/overrides").json()
    return next(e["active"] for e in edges if e["dst_node_id"] == "domain:live")


def _events(h: Harness, event_type: str) -> list[dict[str, Any]]:
    h.system.relay_now()  # the reply can overtake the relay: publish everything committed first
    return [e.event["data"] for e in h.bus.of_type(event_type)]


def _mode(h: Harness) -> str | None:
    return h.client.get("/worlds/w1/activation", params={"strategy_id": "s1", "side": "long"}).json()["effective_mode"]


# --- the pure rule ------------------------------------------------------------------------------------------

_ALLOWED = WorldRecord(id="w", allow_live=True, dataset_fingerprint="fp", execution_domain="live")


@pytest.mark.parametrize(("change", "token"), [
    ({"allow_live": False}, "allow_live_disabled"), ({"circuit_breaker": True}, "circuit_breaker_on"),
    ({"state": "SUSPENDED"}, "world_not_active"), ({"dataset_fingerprint": None}, "dataset_fingerprint_missing"),
    ({"dataset_fingerprint": "  "}, "dataset_fingerprint_missing"),
    ({"execution_domain": "backtest"}, "execution_domain_not_live"),
])
def test_each_condition_of_the_rule_refuses_on_its_own(change: dict[str, Any], token: str) -> None:
    import msgspec

    assert world_refusals(_ALLOWED) == []
    assert world_refusals(msgspec.structs.replace(_ALLOWED, **change)) == [token]


def test_refusals_name_every_failing_rule_and_the_validation_last() -> None:
    world = WorldRecord(id="w", circuit_breaker=True, state="SUSPENDED")
    assert live_refusals(world, None, "required_metrics_missing") == [
        "allow_live_disabled", "circuit_breaker_on", "world_not_active", "dataset_fingerprint_missing",
        "required_metrics_missing"]


def test_only_a_live_world_is_demoted_and_a_new_fingerprint_demotes_it() -> None:
    import msgspec

    assert must_demote(WorldRecord(id="w"), WorldRecord(id="w", circuit_breaker=True)) == []
    repinned = msgspec.structs.replace(_ALLOWED, dataset_fingerprint="fp-2")
    assert must_demote(_ALLOWED, repinned) == ["dataset_fingerprint_changed"]
    assert must_demote(_ALLOWED, msgspec.structs.replace(_ALLOWED, circuit_breaker=True)) == ["circuit_breaker_on"]
    assert must_demote(_ALLOWED, _ALLOWED) == []


# --- regressions -----------------------------------------------------------------------------------------------


def test_apply_to_live_without_allow_live_is_refused_and_writes_nothing_but_the_audit(api: Harness) -> None:
    _world(api, allow_live=False)
    activation_events = len(_events(api, "activation_updated"))
    refused = _apply_live(api)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "apply to live refused by the default-safe rule: allow_live_disabled"
    assert api.client.get("/worlds/w1/apply/r1").status_code == 404  # no run was started
    assert api.client.get("/worlds/w1").json()["execution_domain"] == "backtest"
    assert _live_edge(api) is False and _mode(api) is None
    assert len(_events(api, "activation_updated")) == activation_events  # nothing froze
    audit = api.client.get("/worlds/w1/audit").json()[-1]
    assert audit["event"] == "live_refused"
    assert audit["result"] == {"what": "apply to live", "refusals": ["allow_live_disabled"], "outcome": "rejected"}


def test_opening_live_edges_without_going_live_is_refused(api: Harness) -> None:
    _world(api, allow_live=True)
    dryrun = {**GATING, "domains": {"to": "dryrun"},
              "edges": {"pre_promotion": {"disable_edges_to": ["dryrun", "live"]},
                        "post_promotion": {"enable_edges_to": "live"}}}
    r = api.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s1"]},
                                                  "gating_policy": dryrun})
    assert r.status_code == 409 and "execution_domain_not_live" in r.json()["detail"]
    assert _live_edge(api) is False


def test_a_decision_section_never_reads_live_without_a_pinned_fingerprint(harness_factory, tmp_path) -> None:
    from tests.conftest import make_config

    clock = FakeClock()
    c = harness_factory(make_config(tmp_path), clock=clock).client
    assert c.post("/worlds", json={"id": "w", "allow_live": True}).status_code == 201
    decision = {**DECISION, "hysteresis": {"promote_after": 1, "demote_after": 1, "min_dwell": "0s"}}
    assert c.post("/worlds/w/policies", json={"policy": {"thresholds": {}, "decision": decision}}).status_code == 200
    c.post("/worlds/w/bindings", json={"strategies": ["s1"]})
    c.post("/worlds/w/decisions", json={"strategies": ["s1"]})
    _evidence(c, clock, sharpe=2.0, dataset_fingerprint=None)
    unpinned = _decide(c)
    assert unpinned["effective_mode"] == "compute-only" and "dataset_fingerprint_missing" in unpinned["reason"]
    _evidence(c, clock, sharpe=2.0)  # the same evidence, now anchored to a snapshot
    assert _decide(c)["effective_mode"] == "live"
    assert c.put("/worlds/w", json={"circuit_breaker": True}).status_code == 200
    tripped = _decide(c)
    assert tripped["effective_mode"] == "compute-only" and "circuit_breaker_on" in tripped["reason"]


# --- the Gateway's view: the domain a world is in, announced ---------------------------------------------------


def test_a_permitted_promotion_is_live_everywhere_a_gateway_looks(api: Harness) -> None:
    _world(api, allow_live=True)
    assert _apply_live(api).status_code == 200
    world = api.client.get("/worlds/w1").json()
    assert (world["execution_domain"], world["dataset_fingerprint"]) == ("live", "fp-1")
    assert api.client.get("/worlds/w1/describe").json()["execution_domain"] == "live"
    assert _mode(api) == "live" and _live_edge(api) is True
    unfreeze = [e for e in _events(api, "activation_updated") if e.get("phase") == "unfreeze"]
    assert [e["effective_mode"] for e in unfreeze] == ["live"]
    [switched] = _events(api, "execution_domain_updated")
    assert (switched["execution_domain"], switched["previous_domain"]) == ("live", "backtest")
    assert (switched["queue_namespace"], switched["run_id"]) == ("w1.live", "r1")
    timeline = [a for a in api.client.get("/worlds/w1/audit").json() if a["event"] == "execution_domain_changed"]
    assert [(a["result"]["from"], a["result"]["to"]) for a in timeline] == [("backtest", "live")]


@pytest.mark.parametrize("change", [{"allow_live": False}, {"circuit_breaker": True}, {"state": "SUSPENDED"},
                                    {"dataset_fingerprint": None}])
def test_a_live_world_that_may_no_longer_be_live_is_demoted_at_once(api: Harness, change: dict[str, Any]) -> None:
    _world(api, allow_live=True)
    assert _apply_live(api).status_code == 200
    before = len(_events(api, "activation_updated"))
    updated = api.client.put("/worlds/w1", json=change)
    assert updated.status_code == 200 and updated.json()["execution_domain"] == "backtest"
    assert _mode(api) == "compute-only" and _live_edge(api) is False
    [demotion] = _events(api, "activation_updated")[before:]
    assert demotion["effective_mode"] == "compute-only" and demotion["strategy_id"] == "s1"
    announced = _events(api, "execution_domain_updated")[-1]
    assert (announced["execution_domain"], announced["queue_namespace"]) == ("backtest", "w1.backtest")
    demoted = [a for a in api.client.get("/worlds/w1/audit").json() if a["event"] == "world_demoted"]
    assert len(demoted) == 1 and demoted[0]["result"]["outcome"] == "demoted"
    refused = api.client.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": True,
                                                            "effective_mode": "live"})
    assert refused.status_code == 409  # and it cannot be put back by hand


def test_demotion_shows_in_decide_with_the_reason(api: Harness) -> None:
    c = api.client
    _world(api, allow_live=True)
    c.post("/worlds/w1/bindings", json={"strategies": ["s1"]})
    history = {"strategy_id": "s1", "node_id": "n1", "interval": 60, "dataset_fingerprint": "fp-1", "rows": 10}
    assert c.post("/worlds/w1/history", json=history).status_code == 204
    assert _apply_live(api).status_code == 200
    assert c.get("/worlds/w1/decide").json()["effective_mode"] == "live"
    c.put("/worlds/w1", json={"state": "SUSPENDED"})
    decided = c.get("/worlds/w1/decide").json()
    assert decided["effective_mode"] == "compute-only" and "world_not_active" in decided["reason"]


def test_a_rollback_after_switch_restores_the_domain(api: Harness) -> None:
    from actors import faults

    _world(api, allow_live=True)
    faults.fail_at("apply.unfreezing")  # after Switch moved the world to live
    try:
        failed = _apply_live(api)
    finally:
        faults.fail_at()
    assert failed.status_code == 500
    world = api.client.get("/worlds/w1").json()
    assert (world["execution_domain"], world["dataset_fingerprint"]) == ("backtest", None)
    assert _live_edge(api) is False and _mode(api) != "live"


def test_the_domain_is_server_owned(api: Harness) -> None:
    _world(api, allow_live=True)
    r = api.client.put("/worlds/w1", json={"execution_domain": "live"})
    assert r.status_code == 422
    assert api.client.get("/worlds/w1").json()["execution_domain"] == "backtest"
