"""``GET /worlds/{id}/validations/invariants``: the reference's report shape (fact sheet §1.7), the fail-closed
invariant read from the world's metadata and its default policy, and the validation-cache delete of a node
that happens to be named ``invariants``, which the static route must not shadow."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import msgspec

from domain.handle import answer
from domain.state import WorldState
from messages.commands import GetValidationInvariants, external_command_decoder
from messages.worlds import WorldRecord
from tests.conftest import Harness, make_config

PATH = "/worlds/w1/validations/invariants"
REPORT_FIELDS = {"ok", "live_status_failures", "live_policy_version_mismatches", "fail_closed_violations",
                 "approved_overrides", "validation_health_gaps"}
CRITICAL = {"risk_profile": {"tier": "high", "client_critical": True}}
CONTEXT = {"execution_domain": "live", "contract_id": "c", "dataset_fingerprint": "d", "code_version": "v",
           "resource_policy": "r"}


def _world(api: Harness, metadata: dict[str, Any] | None = None) -> None:
    r = api.client.post("/worlds", json={"id": "w1", "metadata": metadata or {}})
    assert r.status_code == 201, r.text


def _report(api: Harness, **params: str) -> dict[str, Any]:
    r = api.client.get(PATH, params=params)
    assert r.status_code == 200, r.text
    assert set(r.json()) == REPORT_FIELDS
    return r.json()


def _violation(on_error: str, on_missing_metric: str) -> dict[str, str]:
    return {"world_id": "w1", "on_error": on_error, "on_missing_metric": on_missing_metric}


def test_unknown_world_is_404(api: Harness) -> None:
    r = api.client.get("/worlds/nope/validations/invariants")
    assert r.status_code == 404 and r.json() == {"detail": "world not found"}


def test_an_ordinary_world_is_ok_and_the_read_writes_nothing(api: Harness) -> None:
    _world(api)
    audited = len(api.client.get("/worlds/w1/audit").json())
    report = _report(api)
    assert report == {"ok": True, **{field: [] for field in REPORT_FIELDS - {"ok"}}}
    assert _report(api, strategy_id="s1") == report  # no evaluation runs: nothing per strategy either
    assert len(api.client.get("/worlds/w1/audit").json()) == audited


def test_a_high_tier_client_critical_world_must_fail_closed(api: Harness) -> None:
    _world(api, CRITICAL)
    report = _report(api)  # no default policy: no validation modes declared
    assert report["ok"] is False and report["fail_closed_violations"] == [_violation("<unset>", "<unset>")]
    r = api.client.post("/worlds/w1/policies", json={"policy": {"validation": {"on_error": "warn"}}})
    assert r.status_code == 200  # the first version becomes the default
    assert _report(api)["fail_closed_violations"] == [_violation("warn", "fail")]
    assert api.client.post("/worlds/w1/policies", json={"policy": {}}).json() == {"version": 2}
    assert _report(api)["fail_closed_violations"] == [_violation("warn", "fail")]  # v2 is not the default yet
    assert api.client.post("/worlds/w1/set-default", json={"version": 2}).status_code == 200
    assert _report(api)["ok"] is True  # the policy defaults are fail / fail


def test_only_high_tier_and_client_critical_together_require_fail_closed(api: Harness) -> None:
    _world(api, {"risk_profile": {"tier": "HIGH"}, "client_critical": True})  # critical beside the profile
    assert _report(api)["fail_closed_violations"] == [_violation("<unset>", "<unset>")]
    for metadata in ({"risk_profile": {"tier": "high"}}, {"risk_profile": {"tier": "low", "client_critical": True}},
                     {"risk_profile": "high", "client_critical": True}):
        assert api.client.put("/worlds/w1", json={"metadata": metadata}).status_code == 200
        assert _report(api)["ok"] is True, metadata


def test_the_report_survives_a_restart(harness_factory, api: Harness) -> None:
    _world(api, CRITICAL)
    api.client.post("/worlds/w1/policies", json={"policy": {"validation": {"on_missing_metric": "ignore"}}})
    before = _report(api)
    api.runtime.close()
    assert _report(harness_factory(api.config)) == before


def test_a_node_named_invariants_still_has_its_cache_entry_deleted(api: Harness) -> None:
    _world(api)
    c = api.client
    stored = c.post("/worlds/w1/validations/cache",
                    json={"node_id": "invariants", **CONTEXT, "result": "valid", "metrics": {}})
    assert stored.status_code == 200 and stored.json()["cached"] is True
    lookup = {"node_id": "invariants", **CONTEXT}
    assert c.post("/worlds/w1/validations/cache/lookup", json=lookup).json()["cached"] is True
    assert c.delete(PATH, params={"execution_domain": "mars"}).status_code == 422
    assert c.delete(PATH).status_code == 204
    assert c.post("/worlds/w1/validations/cache/lookup", json=lookup).json()["cached"] is False
    assert c.delete("/worlds/nope/validations/invariants").status_code == 404
    assert c.post(PATH).status_code == 405


def test_the_query_is_pure_and_decodes_from_the_command_topic() -> None:
    command = external_command_decoder.decode(b'{"kind": "get_validation_invariants", "world_id": "w1"}')
    assert command == GetValidationInvariants(world_id="w1")
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    state = WorldState(world_id="w1", world=WorldRecord(id="w1", metadata=CRITICAL))
    outcome = answer(state, command, now)
    assert outcome.effects == [] and outcome.state is state
    assert msgspec.to_builtins(outcome.reply)["fail_closed_violations"] == [_violation("<unset>", "<unset>")]


def test_the_run_based_invariants_name_the_runs_that_break_them(harness_factory, tmp_path, sql_dsn: str) -> None:
    api = harness_factory(make_config(tmp_path, sql_dsn))  # SQLite and PostgreSQL
    _world(api, CRITICAL)
    policy = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}},
              "validation": {"on_error": "fail", "on_missing_metric": "fail"}}
    assert api.client.post("/worlds/w1/policies", json={"policy": policy}).status_code == 200
    for sid, run_id, sharpe in (("s1", "old", 2.0), ("s1", "new", 0.1), ("s2", "ok", 2.0)):
        body = {"strategy_id": sid, "run_id": run_id, "stage": "live",
                "metrics": {sid: {"sharpe": sharpe, "n_trades_total": 50}}}
        assert api.client.post("/worlds/w1/evaluate", json=body).status_code == 200
    approval = {"status": "approved", "reason": "desk sign-off", "actor": "alice", "timestamp": "2026-01-01T00:00:00Z"}
    assert api.client.post("/worlds/w1/strategies/s2/runs/ok/override", json=approval).status_code == 200
    report = _report(api)
    assert report["ok"] is False and report["fail_closed_violations"] == []
    statuses = {(f["strategy_id"], f["run_id"], f["status"]) for f in report["live_status_failures"]}
    assert ("s1", "new", "fail") in statuses and all(run_id != "old" for _, run_id, _ in statuses)
    assert report["live_policy_version_mismatches"] == []
    [override] = report["approved_overrides"]
    assert (override["run_id"], override["review_window_days"], override["review_due_at"]) == (
        "ok", 30, "2026-01-31T00:00:00Z")
    assert override["missing_fields"] == [] and override["review_overdue"] is True
    assert report["validation_health_gaps"] == []
    narrowed = _report(api, strategy_id="s2")
    assert narrowed["live_status_failures"] == [] or all(
        f["strategy_id"] == "s2" for f in narrowed["live_status_failures"])
    assert [o["strategy_id"] for o in narrowed["approved_overrides"]] == ["s2"]
    assert api.client.post("/worlds/w1/policies", json={"policy": policy}).status_code == 200
    assert api.client.post("/worlds/w1/set-default", json={"version": 2}).status_code == 200
    mismatched = {(m["strategy_id"], m["policy_version"], m["required_policy_version"])
                  for m in _report(api)["live_policy_version_mismatches"]}
    assert mismatched == {("s1", "1", 2), ("s2", "1", 2)}
