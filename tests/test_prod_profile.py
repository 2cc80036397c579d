"""The prod profile refuses to start without PostgreSQL, Redis, Kafka and auth, one clear line each, and
starts (JWT on every route but health) when they are all there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import pytest

from tests import services
from tests.daemon_process import PROJECT_ROOT, DaemonProcess, _child_env

AUTH = {"WORLDSERVICE__SERVER__AUTH__JWT__SECRET": "prod-test-secret-long-enough-for-hs256",
        "WORLDSERVICE__SERVER__AUTH__JWT__ISSUER": "https://issuer.test",
        "WORLDSERVICE__SERVER__AUTH__JWT__AUDIENCE": "worldservice"}


def _complete(postgres_dsn: str, brokers: str) -> dict[str, str]:
    return {"WORLDSERVICE__PROFILE": "prod", "WORLDSERVICE__SERVER__DSN": postgres_dsn,
            "WORLDSERVICE__SERVER__REDIS": services.REDIS_URL,
            "WORLDSERVICE__SERVER__CONTROLBUS_BROKERS": f'["{brokers}"]', **AUTH}


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon", command], cwd=PROJECT_ROOT, env={**_child_env(), **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("drop", "setting"), [
    ("WORLDSERVICE__SERVER__DSN", "worldservice.server.dsn"),
    ("WORLDSERVICE__SERVER__REDIS", "worldservice.server.redis"),
    ("WORLDSERVICE__SERVER__CONTROLBUS_BROKERS", "worldservice.server.controlbus_brokers"),
    ("WORLDSERVICE__SERVER__AUTH__JWT__SECRET", "worldservice.server.auth"),
])
def test_each_missing_dependency_stops_the_start_with_its_setting(postgres_dsn: str, kafka_brokers: str,
                                                                  drop: str, setting: str) -> None:
    env = {k: v for k, v in _complete(postgres_dsn, kafka_brokers).items() if k != drop}
    if drop.endswith("SECRET"):
        env = {k: v for k, v in env.items() if "AUTH" not in k}
    for command in ("serve", "check-config"):
        result = _run(command, env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and setting in lines[0], (command, result.stderr)


@pytest.mark.parametrize(("key", "value", "setting"), [
    ("WORLDSERVICE__SERVER__DSN", "postgresql://postgres@127.0.0.1:1/none", "worldservice.server.dsn: unreachable"),
    # Not Redis: it only holds a projection of SQL, so prod starts degraded without it (test_redis_outage).
    ("WORLDSERVICE__SERVER__CONTROLBUS_BROKERS", '["127.0.0.1:1"]',
     "worldservice.server.controlbus_brokers: unreachable"),
])
def test_each_unreachable_dependency_stops_the_start(postgres_dsn: str, kafka_brokers: str, key: str, value: str,
                                                     setting: str) -> None:
    result = _run("serve", {**_complete(postgres_dsn, kafka_brokers), key: value})
    assert result.returncode == 2 and setting in result.stderr, result.stderr


def test_complete_prod_starts_and_requires_tokens(tmp_path: Path, postgres_dsn: str, kafka_brokers: str) -> None:
    migrated = _run("migrate", _complete(postgres_dsn, kafka_brokers))
    assert migrated.returncode == 0, migrated.stderr
    assert _run("check-config", _complete(postgres_dsn, kafka_brokers)).returncode == 0
    env = {**_complete(postgres_dsn, kafka_brokers), "WORLDSERVICE__CONTROLBUS__SESSION_TIMEOUT_MS": "3000",
           "WORLDSERVICE__CONTROLBUS__HEARTBEAT_INTERVAL_MS": "300"}
    with DaemonProcess(tmp_path / "d", tmp_path / "d.log", env=env) as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            assert client.get("/worlds").status_code == 401
            claims = {"sub": "ops", "iss": "https://issuer.test", "aud": "worldservice", "exp": 4102444800,
                      "roles": {"*": "owner"}}
            headers = {"Authorization": "Bearer " + jwt.encode(claims, AUTH[
                "WORLDSERVICE__SERVER__AUTH__JWT__SECRET"], algorithm="HS256")}
            assert client.post("/worlds", json={"id": "prod-w"}, headers=headers).status_code in (201, 409)
            assert client.get("/healthz").status_code == 200
