"""World registry, policies, bindings, decisions and decide over HTTP, on every storage combination."""

from __future__ import annotations


def _create(api, world_id: str = "demo", **fields):  # type: ignore[no-untyped-def]
    r = api.client.post("/worlds", json={"id": world_id, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def test_create_get_list_and_duplicate_is_409(contract_api) -> None:
    created = _create(contract_api, "demo", name="Demo World", labels=["ref", "demo"], owner="research")
    assert created["created_at"] and created["created_at"].endswith("Z")
    assert (created["state"], created["allow_live"], created["default_policy_version"]) == ("ACTIVE", False, None)
    _create(contract_api, "alpha")
    dup = contract_api.client.post("/worlds", json={"id": "demo", "name": "Dup"})
    assert dup.status_code == 409
    assert contract_api.client.get("/worlds/demo").json()["name"] == "Demo World"
    assert [w["id"] for w in contract_api.client.get("/worlds").json()] == ["alpha", "demo"]


def test_unknown_world_is_404_everywhere(contract_api) -> None:
    c = contract_api.client
    for method, path in [("get", "/worlds/nope"), ("get", "/worlds/nope/describe"), ("get", "/worlds/nope/decide"),
                         ("get", "/worlds/nope/activation/state_hash"), ("get", "/worlds/nope/audit"),
                         ("get", "/worlds/nope/policies"), ("delete", "/worlds/nope")]:
        r = getattr(c, method)(path)
        assert r.status_code == 404, (path, r.text)
        assert r.json() == {"detail": "world not found"}
    r = c.put("/worlds/nope", json={"name": "x"})
    assert r.status_code == 404
    r = c.put("/worlds/nope/activation", json={"strategy_id": "s1", "side": "long", "active": True})
    assert r.status_code == 404


def test_put_changes_only_fields_sent(contract_api) -> None:
    _create(contract_api, "demo", name="Demo", labels=["a"], allow_live=True, description="keep me")
    r = contract_api.client.put("/worlds/demo", json={"name": "Renamed"})
    assert r.status_code == 200
    world = contract_api.client.get("/worlds/demo").json()
    assert (world["name"], world["labels"], world["allow_live"], world["description"]) == \
        ("Renamed", ["a"], True, "keep me")


def test_put_with_other_id_is_refused(contract_api) -> None:
    _create(contract_api, "demo")
    r = contract_api.client.put("/worlds/demo", json={"id": "other", "name": "x"})
    assert r.status_code == 422
    assert contract_api.client.get("/worlds/demo").json()["name"] is None


def test_delete_refuses_active_world_unless_forced(contract_api) -> None:
    _create(contract_api, "demo")
    contract_api.client.put("/worlds/demo/activation", json={"strategy_id": "s1", "side": "long", "active": True})
    assert contract_api.client.delete("/worlds/demo").status_code == 409
    assert contract_api.client.delete("/worlds/demo?force=true").status_code == 204
    assert contract_api.client.get("/worlds/demo").status_code == 404
    events = [e["event"] for e in contract_api.client.get("/worlds/demo/audit").json()]
    assert events[-1] == "world_deleted"


def test_policies_versions_default_and_describe(contract_api) -> None:
    _create(contract_api, "demo")
    c = contract_api.client
    p1 = {"policy": {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}, "top_k": {"metric": "sharpe", "k": 2}}}
    assert c.post("/worlds/demo/policies", json=p1).json() == {"version": 1}
    assert c.post("/worlds/demo/policies", json={"preset": "Moderate", "preset_overrides": {"sharpe.min": 0.9}}
                  ).json() == {"version": 2}
    assert c.get("/worlds/demo/policies").json() == [{"version": 1}, {"version": 2}]
    doc = c.get("/worlds/demo/policies/1").json()
    assert doc["thresholds"]["sharpe"] == {"metric": "sharpe", "min": 0.5, "max": None}
    assert doc["selection"]["top_k"] == {"metric": "sharpe", "k": 2}
    assert doc["validation"] == {"on_error": "fail", "on_missing_metric": "fail"}
    assert c.get("/worlds/demo/policies/9").status_code == 404
    assert c.get("/worlds/demo").json()["default_policy_version"] == 1  # the first version is the default
    assert c.post("/worlds/demo/set-default", json={"version": 2}).json() == {"version": 2}
    described = c.get("/worlds/demo/describe").json()
    assert (described["default_policy_version"], described["policy_preset"]) == (2, "moderate")
    assert described["policy_overrides"] == {"sharpe.min": 0.9}
    assert "sharpe >= 0.9" in described["policy_human"]
    meta1, meta2 = c.get("/worlds/demo/policies/1/meta").json(), c.get("/worlds/demo/policies/2/meta").json()
    assert (meta1["status"], meta2["status"]) == ("DEPRECATED", "ACTIVE")
    assert meta1["checksum"].startswith("blake3:") and not meta1["checksum"].startswith("blake3:blake3:")
    assert c.post("/worlds/demo/set-default?v=1").json() == {"version": 1}
    assert c.post("/worlds/demo/set-default", json={"version": 7}).status_code == 404
    assert c.get("/worlds/demo").json()["default_policy_version"] == 1


def test_policy_text_yaml_and_bad_policies(contract_api) -> None:
    _create(contract_api, "demo")
    c = contract_api.client
    assert c.post("/worlds/demo/policies", json={"policy": "top_k:\n  metric: sharpe\n  k: 3\n"}).status_code == 200
    assert c.post("/worlds/demo/policies", json={}).json() == {"detail": "policy is required"}
    assert c.post("/worlds/demo/policies", json={"preset": "nonsense"}).status_code == 422
    assert c.post("/worlds/demo/policies", json={"policy": {"top_k": {"metric": "s", "k": 0}}}).status_code == 422
    assert c.post("/worlds/demo/policies", json={"policy": "a: [unclosed"}).status_code == 422
    assert c.get("/worlds/demo/policies").json() == [{"version": 1}]


def test_bindings_merge_and_decisions_replace(contract_api) -> None:
    _create(contract_api, "demo")
    c = contract_api.client
    assert c.post("/worlds/demo/bindings", json={"strategies": ["s3", "s1", "s2"]}).json() == \
        {"strategies": ["s1", "s2", "s3"]}
    assert c.post("/worlds/demo/bindings", json={"strategies": ["s3", "s4"]}).json() == \
        {"strategies": ["s1", "s2", "s3", "s4"]}
    assert c.post("/worlds/demo/decisions", json={"strategies": ["s2", "s1", "s2"]}).json() == \
        {"strategies": ["s2", "s1"]}
    assert c.post("/worlds/demo/decisions", json={"strategies": ["s1"]}).json() == {"strategies": ["s1"]}
    assert c.get("/worlds/demo/decisions").json() == {"strategies": ["s1"]}
    assert c.post("/worlds/demo/decisions", json={"strategies": [" "]}).status_code == 422
    assert c.post("/worlds/demo/decisions", json={"strategies": ["s1"], "extra": 1}).status_code == 422
    assert c.get("/worlds/demo/bindings").json() == {"strategies": ["s1", "s2", "s3", "s4"]}


def test_decide_follows_the_reference_rules(contract_api) -> None:
    _create(contract_api, "demo")
    c = contract_api.client
    first = c.get("/worlds/demo/decide")
    assert (first.json()["effective_mode"], first.json()["reason"]) == ("validate", "no_bindings")
    assert first.headers["cache-control"] == "max-age=300"
    c.post("/worlds/demo/bindings", json={"strategies": ["s1"]})
    assert c.get("/worlds/demo/decide").json()["reason"] == "no_active_strategies"
    c.post("/worlds/demo/decisions", json={"strategies": ["s1"]})
    body = c.get("/worlds/demo/decide").json()
    assert body["effective_mode"] == "compute-only"
    assert body["reason"] == ("bindings_present & decisions_present & allow_live_disabled & "
                              "dataset_fingerprint_missing & required_metrics_missing")
    c.put("/worlds/demo", json={"allow_live": True})
    c.post("/worlds/demo/history", json={"strategy_id": "s1", "node_id": "n1", "interval": 60, "rows": 100,
                                          "dataset_fingerprint": "fp1", "as_of": "2025-01-01T00:00:00Z"})
    live = c.get("/worlds/demo/decide").json()
    assert (live["effective_mode"], live["dataset_fingerprint"], live["rows"]) == ("live", "fp1", 100)
    assert live["reason"].endswith("allow_live & dataset_fingerprint_ok & metrics_ok")
    before = c.get("/worlds/demo/decide?as_of=2024-06-01T00:00:00Z").json()  # no look-ahead
    assert before["effective_mode"] == "compute-only" and before["as_of"] == "2024-06-01T00:00:00Z"
    assert c.get("/worlds/demo/decide?as_of=yesterday").status_code == 422


def test_decide_reports_the_as_of_of_the_history_entry_it_read(api) -> None:
    c = api.client
    for wid in ("demo", "undated"):
        _create(api, wid)
        c.post(f"/worlds/{wid}/bindings", json={"strategies": ["s1"]})
        c.post(f"/worlds/{wid}/decisions", json={"strategies": ["s1"]})
    for sid, as_of in (("s1", "2025-01-01T00:00:00Z"), ("s2", "2025-03-01T00:00:00Z")):
        c.post("/worlds/demo/history", json={"strategy_id": sid, "node_id": "n", "interval": 60, "as_of": as_of})

    def decide(wid: str, **query: str) -> str:
        return c.get(f"/worlds/{wid}/decide", params=query).json()["as_of"]

    assert decide("demo", as_of="2025-02-15T00:00:00Z") == "2025-01-01T00:00:00Z"  # the entry, not T
    assert decide("demo") == "2025-03-01T00:00:00Z"
    assert decide("demo", as_of="2024-06-01T00:00:00Z") == "2024-06-01T00:00:00Z"  # no entry qualifies: T
    # an entry without as_of is reported by its artifact's as_of, as the reference does
    c.post("/worlds/undated/history", json={"strategy_id": "s1", "node_id": "n", "interval": 60,
                                             "artifact": {"as_of": "2025-02-01T00:00:00Z"}})
    assert decide("undated", as_of="2025-06-01T00:00:00Z") == "2025-02-01T00:00:00Z"


def test_decide_etag_changes_only_with_the_decision(contract_api) -> None:
    _create(contract_api, "demo")
    c = contract_api.client
    c.post("/worlds/demo/bindings", json={"strategies": ["s1"]})
    first, again = c.get("/worlds/demo/decide"), c.get("/worlds/demo/decide")
    assert first.json()["etag"] == again.json()["etag"] == first.headers["etag"]
    assert c.get("/worlds/demo/decide", headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    c.post("/worlds/demo/decisions", json={"strategies": ["s1"]})
    assert c.get("/worlds/demo/decide").json()["etag"] != first.json()["etag"]


def test_history_round_trip(contract_api) -> None:
    _create(contract_api, "demo")
    c = contract_api.client
    assert c.get("/worlds/demo/history").json() == {"entries": [], "latest": None}
    for sid, as_of in (("s1", "2025-01-01T00:00:00Z"), ("s2", "2025-02-01T00:00:00Z")):
        r = c.post("/worlds/demo/history", json={"strategy_id": sid, "node_id": "n", "interval": 60, "as_of": as_of})
        assert r.status_code == 204
    body = c.get("/worlds/demo/history").json()
    assert [e["strategy_id"] for e in body["entries"]] == ["s1", "s2"] and body["latest"]["strategy_id"] == "s2"


def test_health_ready_metrics_and_openapi(api) -> None:
    c = api.client
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/health").status_code == 200
    assert c.get("/readyz").status_code == 200
    c.post("/worlds", json={"id": "demo"})
    api.system.relay_now()  # the reply can overtake the relay: the outbox is empty only once it has run
    metrics = c.get("/metrics").text
    assert 'worldservice_commands_total{kind="CreateWorld",status="2xx"} 1.0' in metrics
    assert "worldservice_resident_world_actors 1.0" in metrics
    assert "worldservice_outbox_pending 0.0" in metrics
    assert "worldservice_activation_projection_dirty_worlds 0.0" in metrics
    spec = c.get("/openapi.json").json()
    assert "/worlds/{world_id}/activation" in spec["paths"]
    assert "ActivationRequest" in spec["components"]["schemas"]
