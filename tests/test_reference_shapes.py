"""Our JSON carries every field the reference's clients read (captured reference exchanges, ../shared)."""

from __future__ import annotations

REFERENCE_WORLD_KEYS = {"id", "name", "description", "owner", "labels", "state", "allow_live", "circuit_breaker",
                        "default_policy_version", "created_at", "updated_at"}
REFERENCE_ACTIVATION_KEYS = {"world_id", "strategy_id", "side", "active", "weight", "freeze", "drain",
                             "effective_mode", "etag", "run_id", "ts", "state_hash", "phase", "requires_ack",
                             "sequence"}
REFERENCE_DECISION_KEYS = {"world_id", "policy_version", "effective_mode", "reason", "as_of", "ttl", "etag",
                           "dataset_fingerprint", "coverage_bounds", "conformance_flags", "conformance_warnings",
                           "history_updated_at", "rows", "artifact"}
REFERENCE_DESCRIBE_KEYS = REFERENCE_WORLD_KEYS | {"policy", "policy_preset", "policy_preset_mode",
                                                  "policy_preset_version", "policy_overrides", "policy_human"}
REFERENCE_POLICY_KEYS = {"thresholds", "top_k", "correlation", "hysteresis", "selection", "validation_profiles",
                         "default_profile_by_stage", "validation", "cohort", "portfolio", "benchmark", "stress",
                         "paper_shadow_consistency", "live_monitoring", "governance", "campaign"}


def test_response_shapes_cover_the_reference(api) -> None:
    c = api.client
    world = c.post("/worlds", json={"id": "demo", "name": "Demo World", "labels": ["ref", "demo"]}).json()
    assert REFERENCE_WORLD_KEYS <= world.keys()
    assert world["labels"] == ["ref", "demo"] and world["state"] == "ACTIVE"
    c.post("/worlds/demo/policies", json={"policy": {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}},
                                                      "top_k": {"metric": "sharpe", "k": 2}}})
    assert REFERENCE_POLICY_KEYS <= c.get("/worlds/demo/policies/1").json().keys()
    assert REFERENCE_DESCRIBE_KEYS <= c.get("/worlds/demo/describe").json().keys()
    put = c.put("/worlds/demo/activation", json={"strategy_id": "s1", "side": "long", "active": True, "weight": 0.6})
    assert put.json().keys() == REFERENCE_ACTIVATION_KEYS
    got = c.get("/worlds/demo/activation", params={"strategy_id": "s1", "side": "long"}).json()
    assert got.keys() == REFERENCE_ACTIVATION_KEYS and got["state_hash"] is None and got["sequence"] is None
    assert c.get("/worlds/demo/decide").json().keys() == REFERENCE_DECISION_KEYS
    assert c.get("/worlds/demo/activation/state_hash").json().keys() == {"state_hash"}
    assert c.post("/worlds/demo/bindings", json={"strategies": ["s1"]}).json() == {"strategies": ["s1"]}
    assert c.get("/worlds/nope").json() == {"detail": "world not found"}
    missing = c.put("/worlds/demo/activation", json={"strategy_id": "s1", "side": "long"}).json()
    assert missing["detail"][0]["type"] == "missing" and missing["detail"][0]["loc"] == ["body", "active"]
    assert missing["detail"][0]["msg"] == "Field required"
