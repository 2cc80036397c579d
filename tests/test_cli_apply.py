"""``worldservice world apply``: the live view of a 2-phase apply driven to completion (by itself with ACKs
off; through held ACKs that a Gateway sends later), to a rollback and to refusals; Ctrl-C stops watching,
not the run."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_runner import ChildCli, Cli
from tests.daemon_process import DaemonProcess
from tests.kafka_broker import unique_topic
from tests.kafka_gateway import SimulatedGateway, daemon_kafka_env

TOKEN = "cli-test-token"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLDSERVICE_URL", "WORLDSERVICE_TOKEN", "WORLDSERVICE_OUTPUT", "WORLDSERVICE__CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """Dev profile, in-memory bus: ACKs off, so an apply completes by itself."""
    root = tmp_path_factory.mktemp("apply-daemon")
    with DaemonProcess(root / "data", root / "daemon.log") as process:
        process.start()
        yield process


@pytest.fixture(scope="module")
def held_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """ACKs awaited but no Gateway to send them: a run is held, then rolled back at its deadline; a service
    token is required."""
    root = tmp_path_factory.mktemp("held-daemon")
    env = {"WORLDSERVICE__APPLY__AWAIT_ACKS": "true", "WORLDSERVICE__APPLY__ACTIVATION_GAP_TIMEOUT_MS": "200",
           "WORLDSERVICE__APPLY__DEADLINE_MS": "1500", "WORLDSERVICE__APPLY__TICK_INTERVAL_MS": "50",
           "WORLDSERVICE__SERVER__AUTH__TOKENS": f'["{TOKEN}"]', "WORLDSERVICE__SERVER__AUTH__SERVICE_ROLE": "owner"}
    with DaemonProcess(root / "data", root / "daemon.log", env=env) as process:
        process.start()
        yield process


def _seed(url: str, world_id: str, token: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        assert client.post("/worlds", json={"id": world_id}).status_code == 201
        for sid in ("a", "b"):
            assert client.put(f"/worlds/{world_id}/activation",
                              json={"strategy_id": sid, "side": "long", "active": True}).status_code == 200


def test_an_apply_with_acks_off_completes_by_itself(capsys: pytest.CaptureFixture[str], daemon: DaemonProcess,
                                                    tmp_path: Path) -> None:
    cli = Cli(capsys, daemon.url)
    _seed(daemon.url, "w")
    done = cli("apply", "w", "--run-id", "r1", "--activate", "c", "--deactivate", "a", "--weight", "c=0.7")
    assert done.code == 0, done.err
    assert "phase completed" in done.out and "run r1 completed: active c" in done.out
    assert "unfreeze" in done.out and "ACKs received" in done.out
    entry = httpx.get(f"{daemon.url}/worlds/w/activation", params={"strategy_id": "c", "side": "long"}).json()
    assert entry["active"] and entry["weight"] == 0.7

    status = cli("apply", "status", "w", "r1")
    assert status.code == 0 and "completed" in status.out and "freeze" in status.out
    assert cli("apply", "status", "w", "r1", "-o", "json").out.strip() == \
        httpx.get(f"{daemon.url}/worlds/w/apply/r1").text

    plan = tmp_path / "plan.yml"
    plan.write_text("activate: [a]\ndeactivate: [c]\n")
    as_json = cli("apply", "w", "--run-id", "r2", "--plan-file", str(plan), "-o", "json")
    assert as_json.code == 0 and json.loads(as_json.out) == {"ok": True, "run_id": "r2", "active": ["a"],
                                                              "phase": "completed"}
    replay = cli("apply", "w", "--run-id", "r2", "--plan-file", str(plan), "-o", "json")
    assert replay.code == 0 and replay.out == as_json.out  # a run id is idempotent


def test_apply_refusals_exit_1_with_the_daemons_detail_and_bad_input_exit_2(
        capsys: pytest.CaptureFixture[str], daemon: DaemonProcess, tmp_path: Path) -> None:
    cli = Cli(capsys, daemon.url)
    _seed(daemon.url, "ref")
    assert cli("apply", "ref", "--run-id", "r1", "--activate", "c").code == 0
    reused = cli("apply", "ref", "--run-id", "r1", "--activate", "a")
    assert reused.code == 1 and "refused (409)" in reused.err and "r1" in reused.err
    unknown = cli("apply", "nowhere", "--run-id", "r1", "--activate", "c")
    assert unknown.code == 1 and "refused (404): world not found" in unknown.err
    gating = tmp_path / "gating.yml"
    gating.write_text("plan: {activate: [a]}\ngating_policy: {share_policy: everything}\n")
    bad_policy = cli("apply", "ref", "--run-id", "r2", "--plan-file", str(gating))
    assert bad_policy.code == 1 and "refused (422)" in bad_policy.err and "share_policy" in bad_policy.err
    assert cli("apply", "status", "ref", "r2").code == 1  # nothing was started

    assert cli("apply", "ref", "--run-id", "r3").code == 2  # no plan at all
    assert cli("apply", "ref", "--run-id", "r3", "--weight", "c").code == 2
    assert cli("apply", "ref", "--activate", "c").code == 2  # --run-id is required


def test_a_held_run_is_followed_to_its_rollback(capsys: pytest.CaptureFixture[str], held_daemon: DaemonProcess,
                                                tmp_path: Path) -> None:
    config = tmp_path / "worldservice.yml"
    config.write_text(f"worldservice:\n  server:\n    bind: {{port: {held_daemon.port}}}\n"
                      f"    auth: {{tokens: [{TOKEN}]}}\n")
    cli = Cli(capsys, held_daemon.url, "--config", str(config))  # the token comes from the file
    _seed(held_daemon.url, "h1", TOKEN)
    rolled = cli("apply", "h1", "--run-id", "r1", "--activate", "c")
    assert rolled.code == 1
    assert "held: Gateways have not acknowledged yet" in rolled.out and "phase awaiting_ack" in rolled.out
    assert "run r1 rolled back: deadline passed before the run completed" in rolled.out

    _seed(held_daemon.url, "h2", TOKEN)
    as_json = cli("apply", "h2", "--run-id", "r1", "--activate", "c", "-o", "json")
    assert as_json.code == 1 and json.loads(as_json.out)["state"] == "rolled_back"

    anonymous = Cli(capsys, held_daemon.url)("list")
    assert anonymous.code == 1 and "refused (401)" in anonymous.err


def _wait_state(url: str, world_id: str, run_id: str, state: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = httpx.get(f"{url}/worlds/{world_id}/apply/{run_id}").json()
        if run["state"] == state or time.monotonic() > deadline:
            return run


def test_ctrl_c_stops_watching_and_late_gateway_acks_complete_the_live_view(tmp_path: Path, kafka_brokers: str) -> None:
    topics = {name: unique_topic(name) for name in ("activation", "policy", "ack", "commands", "dlq", "group")}
    gateway = SimulatedGateway(kafka_brokers, topics["activation"], topics["ack"], acking=False).start()
    env = {**daemon_kafka_env(kafka_brokers, topics), "WORLDSERVICE__APPLY__ACTIVATION_GAP_TIMEOUT_MS": "1000",
           "WORLDSERVICE__APPLY__RESEND_INITIAL_MS": "300", "WORLDSERVICE__APPLY__TICK_INTERVAL_MS": "100"}
    try:
        with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=env) as daemon:
            daemon.start()
            for world_id in ("k1", "k2"):
                _seed(daemon.url, world_id)
            watcher = ChildCli("--url", daemon.url, "apply", "k1", "--run-id", "r1", "--activate", "c")
            try:
                watcher.wait_for_line("held:")
                watcher.proc.send_signal(signal.SIGINT)
                stopped = watcher.finish()
            finally:
                watcher.kill()
            assert stopped.code == 130 and "carries on in the daemon" in stopped.err
            assert httpx.get(f"{daemon.url}/worlds/k1/apply/r1").json()["phase"] == "awaiting_ack"

            follower = ChildCli("--url", daemon.url, "apply", "k2", "--run-id", "r1", "--activate", "c")
            try:
                follower.wait_for_line("held:")
                gateway.acking = True  # the Gateway comes back: re-sent events get their ACKs
                followed = follower.finish()
            finally:
                follower.kill()
            assert followed.code == 0, followed.out + followed.err
            assert "ack #1 freeze a/long" in followed.out and "ack #2 freeze b/long" in followed.out
            assert "run r1 completed: active c" in followed.out
            assert _wait_state(daemon.url, "k1", "r1", "completed")["state"] == "completed"  # never stopped
    finally:
        gateway.stop()
