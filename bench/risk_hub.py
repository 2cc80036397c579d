"""Benchmark of the Risk Signal Hub: snapshot ingest through the actors, and extended validation of a
200-asset covariance.

    uv run python bench/risk_hub.py                      # both sections, SQLite file in a temp dir
    uv run python bench/risk_hub.py --dsn postgresql://postgres@127.0.0.1:5432/test
    uv run python bench/risk_hub.py --pushes 2000 --worlds 20 --inflight 1,32 --assets 200

1. Ingest, in process (no HTTP): a runtime as the daemon builds it (``daemon.build_runtime``: SQL store,
   in-memory ControlBus; the hub's consumer off, so this is the push path alone), ``--worlds`` worlds, then
   ``--pushes`` ``PushRiskSnapshot`` commands (5 weights, a 5x5 covariance inline) sent to the actor system
   with up to ``--inflight`` unanswered at a time, spread over the worlds. Each push is validated and hashed
   by the hub actor and accepted by its world's actor: one snapshot row, one audit entry and one outbox
   event committed (group commit shares a transaction between worlds). Reported: pushes/s from the first
   send to the last answer, p50/p99 latency.
2. Extended validation of one snapshot of ``--assets`` assets (``--assets - 10`` weighted, 10 candidates)
   with a dense covariance (``assets^2`` entries, ``"a,b"`` keys), best of ``--rounds``:
     validate+hash  ``domain.risk_snapshots.validated`` (the push's checks and the sha256 content hash)
     offload        ``offloaded``: the covariance replaced by its blob reference (hashing it once more)
     blocks         ``domain.extended_blocks.blocks_for``: the key parsing into a matrix, the baseline
                    VaR/ES, every candidate's increment and the per-strategy blocks, as the worker runs it
     numeric        ``portfolio_risk`` + ``incremental_var_es`` on the ready matrix (the numpy part alone)

Client and actors share this machine's cores (2 here, shared with other processes): the numbers are
indicative, a lower bound.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pykka

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))  # run as a script, only bench/ is on sys.path

from actors.bridge import Request  # noqa: E402
from config import load_config  # noqa: E402
from daemon import build_runtime  # noqa: E402
from domain import risk_snapshots as rs  # noqa: E402
from domain.extended_blocks import blocks_for  # noqa: E402
from domain.risk_measures import covariance_matrix, incremental_var_es, portfolio_risk  # noqa: E402
from messages import commands as c  # noqa: E402
from messages.risk_hub import RiskSnapshotIn  # noqa: E402
from messages.worlds import WorldCreate  # noqa: E402

ASSETS_5 = [f"s{i}" for i in range(5)]
COV_5 = {f"{a},{b}": (0.04 if a == b else 0.005) for a in ASSETS_5 for b in ASSETS_5}


def _ask(system, command, timeout: float = 60):  # noqa: ANN001, ANN202
    future: pykka.ThreadingFuture = pykka.ThreadingFuture()
    system.send(Request(command=command, reply=future.set))
    return future.get(timeout=timeout)


def ingest(dsn: str | None, worlds: int, pushes: int, inflight: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        ws = {"data_dir": tmp, "server": {"dsn": dsn}, "risk_hub": {"consumer_enabled": False}}
        runtime = build_runtime(load_config(environ={}, overrides={"worldservice": ws}))
        try:
            system = runtime.system
            suffix = os.urandom(3).hex()
            ids = [f"bench-{suffix}-{n}" for n in range(worlds)]
            for wid in ids:
                assert _ask(system, c.CreateWorld(world_id=wid, body=WorldCreate(id=wid))).status == 201
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            latencies: list[float] = []
            pending: list[tuple[float, pykka.ThreadingFuture]] = []
            started = time.perf_counter()
            for n in range(pushes):
                body = RiskSnapshotIn(as_of=now, version=f"v{n}", weights={a: 0.2 for a in ASSETS_5}, covariance=COV_5)
                future: pykka.ThreadingFuture = pykka.ThreadingFuture()
                command = c.PushRiskSnapshot(world_id=ids[n % worlds], body=body, producer="bench", stage="paper")
                pending.append((time.perf_counter(), future))
                system.send(Request(command=command, reply=future.set))
                if len(pending) >= inflight:
                    sent_at, oldest = pending.pop(0)
                    assert oldest.get(timeout=60).status == 200
                    latencies.append(time.perf_counter() - sent_at)
            for sent_at, future in pending:
                assert future.get(timeout=60).status == 200
                latencies.append(time.perf_counter() - sent_at)
            elapsed = time.perf_counter() - started
        finally:
            runtime.close()
    lat = np.asarray(latencies) * 1000
    return pushes / elapsed, float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def _best(fn, rounds: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def extended(assets: int, rounds: int) -> dict[str, float]:
    rng = np.random.default_rng(7)
    names = [f"a{i}" for i in range(assets)]
    factors = rng.normal(0, 0.02, (assets, assets))
    matrix = factors @ factors.T / assets + np.eye(assets) * 1e-4
    cov = {f"{a},{b}": float(matrix[i, j]) for i, a in enumerate(names) for j, b in enumerate(names)}
    weighted = names[:-10]
    weights = {a: 1 / len(weighted) for a in weighted}
    now = datetime.now(UTC)
    body = RiskSnapshotIn(as_of=now.strftime("%Y-%m-%dT%H:%M:%SZ"), version="v", weights=weights, covariance=cov)
    limits = rs.HubLimits()
    snapshot = rs.validated("w", body, "bench", "paper", now, limits)
    w = np.asarray([weights.get(a, 0.0) for a in names])
    return {
        "validate+hash": _best(lambda: rs.validated("w", body, "bench", "paper", now, limits), rounds),
        "offload": _best(lambda: rs.offloaded(snapshot, limits), rounds),
        "blocks": _best(lambda: blocks_for(snapshot), rounds),
        "numeric": _best(lambda: (portfolio_risk(w, matrix), incremental_var_es(w, matrix, 0.1)), rounds),
        "matrix": _best(lambda: covariance_matrix(names, cov), rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=None)
    parser.add_argument("--worlds", type=int, default=20)
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--inflight", default="1,32")
    parser.add_argument("--assets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}, backend {args.dsn or 'sqlite file'}")
    if not args.skip_ingest:
        print(f"{'inflight':>8} {'pushes/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
        for inflight in (int(x) for x in args.inflight.split(",")):
            rate, p50, p99 = ingest(args.dsn, args.worlds, args.pushes, inflight)
            print(f"{inflight:>8} {rate:>10.0f} {p50:>8.2f} {p99:>8.2f}")
    timings = extended(args.assets, args.rounds)
    print(f"extended validation, {args.assets} assets ({args.assets ** 2} covariance entries), best of {args.rounds}:")
    for name, ms in timings.items():
        print(f"  {name:<14} {ms:8.2f} ms")


if __name__ == "__main__":
    main()
