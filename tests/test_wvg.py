"""World View Graph over HTTP on SQLite and PostgreSQL: world nodes per execution domain, edge overrides
(default edge, kept reasons, one ControlBus event and one audit entry per change), the validation cache
(one EvalKey everywhere, eviction on a context change, every whole-world invalidation) and restarts."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors import faults
from domain.apply import ApplySettings, begin
from domain.evalkey import eval_key
from domain.handle import handle
from domain.state import WorldState
from messages.commands import external_command_decoder
from messages.errors import CommandRejected, Refusal
from tests.conftest import Harness, make_config

CONTEXT = {"node_id": "n1", "execution_domain": "live", "contract_id": "contract-a", "dataset_fingerprint": "ds-2025",
           "code_version": "v1.2.3", "resource_policy": "cpu:2"}
# The same literal on every store: the key is a function of its inputs only.
CONTEXT_KEY = "blake3:3ce34a09ec3c4f4fa3023aee72720db100f879df70480a490bf55679b2700ab2"
GATING = {"dataset_fingerprint": "fp-1", "share_policy": "feature-artifacts-only",
          "snapshot": {"strategy_plane": "cow", "feature_plane": "readonly"},
          "edges": {"pre_promotion": {"disable_edges_to": ["dryrun", "live"]}, "post_promotion": {"enable_edges_to": "live"}},
          "observability": {"slo": {"cross_context_cache_hit": 0}}}
DEFAULT_EDGE = {"world_id": "w1", "src_node_id": "domain:backtest", "dst_node_id": "domain:live", "active": False,
                "reason": "auto:cross-domain-block"}


@pytest.fixture
def wvg(harness_factory, tmp_path: Path, sql_dsn: str) -> Harness:
    return harness_factory(make_config(tmp_path, sql_dsn))


def _world(h: Harness, world_id: str = "w1", allow_live: bool = False) -> None:
    assert h.client.post("/worlds", json={"id": world_id, "allow_live": allow_live}).status_code == 201


def _audit(h: Harness, world_id: str = "w1") -> list[dict[str, Any]]:
    return h.client.get(f"/worlds/{world_id}/audit", params={"limit": 1000}).json()


def _events(h: Harness, event_type: str = "edge_override_upserted") -> list[Any]:
    h.system.relay_now()  # the reply can overtake the relay: publish everything committed first
    return h.bus.of_type(event_type)


def _restart(h: Harness, harness_factory) -> Harness:  # type: ignore[no-untyped-def]
    config = h.config
    h.runtime.close()
    return harness_factory(config)


def _store(h: Harness, world_id: str = "w1", **changes: Any) -> dict[str, Any]:
    body = {**CONTEXT, "result": "valid", "metrics": {"sharpe": 1.2}, **changes}
    r = h.client.post(f"/worlds/{world_id}/validations/cache", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def _lookup(h: Harness, world_id: str = "w1", **changes: Any) -> dict[str, Any]:
    r = h.client.post(f"/worlds/{world_id}/validations/cache/lookup", json={**CONTEXT, **changes})
    assert r.status_code == 200, r.text
    return r.json()


# --- nodes ---------------------------------------------------------------------------------------------


def test_nodes_are_scoped_by_execution_domain(wvg: Harness) -> None:
    _world(wvg)
    c = wvg.client
    live = c.put("/worlds/w1/nodes/n1", json={"status": "valid", "execution_domain": "Live", "annotations": {"a": 1},
                                             "last_eval_key": "blake3:abc"})
    assert live.status_code == 200
    assert live.json() == {"world_id": "w1", "node_id": "n1", "execution_domain": "live", "status": "valid",
                           "last_eval_key": "blake3:abc", "annotations": {"a": 1}}
    assert c.put("/worlds/w1/nodes/n1", json={"status": "running"}).json()["execution_domain"] == "backtest"
    assert c.get("/worlds/w1/nodes/n1").json()["status"] == "running"  # no domain: backtest
    assert c.get("/worlds/w1/nodes/n1", params={"execution_domain": "prod"}).json()["status"] == "valid"
    everything = [(n["node_id"], n["execution_domain"]) for n in c.get("/worlds/w1/nodes").json()]
    assert everything == [("n1", "backtest"), ("n1", "live")]
    for every in ("*", "all", "ALL"):
        assert len(c.get("/worlds/w1/nodes", params={"execution_domain": every}).json()) == 2
    assert [n["status"] for n in c.get("/worlds/w1/nodes", params={"execution_domain": "live"}).json()] == ["valid"]

    kept = c.put("/worlds/w1/nodes/n1", json={"status": "paused", "execution_domain": "live"}).json()
    assert (kept["annotations"], kept["last_eval_key"]) == ({"a": 1}, "blake3:abc")  # left out: kept
    assert c.delete("/worlds/w1/nodes/n1", params={"execution_domain": "LIVE"}).status_code == 204
    gone = c.get("/worlds/w1/nodes/n1", params={"execution_domain": "live"})
    assert (gone.status_code, gone.json()) == (404, {"detail": "world node not found"})
    assert c.get("/worlds/w1/nodes/n1").json()["status"] == "running"  # the backtest node is another record
    assert c.delete("/worlds/w1/nodes/n1", params={"execution_domain": "live"}).status_code == 204  # idempotent
    events = [e["event"] for e in _audit(wvg) if e["event"].startswith("world_node")]
    assert events == ["world_node_upserted"] * 3 + ["world_node_deleted"]


def test_node_input_errors_are_422_and_unknown_worlds_404(wvg: Harness) -> None:
    _world(wvg)
    c = wvg.client
    before = _audit(wvg)
    bad_status = c.put("/worlds/w1/nodes/n1", json={"status": "bogus"})
    assert bad_status.status_code == 422 and bad_status.json()["detail"][0]["loc"] == ["body", "status"]
    assert c.put("/worlds/w1/nodes/n1", json={}).status_code == 422  # status is required
    for response in (c.put("/worlds/w1/nodes/n1", json={"status": "valid", "execution_domain": "mars"}),
                     c.get("/worlds/w1/nodes", params={"execution_domain": "mars"}),
                     c.get("/worlds/w1/nodes/n1", params={"execution_domain": "mars"}),
                     c.delete("/worlds/w1/nodes/n1", params={"execution_domain": "mars"})):
        assert response.status_code == 422
        assert "unknown execution_domain 'mars'" in response.json()["detail"]
    assert c.put("/worlds/w1/nodes/%20bad", json={"status": "valid"}).status_code == 422
    assert _audit(wvg) == before  # nothing was written
    for response in (c.get("/worlds/nope/nodes"), c.get("/worlds/nope/nodes/n1"),
                     c.put("/worlds/nope/nodes/n1", json={"status": "valid"}), c.delete("/worlds/nope/nodes/n1"),
                     c.get("/worlds/nope/edges/overrides"), c.put("/worlds/nope/edges/a/b", json={"active": True}),
                     c.post("/worlds/nope/validations/cache/lookup", json=CONTEXT),
                     c.delete("/worlds/nope/validations/n1")):
        assert (response.status_code, response.json()) == (404, {"detail": "world not found"})


# --- edge overrides ------------------------------------------------------------------------------------


def test_world_creation_stores_and_announces_the_default_edge(wvg: Harness) -> None:
    _world(wvg)
    [edge] = wvg.client.get("/worlds/w1/edges/overrides").json()
    assert {k: v for k, v in edge.items() if k != "updated_at"} == DEFAULT_EDGE and edge["updated_at"]
    [event] = _events(wvg)
    assert (event.topic, event.key) == ("control.edges", "w1")
    assert {k: event.event["data"][k] for k in DEFAULT_EDGE} == DEFAULT_EDGE
    assert event.event["data"]["version"] == 1


def test_edge_override_changes_keep_reasons_and_each_is_announced_once(wvg: Harness, harness_factory) -> None:
    _world(wvg)
    c = wvg.client
    # Opening the edge into live by hand is refused on a world that is not live: audited, not announced.
    refused = c.put("/worlds/w1/edges/domain:backtest/domain:live", json={"active": True, "reason": "unblock"})
    assert refused.status_code == 409 and "execution_domain_not_live" in refused.json()["detail"]
    assert _audit(wvg)[-1]["event"] == "live_refused" and len(_events(wvg)) == 1
    steps = [({"active": False, "reason": "manual block"}, "manual block"),
             ({"active": False}, "manual block"),  # no reason: the stored one is kept
             ({"active": False, "reason": None}, None)]  # an explicit null clears it
    for n, (body, reason) in enumerate(steps, start=1):
        audit_before, events_before = len(_audit(wvg)), len(_events(wvg))
        r = c.put("/worlds/w1/edges/domain:backtest/domain:live", json=body)
        assert r.status_code == 200, r.text
        assert {k: v for k, v in r.json().items() if k != "updated_at"} == {**DEFAULT_EDGE, "active": body["active"],
                                                                          "reason": reason}
        audit = _audit(wvg)
        assert len(audit) == audit_before + 1 and audit[-1]["event"] == "edge_override_upserted"
        assert audit[-1]["result"]["reason"] == reason
        events = _events(wvg)
        assert len(events) == events_before + 1
        assert (events[-1].topic, events[-1].key, events[-1].event["type"]) == ("control.edges", "w1",
                                                                                 "edge_override_upserted")
        assert (events[-1].event["data"]["active"], events[-1].event["data"]["reason"]) == (body["active"], reason)
    keys = [e.event["data"]["idempotency_key"] for e in _events(wvg)]
    assert len(set(keys)) == len(keys) == 4  # changes within one second are still distinct events
    c.put("/worlds/w1/edges/node-a/node-b", json={"active": True, "reason": "keep me"})
    c.put("/worlds/w1/edges/node-a/node-b", json={"active": False})
    restarted = _restart(wvg, harness_factory)
    edges = {(e["src_node_id"], e["dst_node_id"]): e for e in restarted.client.get("/worlds/w1/edges/overrides").json()}
    assert (edges[("node-a", "node-b")]["active"], edges[("node-a", "node-b")]["reason"]) == (False, "keep me")
    assert edges[("domain:backtest", "domain:live")]["reason"] is None


def test_edge_ids_are_node_ids(wvg: Harness) -> None:
    """GSG node ids are ``blake3:<64 hex>`` (71 characters): they must fit, on PostgreSQL too."""
    _world(wvg)
    src, dst = "blake3:" + "a" * 64, "blake3:" + "b" * 64
    assert wvg.client.put(f"/worlds/w1/edges/{src}/{dst}", json={"active": True}).status_code == 200
    assert wvg.client.put("/worlds/w1/edges/a/b", json={"reason": "x"}).status_code == 422  # active is required
    assert wvg.client.put("/worlds/w1/edges/a/b", json={"active": "yes"}).status_code == 422


def test_apply_edge_toggles_are_announced(api: Harness) -> None:
    _world(api, allow_live=True)
    api.client.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": True})
    before = len(_events(api))
    ok = api.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s1"]},
                                                   "gating_policy": GATING})
    assert ok.status_code == 200, ok.text
    announced = [(e.event["data"]["dst_node_id"], e.event["data"]["active"], e.event["data"]["reason"])
                 for e in _events(api)[before:]]
    assert len(announced) == 2  # one per edge, with its final state (live was disabled, then enabled)
    assert set(announced) == {("domain:dryrun", False, "pre_promotion_disable:r1"),
                         ("domain:live", True, "post_promotion_enable:r1")}
    edges = {e["dst_node_id"]: e["active"] for e in api.client.get("/worlds/w1/edges/overrides").json()}
    assert edges == {"domain:dryrun": False, "domain:live": True}


def test_a_rolled_back_apply_announces_the_restored_edges(api: Harness) -> None:
    _world(api, allow_live=True)
    api.client.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": True})
    before = len(_events(api)), len(_events(api, "edge_override_deleted"))
    faults.fail_at("apply.unfreezing")  # after Switch toggled the edges
    try:
        failed = api.client.post("/worlds/w1/apply", json={"run_id": "r1", "plan": {"activate": ["s1"]},
                                                           "gating_policy": GATING})
    finally:
        faults.fail_at()
    assert failed.status_code == 500, failed.text
    restored = [(e.event["data"]["dst_node_id"], e.event["data"]["active"], e.event["data"]["reason"])
                for e in _events(api)[before[0]:]][-1]
    assert restored == ("domain:live", False, "auto:cross-domain-block")  # the default edge is back
    [deleted] = _events(api, "edge_override_deleted")[before[1]:]
    assert (deleted.topic, deleted.event["data"]["dst_node_id"]) == ("control.edges", "domain:dryrun")
    edges = [(e["dst_node_id"], e["active"]) for e in api.client.get("/worlds/w1/edges/overrides").json()]
    assert edges == [("domain:live", False)]


def test_manual_edge_changes_wait_for_an_open_apply_run() -> None:
    """Switch toggles the edges and a rollback restores them: a manual change in between would be lost."""
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    world = handle(WorldState(world_id="w1"), _command("create_world", body={"id": "w1"}), now).state
    started = begin(world, _command("apply", body={"run_id": "r1", "plan": {"activate": ["s1"]}}), now,
                    ApplySettings(await_acks=True))
    assert started.state.open_run() is not None
    with pytest.raises(CommandRejected) as refused:
        handle(started.state, _command("put_edge_override", src_node_id="a", dst_node_id="b", body={"active": True}),
               now)
    assert refused.value.refusal == Refusal.CONFLICT and "apply in progress" in refused.value.detail


def _command(kind: str, **fields: Any) -> Any:
    return external_command_decoder.decode(msgspec.json.encode({"kind": kind, "world_id": "w1", **fields}))


# --- validation cache ----------------------------------------------------------------------------------


def test_one_eval_key_in_every_store_and_across_restarts(wvg: Harness, harness_factory) -> None:
    _world(wvg)
    expected = eval_key(CONTEXT["node_id"], "w1", "live", CONTEXT["contract_id"], CONTEXT["dataset_fingerprint"],
                        CONTEXT["code_version"], CONTEXT["resource_policy"])
    assert expected == CONTEXT_KEY
    stored = _store(wvg, timestamp="2026-01-02T03:04:05Z")
    assert stored == {"cached": True, "eval_key": CONTEXT_KEY, "result": "valid", "metrics": {"sharpe": 1.2},
                      "timestamp": "2026-01-02T03:04:05Z"}
    assert _lookup(wvg) == stored
    restarted = _restart(wvg, harness_factory)
    assert _lookup(restarted) == stored
    assert _lookup(restarted, execution_domain="PROD")["eval_key"] == CONTEXT_KEY  # alias, same key


@pytest.mark.parametrize("component", ["contract_id", "dataset_fingerprint", "code_version", "resource_policy"])
def test_a_changed_context_component_misses_and_evicts(wvg: Harness, component: str) -> None:
    _world(wvg)
    _store(wvg)
    audit_before = len(_audit(wvg))
    assert _lookup(wvg) == _lookup(wvg) and len(_audit(wvg)) == audit_before  # hits write nothing
    assert _lookup(wvg, **{component: "changed"}) == {"cached": False, "eval_key": None, "result": None,
                                                     "metrics": None, "timestamp": None}
    assert _lookup(wvg)["cached"] is False  # evicted: the old context is never served again
    [evicted] = [e["result"] for e in _audit(wvg) if e["event"] == "validation_cache_invalidated"]
    expected = eval_key(**{**CONTEXT, "world_id": "w1", component: "changed"})
    assert evicted == {"reason": "context_mismatch", "node_id": "n1", "execution_domain": "live",
                       "stored_eval_key": CONTEXT_KEY, "expected_eval_key": expected}


def test_node_domain_and_world_scope_the_cache(wvg: Harness) -> None:
    """The other three components pick another entry: a miss that leaves this one alone."""
    _world(wvg)
    _world(wvg, "w2")
    _store(wvg)
    assert _lookup(wvg, node_id="n2")["cached"] is False
    assert _lookup(wvg, execution_domain="shadow")["cached"] is False
    assert _lookup(wvg, world_id="w2")["cached"] is False
    assert _lookup(wvg)["cached"] is True
    paper = _store(wvg, execution_domain="paper")
    assert _lookup(wvg, execution_domain="dryrun") == paper and paper["eval_key"] != CONTEXT_KEY


def test_delete_validations_by_domain_or_node_and_input_errors(wvg: Harness) -> None:
    _world(wvg)
    c = wvg.client
    _store(wvg)
    _store(wvg, execution_domain="backtest")
    assert c.delete("/worlds/w1/validations/n1", params={"execution_domain": "prod"}).status_code == 204
    assert (_lookup(wvg)["cached"], _lookup(wvg, execution_domain="backtest")["cached"]) == (False, True)
    _store(wvg)
    assert c.delete("/worlds/w1/validations/n1").status_code == 204  # no domain: the whole node
    assert (_lookup(wvg)["cached"], _lookup(wvg, execution_domain="backtest")["cached"]) == (False, False)
    assert c.delete("/worlds/w1/validations/n1").status_code == 204  # nothing left: still 204
    reasons = [e["result"]["reason"] for e in _audit(wvg) if e["event"] == "validation_cache_invalidated"]
    assert reasons == ["deleted", "deleted"]
    for path, body in (("/worlds/w1/validations/cache/lookup", {**CONTEXT, "execution_domain": "mars"}),
                       ("/worlds/w1/validations/cache", {**CONTEXT, "execution_domain": "mars", "result": "valid",
                                                         "metrics": {}})):
        r = c.post(path, json=body)
        assert r.status_code == 422 and "unknown execution_domain" in r.json()["detail"]
    assert c.delete("/worlds/w1/validations/n1", params={"execution_domain": "mars"}).status_code == 422
    assert c.post("/worlds/w1/validations/cache", json={**CONTEXT, "result": "maybe", "metrics": {}}).status_code == 422
    assert c.post("/worlds/w1/validations/cache/lookup", json={"node_id": "n1"}).status_code == 422
    assert c.post("/worlds/w1/validations/cache", json={**CONTEXT, "result": "valid", "metrics": {},
                                                        "timestamp": "yesterday"}).status_code == 422


TRIGGERS = {
    "policy added": lambda c: c.post("/worlds/w1/policies", json={"preset": "sandbox"}),
    "set-default": lambda c: c.post("/worlds/w1/set-default", json={"version": 1}),
    "contract_id": lambda c: c.put("/worlds/w1", json={"contract_id": "contract-b"}),
    "dataset_fingerprint": lambda c: c.put("/worlds/w1", json={"dataset_fingerprint": "ds-2026"}),
    "resource_policy": lambda c: c.put("/worlds/w1", json={"resource_policy": "gpu:1"}),
    "code_version": lambda c: c.put("/worlds/w1", json={"code_version": "v2"}),
    "world delete": lambda c: (c.delete("/worlds/w1", params={"force": "true"}), c.post("/worlds", json={"id": "w1"})),
}
REASONS = {"policy added": "policy_added", "set-default": "default_policy_set", "world delete": "world_deleted"}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_every_world_level_trigger_empties_the_cache(wvg: Harness, harness_factory, trigger: str) -> None:
    _world(wvg)
    c = wvg.client
    c.post("/worlds/w1/policies", json={"preset": "moderate"})  # before anything is cached: invalidates nothing
    _store(wvg)
    _store(wvg, node_id="n2")
    TRIGGERS[trigger](c)
    assert (_lookup(wvg)["cached"], _lookup(wvg, node_id="n2")["cached"]) == (False, False)
    [entry] = [e["result"] for e in _audit(wvg) if e["event"] == "validation_cache_invalidated"]
    assert entry["reason"] == REASONS.get(trigger, "world_context_changed") and entry["entries"] == 2
    if trigger in ("contract_id", "dataset_fingerprint", "resource_policy", "code_version"):
        assert entry["fields"] == [trigger]
    restarted = _restart(wvg, harness_factory)  # and it stays empty in SQL
    assert _lookup(restarted)["cached"] is False


def test_world_updates_that_leave_the_context_alone_keep_the_cache(wvg: Harness) -> None:
    _world(wvg)
    wvg.client.put("/worlds/w1", json={"contract_id": "contract-a"})
    _store(wvg)
    for body in ({"name": "renamed"}, {"labels": ["x"], "allow_live": True}, {"contract_id": "contract-a"}):
        assert wvg.client.put("/worlds/w1", json=body).status_code == 200
    assert _lookup(wvg)["cached"] is True
    assert not [e for e in _audit(wvg) if e["event"] == "validation_cache_invalidated"]


def test_nodes_survive_a_restart(wvg: Harness, harness_factory) -> None:
    _world(wvg)
    wvg.client.put("/worlds/w1/nodes/n1", json={"status": "valid", "execution_domain": "live", "annotations": {"k": "v"}})
    restarted = _restart(wvg, harness_factory)
    node = restarted.client.get("/worlds/w1/nodes/n1", params={"execution_domain": "live"}).json()
    assert (node["status"], node["annotations"]) == ("valid", {"k": "v"})
