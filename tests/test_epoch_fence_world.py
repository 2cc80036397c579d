"""Cluster mode through the world actors: when another instance takes a world's partition, this
instance's next write of the world is refused by the database, its caller hears 503, and the world actor
gives the world up (stops); nothing of the refused write is stored."""

from __future__ import annotations

from pathlib import Path

from config import load_config
from storage.epochs import OwnerEpochs
from storage.sql import SqlStore

A, B = "http://127.0.0.1:8081", "http://127.0.0.1:8082"
W = "fenced"
GIVEN_UP = (503, "this instance no longer owns the world; retry")


def _put(api, weight: float):  # type: ignore[no-untyped-def]
    body = {"strategy_id": "s1", "side": "long", "active": True, "weight": weight}
    return api.client.put(f"/worlds/{W}/activation", json=body)


def test_a_world_whose_partition_moved_is_given_up_and_its_write_is_refused(
        harness_factory, tmp_path: Path, sql_dsn: str) -> None:
    config = load_config(environ={}, overrides={"worldservice": {
        "data_dir": str(tmp_path), "server": {"dsn": sql_dsn}, "actors": {"sweep_interval_s": 3600},
        "cluster": {"advertise_url": A, "partitions": 12}}})
    api = harness_factory(config)
    store = api.runtime.store
    assert store.owner_epochs is not None and store.owner_epochs.partitions == 12
    partition = store.owner_epochs.partition_of(W)
    assert store.take_partition(partition, A) == 1
    assert api.client.post("/worlds", json={"id": W}).status_code == 201
    assert _put(api, 0.25).status_code == 200
    actor = api.system.routes._actors[W]

    other = SqlStore(store.engine, OwnerEpochs(12))  # another instance, on the same database
    assert other.take_partition(partition, B) == 2
    refused = _put(api, 0.75)
    assert (refused.status_code, refused.json()["detail"]) == GIVEN_UP
    stored = other.load_world(W)
    assert {sid: sides["long"].weight for sid, sides in stored.activation.items()} == {"s1": 0.25}
    # The actor learns of the refusal on its next wake-up (as of any fenced commit): that request is
    # refused as well, and the actor gives the world up.
    again = _put(api, 0.5)
    assert (again.status_code, again.json()["detail"]) == GIVEN_UP
    assert actor.actor_stopped.wait(10)
    # A request after that finds the world in SQL again, and is refused again: the epoch is still stale.
    assert _put(api, 0.6).status_code == 503
    assert {sid: s["long"].weight for sid, s in other.load_world(W).activation.items()} == {"s1": 0.25}
