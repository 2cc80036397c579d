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
import time
from pathlib import Path

import httpx
import pytest

from tests.activation_load import (
    HTTP_TIMEOUT_S, WAIT_FOR_ACKS_S, Load, check_audit, check_counter_moves_on, check_current, create_worlds,
    join_writers, random_writes, read_audit, seed_from, start_writers,
)
from tests.daemon_process import DaemonProcess

# Registered by pytest-timeout; the suite's default is 120 s and this test normally takes < 10 s.
pytestmark = [pytest.mark.timeout(100)]

WORLDS = [f"term-{i}" for i in range(4)]
WRITERS = 8
SIGNAL_AFTER_ACKS = (30, 150)
EXIT_TIMEOUT_S = 30.0  # uvicorn's graceful timeout is 25 s; the actors' drain comes after it


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


def _sigterm(daemon: DaemonProcess, load: Load) -> tuple[int | None, float]:
    """Send SIGTERM; the daemon's exit code (``None``: still running after ``EXIT_TIMEOUT_S``) and how long
    it took to exit."""
    load.signalled.set()
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    try:
        code: int | None = daemon.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - started


def _sigterm_under_load(daemon: DaemonProcess, load: Load, seed: int, why: str) -> tuple[int | None, float]:
    """Writers (each with its own random writes, seeded ``seed + i``) hammer the daemon until a request
    fails; once ``after_acks`` writes are acknowledged it gets SIGTERM. Returns what ``_sigterm`` does."""
    sources = [random_writes(random.Random(seed + i), WORLDS, load.stop) for i in range(WRITERS)]
    threads = start_writers(daemon.url, load, sources)
    try:
        assert load.reached.wait(timeout=WAIT_FOR_ACKS_S), load.too_few_acks(daemon, why)
        code, took = _sigterm(daemon, load)
    finally:
        load.stop.set()  # only matters when the daemon did not stop serving
        stopped = join_writers(threads)
    assert stopped, f"writer threads hang after SIGTERM; {why}"
    return code, took


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
    seed = seed_from(os.environ.get("SIGTERM_TEST_SEED"))
    rng = random.Random(seed)
    load = Load(after_acks=rng.randint(*SIGNAL_AFTER_ACKS), ending_statuses=frozenset({503}))
    why = f"seed {seed} (rerun with SIGTERM_TEST_SEED={seed}), SIGTERM after {load.after_acks} acks"

    with DaemonProcess(tmp_path / "data", tmp_path / "daemon.log") as daemon:
        daemon.start()
        with httpx.Client(base_url=daemon.url, timeout=HTTP_TIMEOUT_S) as client:
            create_worlds(client, WORLDS)

        code, took = _sigterm_under_load(daemon, load, seed, why)
        why += (f", {len(load.acks)} acknowledged ({load.late()} after the signal), writers ended by "
                f"{load.ended_by()}")
        _check_clean_exit(daemon, load, code, took, why)

        daemon.start()  # same data directory
        with httpx.Client(base_url=daemon.url, timeout=HTTP_TIMEOUT_S) as client:
            response = client.get("/readyz")
            assert response.status_code == 200, f"/readyz after restart: {response.status_code}; {why}"
            for world in WORLDS:
                acks = load.acks_in(world)
                by_etag = check_audit(world, read_audit(client, world), acks, "SIGTERM", why)
                check_current(client, acks, by_etag, why)
                check_counter_moves_on(client, world, by_etag, why)


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
