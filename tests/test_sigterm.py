"""SLOW SHUTDOWN TEST: SIGTERM the daemon while activation writes are in flight.

A real daemon process (SQLite file, in-memory projection) takes concurrent ``PUT /activation`` writes from
several threads, each with its own HTTP client; after a random number of writes were acknowledged it gets
SIGTERM. The writers keep writing until their requests fail (connection refused or reset, or 503 while
draining). Then:

* the daemon exits by itself with code 0 within ``EXIT_TIMEOUT_S`` (no hang, no re-raised signal), and its
  log has the ``"event": "stopped"`` line that ``serve`` writes after the actors drained, and no traceback;
* after a restart on the same data directory ``/readyz`` is 200 and every acknowledged write, including
  those acknowledged after the signal, is in the audit log exactly once, with what was written; the
  current activation of every written (world, strategy, side) is its last acknowledged write or a later
  one that is itself in the audit log; activation counters keep increasing after the restart.

Takes about ten seconds (two daemon starts). The run is reproducible from its seed:
``SIGTERM_TEST_SEED=<n>`` (every failure message names the seed).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.daemon_process import DaemonProcess

# Registered by pytest-timeout; the suite's default is 120 s and this test normally takes < 10 s.
pytestmark = [pytest.mark.timeout(100)]

WORLDS = [f"term-{i}" for i in range(4)]
STRATEGIES = [f"s{i}" for i in range(5)]
SIDES = ("long", "short")
WRITERS = 8
SIGNAL_AFTER_ACKS = (30, 150)
WAIT_FOR_ACKS_S = 60.0
EXIT_TIMEOUT_S = 30.0  # uvicorn's graceful timeout is 25 s; the actors' drain comes after it
HTTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Write:
    world: str
    strategy: str
    side: str
    weight: float
    active: bool

    def body(self) -> dict[str, Any]:
        return {"strategy_id": self.strategy, "side": self.side, "active": self.active, "weight": self.weight}


@dataclass(frozen=True)
class Ack:
    write: Write
    etag: str
    after_signal: bool  # the reply arrived after SIGTERM was sent

    @property
    def counter(self) -> int:
        return etag_counter(self.etag)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.write.world, self.write.strategy, self.write.side)


@dataclass
class Load:
    """What the writer threads share: the acknowledgements, how the writes ended and the signal trigger."""

    signal_after: int
    acks: list[Ack] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)  # each writer's last failure (outcome unknown)
    refused: list[str] = field(default_factory=list)  # non-2xx answers other than 503 (there should be none)
    reached: threading.Event = field(default_factory=threading.Event)  # signal_after acks are in
    signalled: threading.Event = field(default_factory=threading.Event)  # SIGTERM was sent
    stop: threading.Event = field(default_factory=threading.Event)  # the test gives up on the daemon
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged(self, write: Write, etag: str, after_signal: bool) -> None:
        with self.lock:
            self.acks.append(Ack(write=write, etag=etag, after_signal=after_signal))
            if len(self.acks) >= self.signal_after:
                self.reached.set()

    def end(self, why: str) -> None:
        with self.lock:
            self.ended.append(why)


def etag_counter(etag: str) -> int:
    """``act:{world}:{strategy}:{side}:{counter}``: the counter is per world and only ever increases."""
    return int(etag.rsplit(":", 1)[1])


def _writer(base_url: str, load: Load, seed: int) -> None:
    """Write random activations until a request fails (the daemon stopped serving) or the test stops."""
    rng = random.Random(seed)
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S) as client:
        while not load.stop.is_set():
            write = Write(world=rng.choice(WORLDS), strategy=rng.choice(STRATEGIES), side=rng.choice(SIDES),
                          weight=round(rng.random(), 4), active=rng.random() < 0.7)
            try:
                response = client.put(f"/worlds/{write.world}/activation", json=write.body())
            except httpx.TransportError as exc:  # refused, reset, or closed under the request
                load.end(f"{exc!r}")
                return
            # Approximate (for the report only): the reply was read after the signal was sent.
            after_signal = load.signalled.is_set()
            if response.status_code == 503:
                load.end(f"503 {response.text}")
                return
            if not response.is_success:
                with load.lock:
                    load.refused.append(f"{write}: {response.status_code} {response.text}")
                continue
            load.acknowledged(write, response.json()["etag"], after_signal)


def _audit(client: httpx.Client, world: str) -> list[dict[str, Any]]:
    """The world's whole audit log, following ``X-Next-After``."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        response = client.get(f"/worlds/{world}/audit", params={"after": after, "limit": 1000})
        assert response.status_code == 200, response.text
        entries += response.json()
        next_after = response.headers.get("X-Next-After")
        if next_after is None:
            return entries
        assert int(next_after) > after, f"audit cursor did not advance: {after} -> {next_after}"
        after = int(next_after)


def _log_events(text: str) -> list[str]:
    """The ``event`` of every JSON log line (uvicorn's own lines and the start markers are not JSON)."""
    events = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            events.append(record["event"])
    return events


def _sigterm_under_load(daemon: DaemonProcess, load: Load, seed: int, why: str) -> tuple[int | None, float]:
    """Writers hammer the daemon; once ``signal_after`` writes are acknowledged it gets SIGTERM. Returns
    its exit code (``None``: still running after ``EXIT_TIMEOUT_S``) and how long it took to exit."""
    threads = [threading.Thread(target=_writer, args=(daemon.url, load, seed + i), name=f"writer-{i}",
                                daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    code: int | None = None
    took = 0.0
    try:
        reached = load.reached.wait(timeout=WAIT_FOR_ACKS_S)
        assert reached, (f"only {len(load.acks)} of {load.signal_after} writes acknowledged in "
                         f"{WAIT_FOR_ACKS_S:.0f} s ({load.ended[:3]}); {why}\n{daemon.log_tail()}")
        load.signalled.set()
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(timeout=EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        took = time.monotonic() - started
    finally:
        load.stop.set()  # only matters when the daemon did not stop serving
        deadline = time.monotonic() + 2 * HTTP_TIMEOUT_S
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"writer threads hang after SIGTERM; {why}"
    return code, took


def _check_audit(world: str, audit: list[dict[str, Any]], acks: list[Ack],
                 why: str) -> dict[str, dict[str, Any]]:
    """Acknowledged writes are in the audit log exactly once, with what was written; etag -> result."""
    results = [e["result"] for e in audit if e["event"] == "activation_updated"]
    duplicates = [etag for etag, n in Counter(r["etag"] for r in results).items() if n > 1]
    assert not duplicates, f"{world}: etags recorded more than once in the audit log: {duplicates}; {why}"
    by_etag = {r["etag"]: r for r in results}
    lost = [a for a in acks if a.etag not in by_etag]
    assert not lost, (f"{world}: {len(lost)} of {len(acks)} acknowledged writes missing from the audit log "
                      f"after SIGTERM ({sum(a.after_signal for a in lost)} of them acknowledged after the "
                      f"signal), e.g. {lost[:3]}; {why}")
    for ack in acks:
        got = by_etag[ack.etag]
        recorded = (got["strategy_id"], got["side"], got["weight"], got["active"])
        assert recorded == (ack.write.strategy, ack.write.side, ack.write.weight, ack.write.active), \
            f"{world}: audit entry {ack.etag} records {recorded}, the write was {ack.write}; {why}"
    return by_etag


def _check_current(client: httpx.Client, world: str, acks: list[Ack], by_etag: dict[str, dict[str, Any]],
                   why: str) -> None:
    """Each written (strategy, side) shows its last acknowledged write or a later committed one."""
    last: dict[tuple[str, str, str], Ack] = {}
    for ack in acks:  # replies may arrive out of order across threads: the highest counter is the last
        if ack.key not in last or ack.counter > last[ack.key].counter:
            last[ack.key] = ack
    for (_, strategy, side), ack in sorted(last.items()):
        response = client.get(f"/worlds/{world}/activation", params={"strategy_id": strategy, "side": side})
        assert response.status_code == 200, f"{world}/{strategy}/{side}: {response.text}; {why}"
        current = response.json()
        assert etag_counter(current["etag"]) >= ack.counter, \
            f"{world}/{strategy}/{side}: rolled back to {current['etag']}, {ack.etag} was acknowledged; {why}"
        origin = by_etag.get(current["etag"])
        assert origin is not None, f"{world}/{strategy}/{side}: current {current['etag']} not in audit; {why}"
        assert (current["weight"], current["active"]) == (origin["weight"], origin["active"]), \
            f"{world}/{strategy}/{side}: {current} differs from its audit entry {origin}; {why}"


def _check_counter_moves_on(client: httpx.Client, world: str, by_etag: dict[str, dict[str, Any]],
                            why: str) -> None:
    """A write after the restart gets a counter above every one in the audit log (no etag reused)."""
    highest = max((etag_counter(etag) for etag in by_etag), default=0)
    response = client.put(f"/worlds/{world}/activation", json={"strategy_id": "s0", "side": "long",
                                                               "active": True})
    assert response.status_code == 200, f"{world}: write after restart: {response.text}; {why}"
    etag = response.json()["etag"]
    assert etag_counter(etag) > highest, f"{world}: counter reused after restart ({etag} <= {highest}); {why}"


def _check_clean_exit(daemon: DaemonProcess, load: Load, code: int | None, took: float, why: str) -> None:
    """Exit code 0 in time, the drain's ``stopped`` line and no traceback; every writer ended on a failed
    request and none was refused before that."""
    log = daemon.log_path.read_text(errors="replace")
    tail = log[-4000:]
    assert code is not None, f"daemon still running {EXIT_TIMEOUT_S:.0f} s after SIGTERM; {why}\n{tail}"
    assert code == 0, f"daemon exited with code {code} after SIGTERM ({took:.1f} s); {why}\n{tail}"
    assert "stopped" in _log_events(log), f"no 'stopped' log line after SIGTERM; {why}\n{tail}"
    assert "Traceback" not in log, f"traceback in the daemon's log; {why}\n{tail}"
    assert not load.refused, f"writes refused before the daemon stopped: {load.refused[:5]}; {why}"
    assert len(load.ended) == WRITERS, f"writers did not all end on a failed request: {load.ended}; {why}"


def test_sigterm_during_activation_writes_exits_cleanly_and_keeps_acknowledged_writes(tmp_path: Path) -> None:
    seed = int(os.environ.get("SIGTERM_TEST_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    load = Load(signal_after=rng.randint(*SIGNAL_AFTER_ACKS))
    why = f"seed {seed} (rerun with SIGTERM_TEST_SEED={seed}), SIGTERM after {load.signal_after} acks"

    with DaemonProcess(tmp_path / "data", tmp_path / "daemon.log") as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=HTTP_TIMEOUT_S) as client:
            for world in WORLDS:
                response = client.post("/worlds", json={"id": world})
                assert response.status_code == 201, response.text

        code, took = _sigterm_under_load(daemon, load, seed, why)
        late = sum(a.after_signal for a in load.acks)
        why += (f", {len(load.acks)} acknowledged ({late} after the signal), writers ended by "
                f"{sorted({e.split('(')[0] for e in load.ended})}")
        _check_clean_exit(daemon, load, code, took, why)

        daemon.start()  # same data directory
        with httpx.Client(base_url=daemon.url, timeout=HTTP_TIMEOUT_S) as client:
            response = client.get("/readyz")
            assert response.status_code == 200, f"/readyz after restart: {response.status_code}; {why}"
            for world in WORLDS:
                acks = [a for a in load.acks if a.write.world == world]
                by_etag = _check_audit(world, _audit(client, world), acks, why)
                _check_current(client, world, acks, by_etag, why)
                _check_counter_moves_on(client, world, by_etag, why)


def test_repeated_signals_still_end_in_a_clean_drain(tmp_path: Path) -> None:
    """Supervisors (and operators pressing Ctrl-C twice) signal more than once: every later signal lands
    while the first is being handled, and the daemon must still drain and exit 0."""
    daemon = DaemonProcess(tmp_path / "data", tmp_path / "daemon.log")
    with daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=10) as client:
            assert client.post("/worlds", json={"id": "w"}).status_code == 201
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGTERM):
            daemon.send_signal(sig)
        assert daemon.wait(timeout=30) == 0
        log = daemon.log_tail(100_000)
        assert '"event": "stopped"' in log and "Traceback" not in log
