"""SLOW FAULT-INJECTION TEST: the daemon's PostgreSQL is restarted, stopped and started under concurrent writes.

A private PostgreSQL cluster (``initdb``/``pg_ctl`` into a temporary directory, its own port) backs a real
daemon process while writer threads send ``PUT /activation`` writes. Through a fast restart, a stop / wait /
start, and a fast restart while a group commit is held open inside its transaction (a test session holds a
lock the commit needs, so the restart lands between BEGIN and COMMIT):

* every acknowledged (200) write is in the audit log afterwards (read straight from SQL);
* no request waits past ``REQUEST_BOUND_S`` (each request's latency is measured), and what fails while the
  database is away is a 503 with a ``detail``;
* writes succeed again within ``RECOVERY_BOUND_S`` of the database's return, without restarting the daemon.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.activation_load import Write, random_write
from tests.daemon_process import DaemonProcess, free_port
from tests.services import unavailable

pytestmark = [pytest.mark.timeout(120)]

WORLDS = [f"pg-{i}" for i in range(4)]
WRITERS = 8
# The daemon's bounds for this run (storage settings, write timeout): a request waits at most about one
# connect timeout plus one pool timeout, well inside this.
REQUEST_BOUND_S = 6.0
RECOVERY_BOUND_S = 5.0
DAEMON_SETTINGS = {
    "WORLDSERVICE__STORAGE__SQL_CONNECT_TIMEOUT_S": "2",
    "WORLDSERVICE__STORAGE__SQL_POOL_TIMEOUT_S": "2",
    "WORLDSERVICE__STORAGE__SQL_STATEMENT_TIMEOUT_S": "5",
    "WORLDSERVICE__ACTORS__WRITE_TIMEOUT_S": "5",
}
DEADLINE_S = 20.0


# --- the private cluster ----------------------------------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and shutil.which("initdb"):
        found = [shutil.which("initdb")]  # type: ignore[list-item]
    if not found:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl)", FileNotFoundError("initdb"))
    return Path(found[-1]).parent


def _as_postgres(*command: str) -> list[str]:
    """The machine runs the suite as root, and PostgreSQL refuses to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)


@dataclass
class Cluster:
    bin: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        subprocess.run(_as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"),
                                    "-o", options, "-w", "-t", "30", *args), check=True, capture_output=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    pg_bin = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="ws-pg-"))
    try:
        shutil.chown(root, "postgres", "postgres")
        node = Cluster(pg_bin, root, free_port())
        subprocess.run(_as_postgres(str(pg_bin / "initdb"), "-D", str(node.data), "-U", "postgres",
                                    "--auth=trust", "-N"), check=True, capture_output=True)
        node.ctl("start")
        with psycopg.connect(node.admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("CREATE DATABASE ws")
        yield node
        node.ctl("stop", "-m", "immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- the load ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int  # 0: no HTTP reply
    latency_s: float
    ended_at: float
    etag: str | None = None
    detail: str | None = None
    key: str = ""
    write: Write | None = None


@dataclass
class Writers:
    base_url: str
    stop: threading.Event = field(default_factory=threading.Event)
    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, count: int, seed: int) -> None:
        for n in range(count):
            thread = threading.Thread(target=self._run, args=(random.Random(seed + n),), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, rng: random.Random) -> None:
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_BOUND_S * 3) as client:
            while not self.stop.is_set():
                self._one(client, random_write(rng, WORLDS))

    def _one(self, client: httpx.Client, write: Write) -> None:
        key = uuid.uuid4().hex
        began = time.monotonic()
        try:
            response = client.put(f"/worlds/{write.world}/activation", json=write.body(),
                                  headers={"Idempotency-Key": key})
            status, body = response.status_code, response.json()
        except httpx.HTTPError as exc:
            status, body = 0, {"detail": repr(exc)}
        ended = time.monotonic()
        outcome = Outcome(status, ended - began, ended, body.get("etag") if status == 200 else None,
                          body.get("detail") if status != 200 else None, key, write)
        with self.lock:
            self.outcomes.append(outcome)

    def snapshot(self) -> list[Outcome]:
        with self.lock:
            return list(self.outcomes)

    def wait_for(self, predicate, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + DEADLINE_S
        while not predicate(self.snapshot()):
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.02)

    def acks_since(self, moment: float) -> int:
        return sum(1 for o in self.snapshot() if o.status == 200 and o.ended_at > moment)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_BOUND_S * 4)
        assert not any(t.is_alive() for t in self.threads), "a writer hangs on the daemon"


def _db_back_then_writes(writers: Writers, back_at: float, phase: str) -> float:
    """Writes succeed again after the database returned: how long the first one took to arrive."""
    writers.wait_for(lambda outs: any(o.status == 200 and o.ended_at > back_at for o in outs),
                     f"a write acknowledged after {phase}")
    first = min(o.ended_at for o in writers.snapshot() if o.status == 200 and o.ended_at > back_at)
    recovery = first - back_at
    assert recovery < RECOVERY_BOUND_S, f"{phase}: first write acknowledged {recovery:.2f} s after the database returned"
    return recovery


def _hold_group_commit_then_restart(cluster: Cluster, writers: Writers) -> float:
    """Hold a lock every activation write needs, wait until the daemon's group commit waits on it inside its
    transaction, then fast-restart the cluster under it: the commit is cut off between BEGIN and COMMIT."""
    blocker = psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/ws", connect_timeout=5)
    blocker.execute("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
    deadline = time.monotonic() + DEADLINE_S
    with psycopg.connect(cluster.admin_dsn, autocommit=True, connect_timeout=5) as watcher:
        while not watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'ws' "
                                  "AND wait_event_type = 'Lock' AND state = 'active'").fetchone()[0]:
            assert time.monotonic() < deadline, "the daemon's group commit never reached the held lock"
            time.sleep(0.01)
    cluster.ctl("restart", "-m", "fast")
    blocker.close()
    return time.monotonic()


def _retry_refused(base_url: str, writers: Writers) -> int:
    """Every write that was not acknowledged is sent again with its Idempotency-Key until it is: one whose
    first commit landed (its outcome was unknown to the daemon) must be answered from the stored reply,
    not applied a second time."""
    refused = [o for o in writers.snapshot() if o.status != 200]
    with httpx.Client(base_url=base_url, timeout=REQUEST_BOUND_S * 3) as client:
        for outcome in refused:
            assert outcome.write is not None
            response = client.put(f"/worlds/{outcome.write.world}/activation", json=outcome.write.body(),
                                  headers={"Idempotency-Key": outcome.key})
            assert response.status_code == 200, f"retry of a refused write: {response.status_code} {response.text}"
    return len(refused)


def _check_applied_once(writers: Writers, cluster: Cluster) -> None:
    """After the retries every write was applied exactly once: one audit entry per write sent."""
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/ws", connect_timeout=5) as conn:
        entries = conn.execute("SELECT count(*) FROM audit_log WHERE event = 'activation_updated'").fetchone()[0]
    sent = len(writers.snapshot())
    assert entries == sent, f"{sent} writes (each retried with its Idempotency-Key until acknowledged), " \
                            f"{entries} applied: a write whose commit outcome was unknown was applied twice or lost"


def _check(writers: Writers, cluster: Cluster) -> dict[str, float]:
    outcomes = writers.snapshot()
    acked = {o.etag for o in outcomes if o.status == 200}
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{cluster.port}/ws", connect_timeout=5) as conn:
        stored = {row[0] for row in conn.execute(
            "SELECT result->>'etag' FROM audit_log WHERE event = 'activation_updated'")}
    lost = acked - stored
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes missing from SQL, e.g. {sorted(lost)[:3]}"
    slow = [o for o in outcomes if o.latency_s > REQUEST_BOUND_S]
    assert not slow, f"{len(slow)} requests waited past {REQUEST_BOUND_S} s, e.g. {slow[:3]}"
    odd = [o for o in outcomes if o.status not in (200, 503) or (o.status == 503 and not o.detail)]
    assert not odd, f"requests answered neither 200 nor a 503 with a detail: {odd[:5]}"
    return {"acked": len(acked), "refused_503": dict(Counter(o.detail for o in outcomes if o.status == 503)),
            "max_latency_s": max(o.latency_s for o in outcomes)}


def test_postgres_restarts_under_concurrent_writes(cluster: Cluster, tmp_path: Path) -> None:
    env = {"WORLDSERVICE__SERVER__DSN": f"postgresql://postgres@127.0.0.1:{cluster.port}/ws", **DAEMON_SETTINGS}
    with DaemonProcess(tmp_path / "data", tmp_path / "daemon.log", env=env) as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            for world in WORLDS:
                assert client.post("/worlds", json={"id": world}).status_code == 201
        writers = Writers(daemon.url)
        writers.start(WRITERS, seed=15)
        recoveries = {}
        try:
            writers.wait_for(lambda outs: sum(o.status == 200 for o in outs) >= 50, "writes before the faults")

            cluster.ctl("restart", "-m", "fast")
            recoveries["restart"] = _db_back_then_writes(writers, time.monotonic(), "a fast restart")

            stopped_at = time.monotonic()
            cluster.ctl("stop", "-m", "fast")
            writers.wait_for(lambda outs: sum(o.status == 503 and o.ended_at > stopped_at for o in outs) >= 20,
                             "writes refused while the database is stopped")
            cluster.ctl("start")
            recoveries["stop_start"] = _db_back_then_writes(writers, time.monotonic(), "a stop and start")

            back_at = _hold_group_commit_then_restart(cluster, writers)
            recoveries["in_group_commit"] = _db_back_then_writes(writers, back_at, "a restart inside a group commit")
            writers.wait_for(lambda outs: writers.acks_since(back_at) >= 20, "writes after the last restart")
        finally:
            writers.join()
        numbers = _check(writers, cluster)
        numbers["retried"] = _retry_refused(daemon.url, writers)
        _check_applied_once(writers, cluster)
        print(f"pg faults: {numbers}, recovery after the database returned (s): "
              f"{ {k: round(v, 3) for k, v in recoveries.items()} }")
