"""Failure rules: a storage failure is an error reply, memory never runs ahead of what is durable."""

from __future__ import annotations

import sqlalchemy as sa


def test_storage_failure_is_503_and_nothing_is_half_applied(api, monkeypatch) -> None:
    c = api.client
    c.post("/worlds", json={"id": "demo"})
    store = api.runtime.store
    real = store._apply_batch
    calls = {"n": 0}

    def failing_once(*args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise sa.exc.OperationalError("COMMIT", {}, Exception("disk I/O error"))
        return real(*args)

    monkeypatch.setattr(store, "_apply_batch", failing_once)
    body = {"strategy_id": "s1", "side": "long", "active": True, "weight": 0.5}
    failed = c.put("/worlds/demo/activation", json=body)
    assert (failed.status_code, failed.json()) == (503, {"detail": "storage unavailable; retry"})
    assert c.get("/worlds/demo/activation", params={"strategy_id": "s1", "side": "long"}).status_code == 404
    ok = c.put("/worlds/demo/activation", json=body)
    assert ok.status_code == 200 and ok.json()["etag"] == "act:demo:s1:long:1"
    assert [e["event"] for e in c.get("/worlds/demo/audit").json()] == ["world_created", "activation_updated"]


def test_unexpected_error_in_a_command_keeps_the_actor_serving(api, monkeypatch) -> None:
    import domain.handle as handle_module

    c = api.client
    c.post("/worlds", json={"id": "demo"})
    original = handle_module._MUTATIONS[handle_module.c.SetDecisions]
    monkeypatch.setitem(handle_module._MUTATIONS, handle_module.c.SetDecisions,
                        lambda s, cmd, now: (_ for _ in ()).throw(RuntimeError("bug")))
    assert c.post("/worlds/demo/decisions", json={"strategies": ["s1"]}).status_code == 500
    monkeypatch.setitem(handle_module._MUTATIONS, handle_module.c.SetDecisions, original)
    assert c.post("/worlds/demo/decisions", json={"strategies": ["s1"]}).json() == {"strategies": ["s1"]}
    assert c.get("/worlds/demo").status_code == 200


def test_projection_failure_never_fails_a_committed_write(api, monkeypatch) -> None:
    c = api.client
    c.post("/worlds", json={"id": "demo"})
    store = api.system.projection.store.get()

    def down(*args):  # type: ignore[no-untyped-def]
        raise ConnectionError("redis down")

    monkeypatch.setattr(store, "write_many", down)
    r = c.put("/worlds/demo/activation", json={"strategy_id": "s1", "side": "long", "active": True})
    assert r.status_code == 200
    assert "worldservice_activation_projection_dirty_worlds 1.0" in c.get("/metrics").text
    monkeypatch.undo()
    assert api.system.verify_projection() == ["demo"]
    assert "worldservice_activation_projection_dirty_worlds 0.0" in c.get("/metrics").text
