"""The seed's small rules over HTTP: the bindings filter, the WSB root node, the whole activation set for a
Gateway's reconcile, and the refusal of timestamps beyond the tolerated client clock skew."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.conftest import FakeClock, Harness, make_config


def _world(h: Harness, world_id: str = "w1") -> None:
    assert h.client.post("/worlds", json={"id": world_id}).status_code == 201


def _bind(h: Harness, *strategies: str) -> None:
    r = h.client.post("/worlds/w1/bindings", json={"strategies": list(strategies)})
    assert r.status_code == 200, r.text


def _restart(h: Harness, harness_factory) -> Harness:  # type: ignore[no-untyped-def]
    h.runtime.close()
    return harness_factory(h.config)


# --- GET /bindings?strategy_id= ------------------------------------------------------------------------


def test_bindings_filter_by_strategy_id(api) -> None:
    _world(api)
    _bind(api, "s2", "s1")
    c = api.client
    assert c.get("/worlds/w1/bindings", params={"strategy_id": "s1"}).json() == {"strategies": ["s1"]}
    assert c.get("/worlds/w1/bindings", params={"strategy_id": "s9"}).json() == {"strategies": []}
    assert c.get("/worlds/w1/bindings").json() == {"strategies": ["s1", "s2"]}
    missing = c.get("/worlds/nope/bindings", params={"strategy_id": "s1"})
    assert missing.status_code == 404 and missing.json() == {"detail": "world not found"}


# --- WSB: a binding creates the strategy's root node -----------------------------------------------------


def _root(sid: str) -> dict[str, Any]:
    return {"world_id": "w1", "node_id": sid, "execution_domain": "backtest", "status": "unknown",
            "last_eval_key": None, "annotations": {"root": True, "strategy_id": sid}}


def test_a_binding_creates_the_strategy_root_node_once(contract_api, harness_factory) -> None:
    h = contract_api
    _world(h)
    _bind(h, "s1")
    assert h.client.get("/worlds/w1/nodes").json() == [_root("s1")]
    assert h.client.get("/worlds/w1/nodes/s1").json() == _root("s1")
    audit = [e for e in h.client.get("/worlds/w1/audit").json() if e["event"] == "world_node_upserted"]
    assert [e["result"] for e in audit] == [_root("s1")]

    # The node evolves on its own; binding the strategy again (a Gateway re-submits) does not reset it.
    put = h.client.put("/worlds/w1/nodes/s1", json={"status": "valid", "annotations": {"owner": "team-a"}})
    assert put.status_code == 200
    _bind(h, "s1", "s2")
    h = _restart(h, harness_factory)  # the nodes were committed with the bindings, in SQL
    nodes = {n["node_id"]: n for n in h.client.get("/worlds/w1/nodes").json()}
    assert nodes["s1"]["status"] == "valid" and nodes["s1"]["annotations"] == {"owner": "team-a"}
    assert nodes["s2"] == _root("s2")
    assert h.client.get("/worlds/w1/bindings").json() == {"strategies": ["s1", "s2"]}


def test_a_root_node_never_opens_live(api) -> None:
    """The root lives in backtest: a binding alone gives a strategy nothing in live."""
    _world(api)
    _bind(api, "s1")
    assert api.client.get("/worlds/w1/nodes", params={"execution_domain": "live"}).json() == []
    assert api.client.get("/worlds/w1/nodes/s1", params={"execution_domain": "live"}).status_code == 404


# --- GET /activation (the whole set) ---------------------------------------------------------------------


def _put(h: Harness, sid: str, side: str, **fields: Any) -> None:
    r = h.client.put("/worlds/w1/activation", json={"strategy_id": sid, "side": side, "active": True, **fields})
    assert r.status_code == 200, r.text


def test_the_whole_activation_set_for_a_reconcile(contract_api) -> None:
    h = contract_api
    _world(h)
    empty = h.client.get("/worlds/w1/activation").json()
    assert (empty["version"], empty["state"]) == (0, {})
    _put(h, "s1", "long", weight=0.25)
    _put(h, "s2", "short", freeze=True)
    r = h.client.get("/worlds/w1/activation")
    assert r.status_code == 200
    body = r.json()
    assert body["world_id"] == "w1" and body["version"] == 2
    assert set(body["state"]) == {"s1", "s2"}
    assert body["state"]["s1"]["long"]["weight"] == 0.25 and body["state"]["s2"]["short"]["freeze"] is True
    single = h.client.get("/worlds/w1/activation", params={"strategy_id": "s1", "side": "long"}).json()
    assert body["state"]["s1"]["long"]["etag"] == single["etag"]
    # The hash a Gateway probes is the hash of exactly this document: it can check what it fetched.
    assert body["state_hash"] == h.client.get("/worlds/w1/activation/state_hash").json()["state_hash"]
    document = json.dumps({"version": body["version"], "state": body["state"]}, sort_keys=True).encode()
    assert body["state_hash"] == "blake3:" + blake3.blake3(document).hexdigest()
    assert r.headers["ETag"] == body["etag"]


def test_the_whole_set_etag_answers_304_until_the_set_changes(contract_api) -> None:
    h = contract_api
    _world(h)
    _put(h, "s1", "long")
    etag = h.client.get("/worlds/w1/activation").headers["ETag"]
    unchanged = h.client.get("/worlds/w1/activation", headers={"If-None-Match": f'"{etag}"'})
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == etag
    _put(h, "s1", "long", weight=0.5)  # the same entry rewritten: a new version, a new etag
    changed = h.client.get("/worlds/w1/activation", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_the_single_entry_read_is_unchanged(api) -> None:
    _world(api)
    c = api.client
    assert c.get("/worlds/nope/activation").status_code == 404
    assert c.get("/worlds/w1/activation", params={"strategy_id": "s1", "side": "long"}).status_code == 404
    for params, missing in (({"strategy_id": "s1"}, "side"), ({"side": "long"}, "strategy_id")):
        r = c.get("/worlds/w1/activation", params=params)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", missing]
    assert c.get("/worlds/w1/activation", params={"strategy_id": "s1", "side": "up"}).status_code == 422


# --- as_of beyond the tolerated client skew ---------------------------------------------------------------



@pytest.fixture
def skew_api(harness_factory, tmp_path: Path, clock: FakeClock) -> Harness:
    h = harness_factory(make_config(tmp_path), clock=clock)
    _world(h)
    return h


def _at(clock: FakeClock, seconds: float) -> str:
    return (clock.now + timedelta(seconds=seconds)).isoformat()


def test_decide_refuses_an_as_of_beyond_the_client_skew(skew_api, clock) -> None:
    c = skew_api.client
    assert c.get("/worlds/w1/decide", params={"as_of": _at(clock, 2)}).status_code == 200
    r = c.get("/worlds/w1/decide", params={"as_of": _at(clock, 2.5)})
    assert r.status_code == 422
    assert r.json()["detail"] == ("as_of is 2.500s ahead of the server clock; at most 2s of client clock skew "
                                  "is tolerated")
    assert c.get("/worlds/nope/decide", params={"as_of": _at(clock, 60)}).status_code == 404


@pytest.mark.parametrize("field", ["as_of", "data_end"])
def test_history_refuses_timestamps_beyond_the_client_skew(skew_api, clock, field: str) -> None:
    c = skew_api.client
    body = {"strategy_id": "s1", "node_id": "n1", "interval": 60}
    r = c.post("/worlds/w1/history", json={**body, field: _at(clock, 3)})
    assert r.status_code == 422 and r.json()["detail"].startswith(f"{field} is 3.000s ahead")
    assert c.get("/worlds/w1/history").json() == {"entries": [], "latest": None}  # nothing was written
    assert c.post("/worlds/w1/history", json={**body, field: _at(clock, 1.5)}).status_code == 204


# --- history forwarded by the reference Gateway -----------------------------------------------------------

FORWARDED = {"strategy_id": "s1", "node_id": "n1", "interval": 60, "rows": 10, "dataset_fingerprint": "fp-1",
             "world_id": "w1", "execution_domain": "paper", "updated_at": "2020-01-01T00:00:00Z"}


def test_history_accepts_the_fields_the_gateway_forwards(skew_api, clock, harness_factory) -> None:
    c = skew_api.client
    assert c.post("/worlds/w1/history", json=FORWARDED).status_code == 204
    received = "2026-03-02T09:00:00Z"  # the server's clock, not the sender's updated_at
    entry = c.get("/worlds/w1/history").json()["latest"]
    assert (entry["execution_domain"], entry["updated_at"], "world_id" in entry) == ("dryrun", received, False)
    assert c.get("/worlds/w1/decide").json()["history_updated_at"] == received
    restarted = _restart(skew_api, harness_factory)
    assert restarted.client.get("/worlds/w1/history").json()["latest"] == entry


@pytest.mark.parametrize(("change", "detail"), [
    ({"world_id": "w2"}, "world_id 'w2' in the body does not match the world 'w1' of the path"),
    ({"updated_at": "yesterday"}, "invalid updated_at; expected ISO-8601 timestamp"),
    ({"execution_domain": "mars"}, "unknown execution_domain 'mars'"),
    ({"dataset_fingerprnt": "fp-2"}, None),  # a typo is still an unknown field
])
def test_history_refuses_a_wrong_forwarding_field_or_a_typo(skew_api, change: dict, detail: str | None) -> None:
    c = skew_api.client
    r = c.post("/worlds/w1/history", json={**FORWARDED, **change})
    assert r.status_code == 422
    if detail is None:
        assert "dataset_fingerprnt" in r.text
    else:
        assert r.json()["detail"].startswith(detail)
    assert c.get("/worlds/w1/history").json() == {"entries": [], "latest": None}
