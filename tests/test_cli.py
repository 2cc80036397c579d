"""``worldservice world …`` against a real daemon process: every command's table and JSON output (JSON is
the daemon's body byte for byte), the exit codes (0 ok, 1 refused, 2 usage, 3 unreachable) and the
daemon's ``detail`` on a refusal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli_runner import ChildCli, Cli, child_env
from tests.daemon_process import PROJECT_ROOT, DaemonProcess, free_port


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    root = tmp_path_factory.mktemp("cli-daemon")
    with DaemonProcess(root / "data", root / "daemon.log") as process:
        process.start()
        yield process


@pytest.fixture
def http(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        yield client


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, daemon: DaemonProcess) -> Cli:
    for name in ("WORLDSERVICE_URL", "WORLDSERVICE_TOKEN", "WORLDSERVICE_OUTPUT", "WORLDSERVICE__CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich tables would fold ids on an 80-column pipe
    return Cli(capsys, daemon.url)


def test_world_registry_commands_print_tables_the_exact_bodies_and_refusals(cli: Cli, http: httpx.Client) -> None:
    created = cli("create", "reg", "--name", "Registry", "--label", "fx", "--owner", "ops")
    assert created.code == 0 and "Registry" in created.out and '["fx"]' in created.out
    again = cli("create", "reg", "--name", "Registry")
    assert again.code == 1 and "refused (409): world already exists" in again.err

    listed = cli("list")
    assert listed.code == 0 and "reg" in listed.out and "Registry" in listed.out and "backtest" in listed.out
    assert cli("list", "-o", "json").out.strip() == http.get("/worlds").text
    assert cli("-o", "json", "show", "reg").out.strip() == http.get("/worlds/reg").text
    assert cli("describe", "reg", "-o", "json").out.strip() == http.get("/worlds/reg/describe").text
    described = cli("describe", "reg")
    assert described.code == 0 and "policy_human" in described.out and "no policy" in described.out

    updated = cli("update", "reg", "--name", "Renamed", "--circuit-breaker")
    assert updated.code == 0 and "Renamed" in updated.out
    assert http.get("/worlds/reg").json()["circuit_breaker"] is True
    assert http.get("/worlds/reg").json()["labels"] == ["fx"]  # not sent, not reset
    assert cli("update", "reg").code == 2

    deleted = cli("delete", "reg")
    assert deleted.code == 0 and "deleted reg" in deleted.out
    gone = cli("show", "reg")
    assert gone.code == 1 and "refused (404): world not found" in gone.err


def test_policy_commands_upload_list_show_and_set_default(cli: Cli, http: httpx.Client, tmp_path: Path) -> None:
    assert cli("create", "pol", "--name", "P").code == 0
    document = tmp_path / "policy.yml"
    document.write_text("thresholds:\n  sharpe: {metric: sharpe, min: 0.5}\n")
    uploaded = cli("policy", "upload", "pol", str(document), "--set-default")
    assert uploaded.code == 0 and "version" in uploaded.out and "made default" in uploaded.out
    assert http.get("/worlds/pol").json()["default_policy_version"] == 1
    assert cli("policy", "upload", "pol", "--preset", "conservative", "-o", "json").out.strip() == '{"version":2}'

    listed = cli("policy", "list", "pol")
    assert listed.code == 0 and "blake3:" in listed.out and "ACTIVE" in listed.out or "DRAFT" in listed.out
    assert cli("policy", "list", "pol", "-o", "json").out.strip() == http.get("/worlds/pol/policies").text
    shown = cli("policy", "show", "pol", "1")
    assert shown.code == 0 and "sharpe" in shown.out
    assert cli("policy", "show", "pol", "1", "-o", "json").out.strip() == http.get("/worlds/pol/policies/1").text

    assert cli("policy", "set-default", "pol", "2").code == 0
    assert http.get("/worlds/pol").json()["default_policy_version"] == 2
    missing = cli("policy", "set-default", "pol", "9")
    assert missing.code == 1 and "404" in missing.err
    assert cli("policy", "upload", "pol").code == 2  # neither a file nor a preset
    bad = tmp_path / "bad.yml"
    bad.write_text("thresholds: [")
    assert cli("policy", "upload", "pol", str(bad)).code == 1  # the daemon judges the document: 422


def test_activation_commands_one_entry_the_whole_set_and_a_stale_etag(cli: Cli, http: httpx.Client) -> None:
    assert cli("create", "act", "--name", "A").code == 0
    written = cli("activation", "set", "act", "-s", "s1", "--active", "--weight", "0.4")
    assert written.code == 0 and "act:act:s1:long:1" in written.out and "0.4" in written.out
    assert cli("activation", "set", "act", "-s", "s2", "--side", "short", "--inactive").code == 0

    one = cli("activation", "get", "act", "-s", "s1", "--side", "long", "-o", "json")
    assert one.out.strip() == http.get("/worlds/act/activation", params={"strategy_id": "s1", "side": "long"}).text
    whole = cli("activation", "get", "act")
    assert whole.code == 0 and "state_hash blake3:" in whole.out and "s2" in whole.out and "short" in whole.out
    assert cli("activation", "get", "act", "-o", "json").out.strip() == http.get("/worlds/act/activation").text

    stale = cli("activation", "set", "act", "-s", "s1", "--inactive", "--if-match", "act:act:s1:long:0")
    assert stale.code == 1 and "412" in stale.err
    assert http.get("/worlds/act/activation", params={"strategy_id": "s1", "side": "long"}).json()["active"] is True
    over = cli("activation", "set", "act", "-s", "s1", "--active", "--weight", "1.5")
    assert over.code == 2  # caught before any request
    live = cli("activation", "set", "act", "-s", "s1", "--active", "--effective-mode", "live")
    assert live.code == 1 and "409" in live.err  # default-safe: the world may not be live


def test_decide_evaluate_and_allocations(cli: Cli, http: httpx.Client, tmp_path: Path) -> None:
    for world_id in ("dec", "dec2"):
        assert cli("create", world_id, "--name", world_id).code == 0
    decided = cli("decide", "dec")
    assert decided.code == 0 and "validate" in decided.out and "no_bindings" in decided.out
    body = json.loads(cli("decide", "dec", "-o", "json").out)
    assert body == http.get("/worlds/dec/decide").json() | {"ttl": body["ttl"], "as_of": body["as_of"]}

    request = tmp_path / "evaluate.json"
    request.write_text(json.dumps({"metrics": {"s1": {"sharpe": 1.2}, "s2": {"sharpe": 0.1}},
                                   "policy": {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}}}))
    evaluated = cli("evaluate", "dec", str(request), "--run-id", "ev1", "-s", "s1")
    assert evaluated.code == 0 and '["s1"]' in evaluated.out and "ev1" in evaluated.out
    as_json = json.loads(cli("evaluate", "dec", str(request), "--run-id", "ev2", "-o", "json").out)
    assert as_json["active"] == ["s1"] and as_json["evaluation_run_id"] == "ev2"
    assert cli("evaluate", "nowhere", str(request)).code == 1
    assert cli("evaluate", "dec", str(tmp_path / "absent.json")).code == 2

    none_yet = cli("allocations", "-w", "dec")
    assert none_yet.code == 1 and "allocation snapshot not found" in none_yet.err
    upsert = {"run_id": "al1", "total_equity": 1000, "world_allocations": {"dec": 0.3, "dec2": 0.2}, "positions": []}
    assert http.post("/allocations", json=upsert).status_code == 200
    one = cli("allocations", "-w", "dec")
    assert one.code == 0 and "0.3" in one.out and "al1" in one.out and "dec2" not in one.out
    assert "dec2" in cli("allocations").out
    assert cli("allocations", "-w", "dec", "-o", "json").out.strip() == \
        http.get("/allocations", params={"world_id": "dec"}).text


def test_audit_pages_and_follows_new_entries_until_ctrl_c(cli: Cli, http: httpx.Client, daemon: DaemonProcess) -> None:
    assert cli("create", "aud", "--name", "Audited").code == 0
    page = cli("audit", "aud")
    assert page.code == 0 and "world_created" in page.out
    assert cli("audit", "aud", "-o", "json").out.strip() == http.get("/worlds/aud/audit").text

    follower = ChildCli("--url", daemon.url, "audit", "aud", "--follow", "--interval", "0.05", "-o", "json")
    try:
        first = json.loads(follower.wait_for_line("world_created"))
        assert first["world_id"] == "aud"
        http.put("/worlds/aud/activation", json={"strategy_id": "s1", "side": "long", "active": True})
        later = json.loads(follower.wait_for_line('"world_id":"aud"'))
        assert later["id"] > first["id"] and later["event"] != "world_created"
        follower.proc.send_signal(signal.SIGINT)
        assert follower.finish().code == 0
    finally:
        follower.kill()


def test_an_unreachable_daemon_is_exit_3_and_bad_usage_exit_2(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    nobody = Cli(capsys, f"http://127.0.0.1:{free_port()}")
    for args in (("list",), ("show", "w"), ("apply", "w", "--run-id", "r", "--activate", "s")):
        result = nobody(*args)
        assert result.code == 3 and "cannot reach the daemon" in result.err
    assert cli("no-such-command").code == 2
    assert cli("list", "-o", "yaml").code == 2
    assert cli("show").code == 2  # the world id is missing


def test_the_entry_point_and_a_config_file_find_the_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    config = tmp_path / "worldservice.yml"
    config.write_text(f"worldservice:\n  server:\n    bind: {{host: 0.0.0.0, port: {daemon.port}}}\n")
    done = subprocess.run([sys.executable, "-m", "daemon", "world", "--config", str(config), "list", "-o", "json"],
                          cwd=PROJECT_ROOT, env=child_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == httpx.get(f"{daemon.url}/worlds").text
    usage = subprocess.run([sys.executable, "-m", "daemon", "--help"], cwd=PROJECT_ROOT, env=child_env(),
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "world" in usage.stdout
