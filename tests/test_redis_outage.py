"""Redis only holds a projection of SQL: the daemon starts and serves without it, says the projection is
behind, rebuilds it from SQL once Redis answers, and nothing an operator or systemd polls waits on a
frozen Redis. A private ``redis-server`` on a port of its own, started and stopped (and SIGSTOPped) here."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from domain.activation import state_hash
from storage.redis_stores import RedisActivationStore
from tests.daemon_process import DaemonProcess, free_port

WORLDS = [f"w{n}" for n in range(4)]


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed")
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.directory)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis-server did not start"
                time.sleep(0.02)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _put(client: httpx.Client, world: str, sid: str, weight: float) -> None:
    r = client.put(f"/worlds/{world}/activation", json={"strategy_id": sid, "side": "long", "active": True,
                                                        "weight": weight})
    assert r.status_code == 200, r.text


def _degraded(client: httpx.Client) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith("worldservice_projection_degraded "))
    return float(line.split()[1])


def _projection_equals_sql(client: httpx.Client, store: RedisActivationStore) -> bool:
    for world in WORLDS:
        found = store.get(world)
        if found is None or state_hash(*found) != client.get(f"/worlds/{world}/activation/state_hash").json()["state_hash"]:
            return False
    return True


def test_redis_down_at_start_then_back_then_frozen(tmp_path: Path, private_redis: PrivateRedis) -> None:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    notify.bind(str(notify_path))
    env = {"WORLDSERVICE__SERVER__REDIS": private_redis.url, "WORLDSERVICE__ACTORS__PROJECTION_CHECK_S": "1",
           "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"}  # a pet every 0.5 s
    with notify, DaemonProcess(tmp_path / "data", tmp_path / "daemon.log", env=env) as daemon:
        daemon.start()  # Redis is not running: ready all the same
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            _outage(daemon, client, private_redis, notify)


def _outage(daemon: DaemonProcess, client: httpx.Client, private_redis: PrivateRedis, notify: socket.socket) -> None:
    assert client.get("/readyz").json() == {"status": "ready", "projection": "behind"}
    assert _degraded(client) == 1
    for n, world in enumerate(WORLDS):  # writes are answered from SQL meanwhile
        assert client.post("/worlds", json={"id": world, "name": world}).status_code == 201
        _put(client, world, "s1", 0.1 * n)
        _put(client, world, "s2", 0.5)

    private_redis.start()
    store = RedisActivationStore(private_redis.url)
    deadline = time.monotonic() + 30
    while not (_degraded(client) == 0 and _projection_equals_sql(client, store)):
        assert time.monotonic() < deadline, daemon.log_tail()
        time.sleep(0.05)
    assert client.get("/readyz").json() == {"status": "ready", "projection": "current"}

    private_redis.signal(signal.SIGSTOP)  # frozen: connections hang instead of failing
    notify.settimeout(1.0)
    while notify.recv(4096) != b"WATCHDOG=1":  # drain READY=1 and earlier pets
        pass
    stop = threading.Event()

    failures: list[BaseException] = []

    def write() -> None:  # the projection actor keeps meeting the frozen Redis
        try:
            with httpx.Client(base_url=daemon.url, timeout=10) as writer:
                n = 0
                while not stop.is_set():
                    _put(writer, WORLDS[n % len(WORLDS)], "s3", (n % 10) / 10)
                    n += 1
        except BaseException as exc:  # raised again on the test's thread, after the join
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(6):  # ~3 s of a frozen Redis under writes
            started = time.monotonic()
            assert client.get("/metrics", timeout=1.0).status_code == 200
            assert time.monotonic() - started < 1.0
            assert notify.recv(4096) == b"WATCHDOG=1"  # within 1 s (the socket timeout), every time
    finally:
        stop.set()
        writer.join(timeout=30)
    if failures:
        raise failures[0]
    assert _degraded(client) == 1

    private_redis.signal(signal.SIGCONT)  # back: every write made while frozen reaches Redis
    deadline = time.monotonic() + 30
    while not (_degraded(client) == 0 and _projection_equals_sql(client, store)):
        assert time.monotonic() < deadline, daemon.log_tail()
        time.sleep(0.05)
    store.close()
