"""SLOW FAULT-INJECTION TEST: ``kill -9`` the daemon in every phase of an apply, and at random moments.

Named crash points (``WORLDSERVICE_CRASH_AT``) make the daemon SIGKILL itself right after a phase was
committed. After a restart on the same data directory every run has ended in exactly one of ``completed``
or ``rolled_back``; the audit timeline of each run is a valid prefix path of the state machine; a world is
frozen only after a rollback; no etag was issued twice; and an acknowledged apply is never re-executed.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_process import DaemonProcess

pytestmark = [pytest.mark.timeout(240)]

TERMINAL = {"completed", "rolled_back"}
VALID_TIMELINES = (
    ["requested", "freeze", "switch", "unfreeze", "completed"],
    ["requested", "freeze", "rolled_back"],
    ["requested", "freeze", "switch", "rolled_back"],
    ["requested", "freeze", "switch", "unfreeze", "rolled_back"],
)


def _seed_world(client: httpx.Client, world_id: str) -> None:
    assert client.post("/worlds", json={"id": world_id}).status_code == 201
    for sid, weight in (("a", 0.5), ("b", 0.25)):
        body = {"strategy_id": sid, "side": "long", "active": True, "weight": weight}
        assert client.put(f"/worlds/{world_id}/activation", json=body).status_code == 200


def _timeline(client: httpx.Client, world_id: str, run_id: str) -> list[str]:
    audit = client.get(f"/worlds/{world_id}/audit", params={"limit": 1000}).json()
    return [a["result"]["stage"] for a in audit
            if a["event"] == "apply_stage" and a["result"]["run_id"] == run_id]


def _etags(client: httpx.Client, world_id: str) -> list[str]:
    audit = client.get(f"/worlds/{world_id}/audit", params={"limit": 1000}).json()
    return [a["result"]["etag"] for a in audit if a["event"] == "activation_updated"]


def _entries(client: httpx.Client, world_id: str, sids: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for sid in sids:
        r = client.get(f"/worlds/{world_id}/activation", params={"strategy_id": sid, "side": "long"})
        if r.status_code == 200:
            out[sid] = r.json()
    return out


def _check_run(client: httpx.Client, world_id: str, run_id: str, target: list[str]) -> str:
    run = client.get(f"/worlds/{world_id}/apply/{run_id}").json()
    assert run["phase"] in TERMINAL, run
    timeline = _timeline(client, world_id, run_id)
    assert timeline in VALID_TIMELINES, timeline
    assert timeline[-1] == run["phase"]
    etags = _etags(client, world_id)
    assert len(etags) == len(set(etags)), "an etag was issued twice"
    entries = _entries(client, world_id, ["a", "b", "c"])
    if run["phase"] == "completed":
        assert client.get(f"/worlds/{world_id}/decisions").json()["strategies"] == target
        assert all(not e["freeze"] for e in entries.values())
        assert {sid for sid, e in entries.items() if e["active"]} == set(target)
    else:
        assert all(e["freeze"] and not e["active"] for e in entries.values())
        assert "c" not in entries
    return run["phase"]


@pytest.mark.parametrize("point", ["apply.after_freeze", "apply.after_switching", "apply.after_unfreezing",
                                   "apply.after_completed"])
def test_kill_in_each_apply_phase_then_the_run_finishes_exactly_once(tmp_path: Path, point: str) -> None:
    with DaemonProcess(tmp_path / "data", tmp_path / "daemon.log", env={"WORLDSERVICE_CRASH_AT": point}) as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            _seed_world(client, "w")
            with pytest.raises(httpx.TransportError):
                client.post("/worlds/w/apply", json={"run_id": "r1", "plan": {"activate": ["c"], "deactivate": ["a"]}})
        assert daemon.wait(timeout=10) == -9
        daemon.env = {}
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            phase = _check_run(client, "w", "r1", ["c"])
            assert phase == "completed", daemon.log_tail()  # no ACKs awaited: a resumed run rolls forward
            replay = client.post("/worlds/w/apply", json={"run_id": "r1", "plan": {"activate": ["c"], "deactivate": ["a"]}})
            assert replay.status_code == 200 and replay.json()["phase"] == "completed"
            assert _timeline(client, "w", "r1").count("completed") == 1


def test_a_run_interrupted_past_its_deadline_rolls_back_on_restart(tmp_path: Path) -> None:
    env = {"WORLDSERVICE_CRASH_AT": "apply.after_freeze"}
    with DaemonProcess(tmp_path / "data", tmp_path / "daemon.log", env=env) as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            _seed_world(client, "w")
            with pytest.raises(httpx.TransportError):
                client.post("/worlds/w/apply", json={"run_id": "r1", "plan": {"activate": ["c"]}})
        daemon.wait(timeout=10)
        daemon.env = {"WORLDSERVICE__APPLY__DEADLINE_MS": "1"}
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            assert _check_run(client, "w", "r1", []) == "rolled_back"
            run = client.get("/worlds/w/apply/r1").json()
            assert "deadline" in run["error"]
            assert client.get("/worlds/w/decisions").json()["strategies"] == []


def test_random_kill_during_applies_loses_no_acknowledged_run(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    worlds = [f"w{i}" for i in range(3)]
    acknowledged: dict[str, tuple[str, list[str], dict[str, Any]]] = {}
    attempted: dict[str, tuple[str, list[str]]] = {}
    with DaemonProcess(tmp_path / "data", tmp_path / "daemon.log") as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            for world_id in worlds:
                _seed_world(client, world_id)
        kill_after = rng.randint(2, 12)
        done = threading.Event()

        def run_applies() -> None:
            with httpx.Client(base_url=daemon.url, timeout=10) as client:
                for n in range(100):
                    world_id = worlds[n % len(worlds)]
                    target = sorted(rng.sample(["a", "b", "c"], rng.randint(0, 3)))
                    run_id = f"r{n}"
                    attempted[run_id] = (world_id, target)
                    try:
                        r = client.post(f"/worlds/{world_id}/apply",
                                        json={"run_id": run_id, "plan": {"activate": target, "deactivate": ["a", "b", "c"]}})
                    except httpx.TransportError:
                        return
                    if r.status_code == 200:
                        acknowledged[run_id] = (world_id, target, r.json())
                    if len(acknowledged) == kill_after:
                        done.set()

        writer = threading.Thread(target=run_applies)
        writer.start()
        assert done.wait(60), f"seed {seed}: applies did not progress; {daemon.log_tail()}"
        daemon.kill()
        writer.join(30)
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            for run_id, (world_id, target, answer) in acknowledged.items():
                run = client.get(f"/worlds/{world_id}/apply/{run_id}").json()
                assert run["phase"] == "completed" and answer["phase"] == "completed", f"seed {seed}: {run}"
                replay = client.post(f"/worlds/{world_id}/apply",
                                     json={"run_id": run_id, "plan": {"activate": target, "deactivate": ["a", "b", "c"]}})
                assert replay.json() == answer, f"seed {seed}"
            for run_id, (world_id, _) in attempted.items():
                r = client.get(f"/worlds/{world_id}/apply/{run_id}")
                assert r.status_code == 404 or r.json()["phase"] in TERMINAL, f"seed {seed}: {r.json()}"
                if r.status_code == 200:
                    assert _timeline(client, world_id, run_id) in VALID_TIMELINES, f"seed {seed}"
            for world_id in worlds:
                etags = _etags(client, world_id)
                assert len(etags) == len(set(etags)), f"seed {seed}: etag issued twice in {world_id}"
