"""Activation over HTTP on every storage combination: etags, preconditions, projection, restart, audit."""

from __future__ import annotations

from domain.activation import state_hash
from tests.conftest import make_config


def _world(api, world_id: str = "demo", **fields) -> None:  # type: ignore[no-untyped-def]
    assert api.client.post("/worlds", json={"id": world_id, **fields}).status_code == 201


def _put(api, world_id: str = "demo", **body):  # type: ignore[no-untyped-def]
    return api.client.put(f"/worlds/{world_id}/activation", json={"side": "long", "active": True, **body})


def test_put_and_get_with_etags(contract_api) -> None:
    _world(contract_api)
    first = _put(contract_api, strategy_id="s1", weight=0.6)
    assert first.status_code == 200
    assert first.json()["etag"] == first.headers["etag"] == "act:demo:s1:long:1"
    second = _put(contract_api, strategy_id="s1", weight=0.7)
    third = _put(contract_api, strategy_id="s2", side="short", active=False, weight=0.0, freeze=True, drain=True,
                 effective_mode="paper", run_id="manual-1", ts="2025-01-01T00:00:00Z")
    assert [second.json()["etag"], third.json()["etag"]] == ["act:demo:s1:long:2", "act:demo:s2:short:3"]
    got = contract_api.client.get("/worlds/demo/activation", params={"strategy_id": "s2", "side": "short"})
    assert got.json() | {"state_hash": None} == third.json() | {"state_hash": None}
    assert got.headers["etag"] == "act:demo:s2:short:3"
    missing = contract_api.client.get("/worlds/demo/activation", params={"strategy_id": "zzz", "side": "long"})
    assert (missing.status_code, missing.json()) == (404, {"detail": "activation not found"})


def test_if_none_match_and_if_match(contract_api) -> None:
    _world(contract_api)
    etag = _put(contract_api, strategy_id="s1").headers["etag"]
    params = {"strategy_id": "s1", "side": "long"}
    for header in (etag, f'"{etag}"', f'W/"{etag}", "other"', "*"):
        r = contract_api.client.get("/worlds/demo/activation", params=params, headers={"If-None-Match": header})
        assert r.status_code == 304 and r.headers["etag"] == etag
    stale = contract_api.client.put("/worlds/demo/activation", headers={"If-Match": "act:demo:s1:long:0"},
                                    json={"strategy_id": "s1", "side": "long", "active": False})
    assert stale.status_code == 412
    fresh = contract_api.client.put("/worlds/demo/activation", headers={"If-Match": etag},
                                    json={"strategy_id": "s1", "side": "long", "active": False})
    assert fresh.status_code == 200 and fresh.json()["active"] is False
    r = contract_api.client.get("/worlds/demo/activation", params=params, headers={"If-None-Match": etag})
    assert r.status_code == 200


def test_omitted_fields_keep_stored_values(contract_api) -> None:
    _world(contract_api)
    _put(contract_api, strategy_id="s1", weight=0.3, freeze=True, drain=True, effective_mode="paper")
    body = _put(contract_api, strategy_id="s1", active=True).json()
    assert (body["weight"], body["freeze"], body["drain"], body["effective_mode"]) == (0.3, True, True, "paper")
    assert _put(contract_api, strategy_id="s2").json()["weight"] == 1.0


def test_live_needs_allow_live_and_a_validated_switch(contract_api) -> None:
    _world(contract_api)
    refused = _put(contract_api, strategy_id="s1", effective_mode="live")
    assert refused.status_code == 409 and "allow_live_disabled" in refused.json()["detail"]
    contract_api.client.put("/worlds/demo", json={"allow_live": True})
    # allow_live alone is not enough: only a validated Switch makes a world live (seed §0 Default-safe).
    refused = _put(contract_api, strategy_id="s1", effective_mode="live")
    assert refused.status_code == 409 and "execution_domain_not_live" in refused.json()["detail"]
    gating = {"dataset_fingerprint": "fp-1", "share_policy": "feature-artifacts-only",
              "snapshot": {"strategy_plane": "cow", "feature_plane": "readonly"}, "domains": {"to": "live"},
              "edges": {"pre_promotion": {"disable_edges_to": "live"}, "post_promotion": {}}}
    applied = contract_api.client.post("/worlds/demo/apply", json={"run_id": "r1", "gating_policy": gating,
                                                                    "plan": {"activate": ["s1"]}})
    assert applied.status_code == 200, applied.text
    assert _put(contract_api, strategy_id="s1", effective_mode="live").status_code == 200


def test_state_hash_agrees_with_projection_and_survives_restart(contract_api, harness_factory, tmp_path) -> None:
    _world(contract_api)
    for i in range(5):
        _put(contract_api, strategy_id=f"s{i % 3}", weight=i / 10)
    served = contract_api.client.get("/worlds/demo/activation/state_hash").json()["state_hash"]
    assert served.startswith("blake3:") and _put(contract_api, strategy_id="s9").json()["state_hash"] != served
    served = contract_api.client.get("/worlds/demo/activation/state_hash").json()["state_hash"]
    counter, entries = contract_api.system.projection.get("demo").get()
    assert state_hash(counter, entries) == served
    assert contract_api.client.get("/worlds/demo/policy/state_hash").status_code == 400
    config = contract_api.config
    contract_api.runtime.close()
    restarted = harness_factory(config)
    assert restarted.client.get("/worlds/demo/activation/state_hash").json()["state_hash"] == served
    assert _put(restarted, strategy_id="s1").json()["etag"] == "act:demo:s1:long:7"


def test_etags_are_never_reused_after_delete_and_recreate(contract_api) -> None:
    _world(contract_api)
    _put(contract_api, strategy_id="s1", active=False)
    assert contract_api.client.delete("/worlds/demo").status_code == 204
    _world(contract_api)
    assert _put(contract_api, strategy_id="s1").json()["etag"] == "act:demo:s1:long:2"
    assert contract_api.system.projection.get("demo").get()[0] == 2


def test_audit_records_caller_and_paginates(contract_api) -> None:
    _world(contract_api)
    for i in range(7):
        r = contract_api.client.put("/worlds/demo/activation", json={"strategy_id": f"s{i}", "side": "long",
                                                                     "active": True},
                                    headers={"X-Correlation-ID": f"corr-{i}", "X-Caller-Sub": "ops@desk"})
        assert r.headers["x-correlation-id"] == f"corr-{i}"
    seen, after = [], 0
    while True:
        page = contract_api.client.get("/worlds/demo/audit", params={"after": after, "limit": 3})
        seen += page.json()
        if "x-next-after" not in page.headers:
            break
        after = int(page.headers["x-next-after"])
    assert [e["event"] for e in seen] == ["world_created"] + ["activation_updated"] * 7
    last = seen[-1]
    assert (last["actor"], last["correlation_id"], last["result"]["etag"]) == ("ops@desk", "corr-6", "act:demo:s6:long:7")
    assert last["request"]["strategy_id"] == "s6"
    oversized = contract_api.client.put("/worlds/demo/activation", headers={"X-Correlation-ID": "c" * 5000},
                                        json={"strategy_id": "s1", "side": "long", "active": True})
    assert oversized.status_code == 200 and len(oversized.headers["x-correlation-id"]) == 32


def test_activation_events_reach_the_bus_in_order(contract_api) -> None:
    _world(contract_api)
    for weight in (0.1, 0.2, 0.3):
        _put(contract_api, strategy_id="s1", weight=weight)
    contract_api.system.relay_now()
    events = contract_api.bus.of_type("activation_updated")
    assert [e.event["data"]["weight"] for e in events] == [0.1, 0.2, 0.3]
    data = events[-1].event["data"]
    assert (events[-1].topic, events[-1].key, data["version"], data["run_id"]) == ("activation", "demo", 1, "")
    assert data["idempotency_key"] == "activation_updated:demo:act:demo:s1:long:3::3"
    assert events[-1].event["specversion"] == "1.0"
    assert contract_api.system.relay.proxy().pending_count().get() == 0


def test_projection_is_rebuilt_from_the_audit_log(contract_api) -> None:
    _world(contract_api, "a")
    _world(contract_api, "b")
    for wid in ("a", "b", "a"):
        _put(contract_api, wid, strategy_id="s1", weight=0.5)
    expected = {w: contract_api.client.get(f"/worlds/{w}/activation/state_hash").json()["state_hash"] for w in "ab"}
    contract_api.system.projection.flush_all().get()
    assert contract_api.system.projection.get("a").get() is None
    assert contract_api.system.rebuild_projection_from_audit() == 2
    for wid in "ab":
        assert state_hash(*contract_api.system.projection.get(wid).get()) == expected[wid]


def test_startup_check_repairs_a_diverged_projection(harness_factory, tmp_path) -> None:
    h = harness_factory(make_config(tmp_path))
    _world(h)
    _put(h, strategy_id="s1")
    h.system.projection.delete("demo").get()
    assert h.system.verify_projection() == ["demo"]
    assert h.system.verify_projection() == []
