"""Concurrent ``PUT /worlds/{id}/activation`` load on a real daemon, and the checks that no acknowledged
write was lost; shared by the fault-injection tests (``test_crash``: ``kill -9``, ``test_sigterm``: SIGTERM).

Writer threads, each with its own HTTP client, send ``Write``s until their source runs dry or a request
fails; the ``Load`` they share collects the acknowledgements (``Ack``), sets ``reached`` once enough are in
(the test then kills or signals the daemon) and records how each writer ended. After a restart the checks
compare the acknowledgements with the audit log and the current activations. Every check takes ``why``
(the seed and the run's numbers), which ends each failure message.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.daemon_process import DaemonProcess

STRATEGIES = [f"s{i}" for i in range(5)]
SIDES = ("long", "short")
WAIT_FOR_ACKS_S = 60.0
HTTP_TIMEOUT_S = 10.0

Results = dict[str, dict[str, Any]]  # etag -> the audit entry's result


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
    after_signal: bool = False  # the reply was read after the daemon was signalled (approximate)

    @property
    def counter(self) -> int:
        return etag_counter(self.etag)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.write.world, self.write.strategy, self.write.side)


@dataclass(frozen=True)
class Ended:
    """The failed request a writer ended on: its outcome is unknown (it may have committed)."""

    write: Write
    reason: str  # the transport error's repr, or the status code and body of an ending status


@dataclass
class Load:
    """What the writer threads share: the acknowledgements, how the writers ended and the triggers."""

    after_acks: int  # ``reached`` is set once this many writes are acknowledged
    ending_statuses: frozenset[int] = frozenset()  # answers that end a writer (say 503 while draining)
    acks: list[Ack] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # other non-2xx answers (there should be none)
    reached: threading.Event = field(default_factory=threading.Event)
    signalled: threading.Event = field(default_factory=threading.Event)  # the test signalled the daemon
    stop: threading.Event = field(default_factory=threading.Event)  # the test gives up on the daemon
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledged(self, write: Write, etag: str, after_signal: bool) -> None:
        with self.lock:
            self.acks.append(Ack(write=write, etag=etag, after_signal=after_signal))
            if len(self.acks) >= self.after_acks:
                self.reached.set()

    def end(self, write: Write, reason: str) -> None:
        with self.lock:
            self.ended.append(Ended(write=write, reason=reason))

    def refuse(self, write: Write, response: httpx.Response) -> None:
        with self.lock:
            self.refused.append(f"{write}: {response.status_code} {response.text}")

    def acks_in(self, world: str) -> list[Ack]:
        return [a for a in self.acks if a.write.world == world]

    def late(self) -> int:
        """How many acknowledgements were read after the signal."""
        return sum(a.after_signal for a in self.acks)

    def ended_by(self) -> list[str]:
        """What the writers ended on, without the details (``ReadError``, ``503 ...``)."""
        return sorted({e.reason.split("(")[0] for e in self.ended})

    def too_few_acks(self, daemon: DaemonProcess, why: str) -> str:
        """The failure message when ``reached`` was not set in ``WAIT_FOR_ACKS_S``."""
        return (f"only {len(self.acks)} of {self.after_acks} writes acknowledged in {WAIT_FOR_ACKS_S:.0f} s "
                f"({len(self.ended)} failed: {self.ended[:3]}); {why}\n{daemon.log_tail()}")


def etag_counter(etag: str) -> int:
    """``act:{world}:{strategy}:{side}:{counter}``: the counter is per world and only ever increases."""
    return int(etag.rsplit(":", 1)[1])


def seed_from(value: str | None) -> int:
    """The run's seed: ``value`` (an environment variable's) when set, else a fresh random one."""
    return int(value or random.SystemRandom().randrange(2**32))


def random_write(rng: random.Random, worlds: list[str]) -> Write:
    return Write(world=rng.choice(worlds), strategy=rng.choice(STRATEGIES), side=rng.choice(SIDES),
                 weight=round(rng.random(), 4), active=rng.random() < 0.7)


def random_writes(rng: random.Random, worlds: list[str], stop: threading.Event) -> Iterator[Write]:
    """Random writes until ``stop`` is set."""
    while not stop.is_set():
        yield random_write(rng, worlds)


# --- writers ---------------------------------------------------------------------------------------


def _send(client: httpx.Client, load: Load, write: Write) -> bool:
    """One write; False when it ended the writer (a transport error or an ending status)."""
    try:
        response = client.put(f"/worlds/{write.world}/activation", json=write.body())
    except httpx.TransportError as exc:  # refused, reset, or closed under the request
        load.end(write, repr(exc))
        return False
    after_signal = load.signalled.is_set()  # read after the signal was sent (for the report only)
    if response.status_code in load.ending_statuses:
        load.end(write, f"{response.status_code} {response.text}")
        return False
    if not response.is_success:
        load.refuse(write, response)
    else:
        load.acknowledged(write, response.json()["etag"], after_signal)
    return True


def writer(base_url: str, load: Load, writes: Iterable[Write]) -> None:
    """Send ``writes`` until none are left or a request fails (the daemon stopped serving)."""
    with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S) as client:
        for write in writes:
            if not _send(client, load, write):
                return


def start_writers(base_url: str, load: Load, sources: list[Iterable[Write]]) -> list[threading.Thread]:
    """One daemon thread per source of writes, started."""
    threads = [threading.Thread(target=writer, args=(base_url, load, writes), name=f"writer-{i}", daemon=True)
               for i, writes in enumerate(sources)]
    for thread in threads:
        thread.start()
    return threads


def join_writers(threads: list[threading.Thread]) -> bool:
    """Wait up to two HTTP timeouts in all for the writers to end; True when none is left running."""
    deadline = time.monotonic() + 2 * HTTP_TIMEOUT_S
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


# --- reading back ----------------------------------------------------------------------------------


def create_worlds(client: httpx.Client, worlds: list[str]) -> None:
    for world in worlds:
        response = client.post("/worlds", json={"id": world})
        assert response.status_code == 201, response.text


def read_audit(client: httpx.Client, world: str) -> list[dict[str, Any]]:
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


def activation_results(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results of the log's ``activation_updated`` entries, in audit order."""
    return [e["result"] for e in audit if e["event"] == "activation_updated"]


# --- checks ----------------------------------------------------------------------------------------


def _check_once(world: str, results: list[dict[str, Any]], why: str) -> Results:
    """No etag is recorded twice; etag -> result."""
    duplicates = [etag for etag, n in Counter(r["etag"] for r in results).items() if n > 1]
    assert not duplicates, f"{world}: etags recorded more than once in the audit log: {duplicates}; {why}"
    return {r["etag"]: r for r in results}


def _check_recorded(world: str, ack: Ack, got: dict[str, Any], why: str) -> None:
    recorded = (got["strategy_id"], got["side"], got["weight"], got["active"])
    assert recorded == (ack.write.strategy, ack.write.side, ack.write.weight, ack.write.active), \
        f"{world}: audit entry {ack.etag} records {recorded}, the write was {ack.write}; {why}"


def check_audit(world: str, audit: list[dict[str, Any]], acks: list[Ack], event: str, why: str) -> Results:
    """Acknowledged writes are in the audit log exactly once, with what was written; etag -> result.
    ``event`` names what the daemon went through (``kill -9``, ``SIGTERM``)."""
    by_etag = _check_once(world, activation_results(audit), why)
    lost = [a for a in acks if a.etag not in by_etag]
    assert not lost, (f"{world}: {len(lost)} of {len(acks)} acknowledged writes missing from the audit log "
                      f"after {event} ({sum(a.after_signal for a in lost)} of them acknowledged after the "
                      f"signal), e.g. {lost[:3]}; {why}")
    for ack in acks:
        _check_recorded(world, ack, by_etag[ack.etag], why)
    return by_etag


def check_counters_in_audit_order(world: str, audit: list[dict[str, Any]], why: str) -> None:
    """Activation counters increase in audit order."""
    counters = [etag_counter(r["etag"]) for r in activation_results(audit)]
    assert counters == sorted(counters), f"{world}: activation counters not increasing in audit order; {why}"


def _last_acks(acks: list[Ack]) -> list[Ack]:
    """Each written (world, strategy, side)'s last acknowledged write, sorted by key. Replies may arrive
    out of order across threads: the highest counter is the last."""
    last: dict[tuple[str, str, str], Ack] = {}
    for ack in acks:
        if ack.key not in last or ack.counter > last[ack.key].counter:
            last[ack.key] = ack
    return [last[key] for key in sorted(last)]


def _check_one_current(client: httpx.Client, ack: Ack, by_etag: Results, why: str) -> None:
    world, strategy, side = ack.key
    where = f"{world}/{strategy}/{side}"
    response = client.get(f"/worlds/{world}/activation", params={"strategy_id": strategy, "side": side})
    assert response.status_code == 200, f"{where}: {response.text}; {why}"
    current = response.json()
    assert etag_counter(current["etag"]) >= ack.counter, \
        f"{where}: rolled back to {current['etag']}, {ack.etag} was acknowledged; {why}"
    if current["etag"] == ack.etag:
        assert (current["weight"], current["active"]) == (ack.write.weight, ack.write.active), \
            f"{where}: {current} does not match acknowledged {ack.write}; {why}"
    origin = by_etag.get(current["etag"])
    assert origin is not None, f"{where}: current {current['etag']} not in audit; {why}"
    assert (current["weight"], current["active"]) == (origin["weight"], origin["active"]), \
        f"{where}: {current} differs from its audit entry {origin}; {why}"


def check_current(client: httpx.Client, acks: list[Ack], by_etag: Results, why: str) -> None:
    """Each written (strategy, side) shows its last acknowledged write or a later committed one, which is
    itself in the audit log (``by_etag``) with the same weight and state."""
    for ack in _last_acks(acks):
        _check_one_current(client, ack, by_etag, why)


def check_counter_moves_on(client: httpx.Client, world: str, by_etag: Results, why: str) -> None:
    """A write after the restart gets a counter above every one in the audit log (no etag reused)."""
    highest = max((etag_counter(etag) for etag in by_etag), default=0)
    response = client.put(f"/worlds/{world}/activation", json={"strategy_id": "s0", "side": "long",
                                                               "active": True})
    assert response.status_code == 200, f"{world}: write after restart: {response.text}; {why}"
    etag = response.json()["etag"]
    assert etag_counter(etag) > highest, f"{world}: counter reused after restart ({etag} <= {highest}); {why}"
