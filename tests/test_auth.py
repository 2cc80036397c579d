"""Authentication and world roles: every route's role enforced, bad tokens refused, 401 vs 403."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Harness, make_config

SECRET = "test-secret-that-is-long-enough-for-hs256"
ISSUER, AUDIENCE = "https://issuer.test", "worldservice"
SERVICE_TOKEN = "gateway-service-token"


def token(roles: Any, sub: str = "alice", key: str = SECRET, algorithm: str = "HS256", **claims: Any) -> str:
    body = {"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300, "roles": roles, **claims}
    return jwt.encode(body, key, algorithm=algorithm)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def secured(harness_factory, tmp_path) -> Harness:  # type: ignore[no-untyped-def]
    auth = {"jwt": {"algorithm": "HS256", "secret": SECRET, "issuer": ISSUER, "audience": AUDIENCE},
            "tokens": [SERVICE_TOKEN]}
    h = harness_factory(make_config(tmp_path, auth=auth))
    admin = bearer(token({"*": "owner"}, sub="admin"))
    assert h.client.post("/worlds", json={"id": "w1"}, headers=admin).status_code == 201
    assert h.client.post("/worlds", json={"id": "w2"}, headers=admin).status_code == 201
    h.client.post("/worlds/w1/policies", json={"preset": "moderate"}, headers=admin)
    h.client.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": True}, headers=admin)
    return h


VALIDATION = {"node_id": "n1", "execution_domain": "live", "contract_id": "c", "dataset_fingerprint": "d",
              "code_version": "v", "resource_policy": "r"}
# (method, path, body, least role) for every route that names a world
ROUTES = [
    ("GET", "/worlds/w1", None, "reader"),
    ("GET", "/worlds/w1/describe", None, "reader"),
    ("GET", "/worlds/w1/audit", None, "reader"),
    ("GET", "/worlds/w1/history", None, "reader"),
    ("GET", "/worlds/w1/policies", None, "reader"),
    ("GET", "/worlds/w1/policies/1", None, "reader"),
    ("GET", "/worlds/w1/policies/1/meta", None, "reader"),
    ("GET", "/worlds/w1/bindings", None, "reader"),
    ("GET", "/worlds/w1/decisions", None, "reader"),
    ("GET", "/worlds/w1/decide", None, "reader"),
    ("GET", "/worlds/w1/decide/history", None, "reader"),
    ("GET", "/worlds/w1/activation?strategy_id=s1&side=long", None, "reader"),
    ("GET", "/worlds/w1/activation/state_hash", None, "reader"),
    ("POST", "/worlds/w1/evaluate", {"metrics": {}}, "operator"),
    ("GET", "/worlds/w1/apply/none", None, "reader"),
    ("GET", "/worlds/w1/nodes", None, "reader"),
    ("GET", "/worlds/w1/nodes/n1?execution_domain=live", None, "reader"),
    ("GET", "/worlds/w1/edges/overrides", None, "reader"),
    ("POST", "/worlds/w1/validations/cache/lookup", {**VALIDATION, "code_version": "other"}, "reader"),
    ("GET", "/worlds/w1/validations/invariants", None, "reader"),
    ("GET", "/worlds/w1/campaign/status", None, "reader"),
    ("POST", "/worlds/w1/campaign/tick", None, "reader"),
    ("GET", "/worlds/w1/live-monitoring/report", None, "reader"),
    ("POST", "/worlds/w1/live-monitoring/run", None, "operator"),
    ("PUT", "/worlds/w1/activation", {"strategy_id": "s1", "side": "long", "active": False}, "operator"),
    ("POST", "/worlds/w1/apply", {"run_id": "r-{n}", "plan": {"activate": ["s1"]}}, "operator"),
    ("POST", "/worlds/w1/history", {"strategy_id": "s1"}, "operator"),
    ("PUT", "/worlds/w1/nodes/n1", {"status": "valid", "execution_domain": "live"}, "operator"),
    ("DELETE", "/worlds/w1/nodes/n1?execution_domain=live", None, "operator"),
    ("PUT", "/worlds/w1/edges/domain:backtest/domain:live", {"active": False}, "operator"),
    ("POST", "/worlds/w1/validations/cache", {**VALIDATION, "result": "valid", "metrics": {}}, "operator"),
    ("DELETE", "/worlds/w1/validations/n1", None, "operator"),
    ("DELETE", "/worlds/w1/validations/invariants", None, "operator"),
    ("GET", "/worlds/w1/promotions/live/plan?strategy_id=s1&run_id=r1", None, "reader"),
    ("GET", "/worlds/w1/promotions/live/candidates", None, "reader"),
    ("POST", "/worlds/w1/promotions/live/apply", {"strategy_id": "s1", "run_id": "r1", "apply_run_id": "p-{n}"},
     "operator"),
    ("POST", "/worlds/w1/promotions/live/auto-apply", None, "operator"),
    ("POST", "/worlds/w1/promotions/live/approve", {"strategy_id": "s1", "run_id": "r1", "reason": "ok", "actor": "x"},
     "owner"),
    ("POST", "/worlds/w1/promotions/live/reject", {"strategy_id": "s1", "run_id": "r1"}, "owner"),
    ("PUT", "/worlds/w1", {"name": "renamed"}, "owner"),
    ("POST", "/worlds/w1/policies", {"preset": "sandbox"}, "owner"),
    ("POST", "/worlds/w1/set-default", {"version": 1}, "owner"),
    ("POST", "/worlds/w1/bindings", {"strategies": ["s1"]}, "owner"),
    ("POST", "/worlds/w1/decisions", {"strategies": ["s1"]}, "owner"),
    ("DELETE", "/worlds/w1?force=true", None, "owner"),
    ("POST", "/risk-hub/worlds/w1/snapshots", {"as_of": "2026-03-02T09:00:00Z", "version": "v1", "weights": {"s1": 1}},
     "operator"),
]
RANK = {"none": 0, "reader": 1, "operator": 2, "owner": 3}
CALLERS = {
    "none": None,
    "reader": {"w1": ["reader"]},
    "operator": ["operator:w1"],
    "owner": {"w1": "owner"},
    "owner-of-w2": {"w2": ["owner"]},
}


def _expected(caller: str, role: str) -> str:
    if caller == "none":
        return "401"
    return "allowed" if RANK.get(caller, 0) >= RANK[role] else "403"


def _outcome(status: int) -> str:
    return str(status) if status in (401, 403) else "allowed"


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_every_route_enforces_its_role(secured: Harness, caller: str) -> None:
    headers = bearer(token(CALLERS[caller])) if CALLERS[caller] is not None else {}
    for n, (method, path, body, role) in enumerate(ROUTES):
        if method == "DELETE" and RANK.get(caller, 0) >= RANK["owner"]:
            continue  # would remove the world the other rows use; covered below
        json_body = {k: (v.format(n=n) if isinstance(v, str) else v) for k, v in body.items()} if body else None
        r = secured.client.request(method, path, json=json_body, headers=headers)
        assert _outcome(r.status_code) == _expected(caller, role), (caller, method, path, r.status_code, r.text)
        if r.status_code == 401:
            assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_owner_may_delete_and_create_only_its_worlds(secured: Harness) -> None:
    owner = bearer(token({"w1": "owner", "w9": "owner"}))
    assert secured.client.post("/worlds", json={"id": "w9"}, headers=owner).status_code == 201
    assert secured.client.post("/worlds", json={"id": "w8"}, headers=owner).status_code == 403
    assert secured.client.delete("/worlds/w2?force=true", headers=owner).status_code == 403
    assert secured.client.delete("/worlds/w1?force=true", headers=owner).status_code == 204


@pytest.mark.parametrize("bad", ["expired", "wrong_audience", "wrong_issuer", "unsigned", "wrong_key",
                                 "no_sub", "garbage", "basic"])
def test_bad_tokens_are_401(secured: Harness, bad: str) -> None:
    roles = {"*": "owner"}
    headers = {
        "expired": bearer(token(roles, exp=int(time.time()) - 3600)),
        "wrong_audience": bearer(token(roles, aud="someone-else")),
        "wrong_issuer": bearer(token(roles, iss="https://evil.test")),
        "unsigned": bearer(jwt.encode({"sub": "a", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60,
                                       "roles": roles}, key=None, algorithm="none")),
        "wrong_key": bearer(token(roles, key="another-secret-that-is-long-enough-too")),
        "no_sub": bearer(jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "roles": roles},
                                    SECRET, algorithm="HS256")),
        "garbage": bearer("not.a.jwt"),
        "basic": {"Authorization": "Basic YWxpY2U6cHc="},
    }[bad]
    assert secured.client.get("/worlds/w1", headers=headers).status_code == 401


def test_health_and_metrics_are_open_and_the_rest_is_not(secured: Harness) -> None:
    for path in ("/healthz", "/health", "/readyz", "/metrics"):
        assert secured.client.get(path).status_code == 200, path
    for path in ("/worlds", "/openapi.json", "/policies/presets"):
        assert secured.client.get(path).status_code == 401, path


def test_world_list_shows_only_readable_worlds_and_the_service_token_reads_all(secured: Harness) -> None:
    only_w2 = secured.client.get("/worlds", headers=bearer(token({"w2": "reader"})))
    assert [w["id"] for w in only_w2.json()] == ["w2"]
    service = bearer(SERVICE_TOKEN)
    assert [w["id"] for w in secured.client.get("/worlds", headers=service).json()] == ["w1", "w2"]
    assert secured.client.get("/worlds/w1/decide", headers=service).status_code == 200
    write = secured.client.put("/worlds/w1/activation", json={"strategy_id": "s1", "side": "long", "active": False},
                               headers=service)
    assert write.status_code == 403


def test_audit_records_the_verified_subject_not_a_claimed_header(secured: Harness) -> None:
    headers = {**bearer(token({"w1": "operator"}, sub="carol")), "X-Caller-Sub": "mallory",
               "X-Correlation-ID": "corr-42"}
    body = {"strategy_id": "s1", "side": "long", "active": False}
    assert secured.client.put("/worlds/w1/activation", json=body, headers=headers).status_code == 200
    entries = secured.client.get("/worlds/w1/audit", headers=bearer(token({"w1": "reader"}))).json()
    assert (entries[-1]["actor"], entries[-1]["correlation_id"]) == ("carol", "corr-42")


def test_es256_public_key_tokens(harness_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    auth = {"jwt": {"algorithm": "ES256", "public_key": public_pem, "issuer": ISSUER, "audience": AUDIENCE}}
    h = harness_factory(make_config(tmp_path, auth=auth))
    good = token({"*": "owner"}, key=private, algorithm="ES256")  # type: ignore[arg-type]
    assert h.client.post("/worlds", json={"id": "e1"}, headers=bearer(good)).status_code == 201
    forged = token({"*": "owner"}, key=SECRET, algorithm="HS256")  # algorithm confusion must not pass
    assert h.client.get("/worlds/e1", headers=bearer(forged)).status_code == 401


def test_allocations_need_operator_on_every_touched_world(secured: Harness) -> None:
    body = {"run_id": "a1", "total_equity": 1000, "world_allocations": {"w1": 0.5, "w2": 0.5}, "positions": []}
    only_w1 = secured.client.post("/allocations", json=body, headers=bearer(token({"w1": "operator"})))
    assert only_w1.status_code == 403
    both = secured.client.post("/allocations", json=body, headers=bearer(token(["operator:w1", "operator:w2"])))
    assert both.status_code == 200, both.text
    assert secured.client.get("/allocations", headers=bearer(token({"w2": "reader"}))).json()["allocations"].keys() == {"w2"}


def test_live_monitoring_of_every_world_needs_operator_on_every_world(secured: Harness) -> None:
    path = "/worlds/live-monitoring/run-all"
    assert secured.client.post(path).status_code == 401
    for roles in ({"w1": "operator", "w2": "operator"}, {"*": "reader"}):
        assert secured.client.post(path, headers=bearer(token(roles))).status_code == 403, roles
    everywhere = secured.client.post(path, headers=bearer(token({"*": "operator"})))
    assert (everywhere.status_code, everywhere.json()) == (200, {"results": {"w1": 0, "w2": 0}})


def test_a_gateway_service_token_pushes_risk_snapshots_by_default_and_readers_do_not(secured: Harness) -> None:
    """The default ``service_role`` is ``reader``: the service token still pushes (its job), writes nothing else."""
    body = {"as_of": "2026-03-02T09:00:00Z", "version": "v1", "weights": {"s1": 0.5, "s2": 0.5}}
    who = {"X-Actor": "gateway", "X-Stage": "live"}

    def push(headers: dict[str, str]) -> Any:
        return secured.client.post("/risk-hub/worlds/w1/snapshots", json=body, headers={**who, **headers})

    pushed = push(bearer(SERVICE_TOKEN))
    assert pushed.status_code == 200, pushed.text
    assert pushed.json()["provenance"] == {"actor": "gateway", "stage": "live"}
    assert push(bearer(token({"w1": "reader"}))).status_code == 403
    assert push(bearer(token({"*": "reader"}))).status_code == 403
    assert push({}).status_code == 401
    assert push(bearer(token({"w1": "operator"}))).status_code == 200  # the same content again: the stored one
    latest = secured.client.get("/risk-hub/worlds/w1/snapshots/latest", headers=bearer(SERVICE_TOKEN))
    assert latest.json()["version"] == "v1"
    evaluate = secured.client.post("/worlds/w1/evaluate", json={"metrics": {}}, headers=bearer(SERVICE_TOKEN))
    assert evaluate.status_code == 403  # the exemption is the push only, not the other operator writes
