"""Benchmark of the decision engine: the pure functions, and evidence intake and ``/decide`` over HTTP.

    uv run python bench/decision.py                         # both sections, own daemon (SQLite, temp dir)
    uv run python bench/decision.py --dsn postgresql://postgres@127.0.0.1:5432/test   # own daemon, PostgreSQL
    uv run python bench/decision.py --url http://127.0.0.1:8080   # HTTP section against a running daemon
    uv run python bench/decision.py --skip-http --sizes 1,10,50,100   # the engine only, more sizes
    uv run python bench/decision.py --worlds 100 --requests 2000 --concurrency 1,8,32   # the defaults

Every world uses one decision section with the full rule set (``DECISION`` below): data currency, sample
sufficiency (days, trades, bars), nested AND/OR gates over 4 metrics (sharpe, max_dd, calmar, hit_ratio),
a 3-metric weighted score with a minimum, the pairwise correlation constraint, the gross exposure
constraint and hysteresis. The generated evidence passes every rule, so every check runs to the end (a
``missing`` input would stop an evaluation early) and a world settles in ``live``.

1. Pure engine (no threads, no I/O): ``domain.decision.evaluate`` + ``advance`` + ``read``, the three
   steps an evidence POST and a ``/decide`` read take, on a world of N decided strategies; the state is
   carried from one iteration to the next as the actor does. ``time.perf_counter`` around loops of
   calls: the cycle and each step alone (evaluate, advance, read, and evaluate with the correlation
   constraint as its only rule) are timed in 40 interleaved rounds, ``--engine-seconds`` (default 2) per
   size in all, and the fastest round of each is reported, so load from other processes inflates them as
   little and as alike as possible (on a busy machine the steps still need not add up to the cycle; the
   load average is printed). The correlation constraint looks up every pair of strategies, N(N-1)/2 of
   them: ``us/pair`` (that evaluate over the pairs) stays flat while the cost grows with N squared. A
   second table times ``rules_of`` (the policy's decision section parsed into ``DecisionRules``) against
   ``rules_for_text``, its memoised form keyed by the policy's stored text, which ``reevaluate`` and
   ``decide`` call on every POST /history and every GET /decide on top of the engine.
2. HTTP end to end: a daemon started as ``bench/http_activation.py`` starts one (``DaemonProcess``, dev
   profile: SQLite file with synchronous=FULL, or ``--dsn`` PostgreSQL; in-memory bus and projection), or
   ``--url``. ``--worlds`` worlds are seeded, each with ``allow_live``, the decision policy as its default,
   ``--strategies`` bound and decided strategies and one evidence POST per strategy. Cases:
     post_history  POST /worlds/{id}/history, random world and strategy, fresh passing evidence (metrics,
                   correlations with the world's other strategies, data_end = now): one evaluation and
                   4 SQL statements each (evidence upsert, its audit entry, world_decisions upsert,
                   decision_history insert) in one transaction, which group commit may share with
                   other worlds' commands under concurrency
     decide        GET /worlds/{id}/decide, random world: answered from the actor's memory (the
                   envelope with ``score`` and ``hysteresis``), no SQL
   at each ``--concurrency`` level: req/s, p50/p99 latency (ms) and errors (transport failures, unexpected
   statuses), after an unmeasured warm-up. One keep-alive ``httpx.AsyncClient`` per asyncio worker.

Reused from ``bench/http_activation.py`` by import (``Result``, ``run_case``, ``table``, ``_expect``), with
the project root put on ``sys.path`` first as ``bench/apply.py`` does (run as a script, only ``bench/`` is
on it). ``run_case`` counts status 200 as a success, and POST /history answers 204: its send returns a
stand-in carrying status 200 for a 204 (``_Answered``). wrk is not used: the Lua scripts of
http_activation.py know only its cases, and evidence bodies need a fresh ``data_end``.

Client and daemon share this machine's cores (2 here) and compete for CPU: the HTTP numbers are a lower
bound of what the daemon alone could serve.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))  # run as a script, only bench/ is on sys.path

from bench.http_activation import Result, Send, _expect, run_case, table  # noqa: E402
from domain.decision import advance, evaluate, read  # noqa: E402
from domain.decision_rules import DecisionRules, parse_rules, rules_for_text, rules_of  # noqa: E402
from domain.hashing import canonical_json  # noqa: E402
from messages.decisions import DecisionState, HistoryEntry  # noqa: E402
from tests.daemon_process import DaemonProcess  # noqa: E402

CASES = ("post_history", "decide")
ROUNDS = 40
JSON_HEADERS = {"content-type": "application/json"}
_encode = msgspec.json.encode

DECISION: dict[str, Any] = {
    "promote_to": "live", "demote_to": "compute-only", "ttl": "1h",
    "data_currency": {"max_lag": "1h"},
    "sample": {"min_days": 30, "min_trades": 40, "min_bars": 500},
    "gates": {"and": ["sharpe >= 0.6",
                      {"or": ["max_dd <= 0.25", {"metric": "calmar", "min": 1}]},
                      {"or": ["hit_ratio >= 0.5", {"and": ["calmar >= 2", "sharpe >= 1.5"]}]}]},
    "score": {"weights": {"sharpe": 1.0, "calmar": 0.5, "ulcer": -0.2}, "min": 0.5},
    "constraints": {"correlation": {"max_pairwise": 0.8},
                    "exposure": {"metric": "gross_exposure", "max_gross": 1.0}},
    "hysteresis": {"promote_after": 2, "demote_after": 2, "min_dwell": "10m"},
}
POLICY = {"thresholds": {}, "decision": DECISION}


# --- evidence (both sections) -------------------------------------------------------------------------


def metrics(rng: random.Random, n_strategies: int) -> dict[str, float]:
    """Metrics that pass every rule of ``DECISION``; the exposures of N strategies sum to at most 0.9."""
    return {"sharpe": round(rng.uniform(1.0, 2.0), 4), "max_dd": round(rng.uniform(0.05, 0.2), 4),
            "calmar": round(rng.uniform(1.2, 3.0), 4), "hit_ratio": round(rng.uniform(0.5, 0.7), 4),
            "ulcer": round(rng.uniform(0.1, 0.5), 4), "n_trades_total": float(rng.randint(50, 500)),
            "sample_days": float(rng.randint(60, 400)), "gross_exposure": round(0.9 / n_strategies, 6)}


def evidence_body(rng: random.Random, sid: str, strategies: list[str], now: datetime) -> dict[str, Any]:
    """One POST /history body: the strategy's metrics and its correlations with every other strategy."""
    return {"strategy_id": sid, "node_id": "n1", "interval": 60, "rows": 5000, "dataset_fingerprint": "fp1",
            "data_end": now.isoformat(), "metrics": metrics(rng, len(strategies)),
            "correlations": {o: round(rng.uniform(-0.5, 0.5), 4) for o in strategies if o != sid}}


# --- 1. pure engine -----------------------------------------------------------------------------------


def calibrate(fn: Callable[[], object], target: float) -> int:
    """How many calls take about ``target`` seconds."""
    n = 1
    while (elapsed := _loop(fn, n) * n) < target / 4:
        n *= 2
    return max(1, round(n * target / max(elapsed, 1e-9)))


def per_call(fns: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Seconds per call of each function: ``ROUNDS`` rounds, each running every function for about
    ``seconds / ROUNDS / len(fns)`` in turn (interleaved, so a burst of load from elsewhere hits them
    alike); the fastest round of each function is reported."""
    target = seconds / ROUNDS / len(fns)
    counts = {name: calibrate(fn, target) for name, fn in fns.items()}
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(ROUNDS):
        for name, fn in fns.items():
            best[name] = min(best[name], _loop(fn, counts[name]))
    return best


def _loop(fn: Callable[[], object], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


@dataclass(frozen=True)
class World:
    rules: DecisionRules
    strategies: list[str]
    evidence: dict[str, HistoryEntry]
    at: datetime


def make_world(n: int, seed: int) -> World:
    rng, at = random.Random(seed), datetime.now(UTC)
    strategies = [f"s{i:03d}" for i in range(n)]
    evidence = {sid: HistoryEntry(**evidence_body(rng, sid, strategies, at), updated_at=at.isoformat())
                for sid in strategies}
    world = World(parse_rules(DECISION), strategies, evidence, at)
    verdict = evaluate(world.rules, strategies, evidence, at)
    if verdict.outcome != "pass":
        raise SystemExit(f"engine fixture of {n} strategies does not pass: {verdict}")
    return world


def cycle(w: World) -> Callable[[], object]:
    """evaluate + advance + read, the state carried over as the world actor does."""
    state: list[DecisionState | None] = [None]

    def run() -> object:
        verdict = evaluate(w.rules, w.strategies, w.evidence, w.at)
        state[0] = advance(state[0], w.rules, verdict, 1, w.at)
        return read(w.rules, state[0], w.strategies, w.evidence, w.at, True, False)

    return run


@dataclass(frozen=True)
class EngineRow:
    n: int
    cycle_s: float
    evaluate_s: float
    correlation_s: float  # evaluate with the pairwise correlation constraint as its only rule
    advance_s: float
    read_s: float

    @property
    def pairs(self) -> int:
        return self.n * (self.n - 1) // 2


def measure_engine(n: int, seconds: float, seed: int) -> EngineRow:
    w = make_world(n, seed)
    verdict = evaluate(w.rules, w.strategies, w.evidence, w.at)
    state = advance(advance(None, w.rules, verdict, 1, w.at), w.rules, verdict, 1, w.at)  # settled: live
    pairs_only = DecisionRules(max_pairwise_correlation=w.rules.max_pairwise_correlation)
    t = per_call({
        "cycle_s": cycle(w),
        "evaluate_s": lambda: evaluate(w.rules, w.strategies, w.evidence, w.at),
        "correlation_s": lambda: evaluate(pairs_only, w.strategies, w.evidence, w.at),
        "advance_s": lambda: advance(state, w.rules, verdict, 1, w.at),
        "read_s": lambda: read(w.rules, state, w.strategies, w.evidence, w.at, True, False),
    }, seconds)
    return EngineRow(n=n, **t)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f}"


def _engine_cells(r: EngineRow) -> tuple[str, ...]:
    per_pair = f"{r.correlation_s / r.pairs * 1e6:.3f}" if r.pairs else "-"
    return (str(r.n), str(r.pairs), f"{1 / r.cycle_s:,.0f}", _us(r.cycle_s), _us(r.evaluate_s),
            _us(r.advance_s), _us(r.read_s), _us(r.correlation_s), per_pair)


def aligned(cols: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*cols), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*row) for row in rows)])


def engine_table(rows: list[EngineRow]) -> str:
    cols = ("strategies", "pairs", "evals/s", "us/eval", "evaluate us", "advance us", "read us",
            "correlation us", "us/pair")
    return aligned(cols, [_engine_cells(r) for r in rows])


def rules_of_table(seconds: float) -> str:
    text = canonical_json(POLICY).decode()
    calls = {"rules_of(policy)": lambda: rules_of(POLICY), "rules_for_text(text)": lambda: rules_for_text(text)}
    times = per_call(calls, seconds)
    return aligned(("call", "calls/s", "us/call"), [(name, f"{1 / t:,.0f}", _us(t)) for name, t in times.items()])


def section_engine(args: argparse.Namespace) -> None:
    rows = []
    for n in args.sizes:
        rows.append(measure_engine(n, args.engine_seconds, args.seed))
        print(f"  done: engine, {n} strategies", file=sys.stderr, flush=True)
    print("\n1. Pure engine: evaluate + advance + read per evaluation (us = microseconds; the cycle and each "
          f"step alone timed in {ROUNDS} interleaved rounds, ~{args.engine_seconds:g} s per size, fastest "
          "round reported)")
    print(engine_table(rows))
    print("  correlation us = evaluate with the pairwise correlation constraint as its only rule (every pair "
          "looked up); us/pair = that / pairs")
    print("\n   Parsing the decision section: once per policy text (memoised) for every POST /history and "
          "GET /decide")
    print(rules_of_table(args.engine_seconds / 2))


# --- 2. HTTP end to end -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    worlds: list[str]
    strategies: list[str]


async def seed_world(client: httpx.AsyncClient, world: str, strategies: list[str],
                     rng: random.Random) -> None:
    body = {"strategies": strategies}
    await _expect(client.post("/worlds", json={"id": world, "allow_live": True}), 201)
    await _expect(client.post(f"/worlds/{world}/policies", json={"policy": POLICY}), 200)
    await _expect(client.post(f"/worlds/{world}/bindings", json=body), 200)
    await _expect(client.post(f"/worlds/{world}/decisions", json=body), 200)
    for sid in strategies:
        evidence = evidence_body(rng, sid, strategies, datetime.now(UTC))
        await _expect(client.post(f"/worlds/{world}/history", json=evidence), 204)


async def seed(base_url: str, n_worlds: int, n_strategies: int, concurrency: int = 16) -> Fixture:
    """Worlds get a per-run prefix so a shared daemon (``--url``, a reused database) never meets a 409."""
    run = uuid.uuid4().hex[:6]
    fixture = Fixture([f"dec-{run}-{i:03d}" for i in range(n_worlds)],
                      [f"s{j:02d}" for j in range(n_strategies)])
    queue, rng = list(fixture.worlds), random.Random(0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        async def worker() -> None:
            while queue:
                await seed_world(client, queue.pop(), fixture.strategies, rng)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return fixture


class _Answered:
    """What ``run_case`` reads of a response (only ``status_code``, 200 = success) for a 204 route."""

    def __init__(self, response: httpx.Response, ok: int) -> None:
        self.status_code = 200 if response.status_code == ok else response.status_code


def make_case(name: str, fixture: Fixture) -> Send:
    worlds, strategies = fixture.worlds, fixture.strategies

    async def post_history(client: httpx.AsyncClient, rng: random.Random) -> Any:
        body = _encode(evidence_body(rng, rng.choice(strategies), strategies, datetime.now(UTC)))
        world = rng.choice(worlds)
        response = await client.post(f"/worlds/{world}/history", content=body, headers=JSON_HEADERS)
        return _Answered(response, 204)

    async def decide(client: httpx.AsyncClient, rng: random.Random) -> httpx.Response:
        return await client.get(f"/worlds/{rng.choice(worlds)}/decide")

    return {"post_history": post_history, "decide": decide}[name]


async def measure_level(base_url: str, send: Send, name: str, concurrency: int,
                        args: argparse.Namespace) -> Result:
    clients = [httpx.AsyncClient(base_url=base_url, timeout=30.0) for _ in range(concurrency)]
    try:
        warmup = Result(name, concurrency)  # opens every connection; not reported
        await run_case(clients, send, warmup, max(args.warmup, 2 * concurrency), None, args.seed + 1)
        result = Result(name, concurrency)
        count = None if args.duration else args.requests
        await run_case(clients, send, result, count, args.duration, args.seed)
    finally:
        for client in clients:
            await client.aclose()
    print(f"  done: {name:<13} c={concurrency:<3} {result.requests} requests in {result.elapsed:.1f} s",
          file=sys.stderr, flush=True)
    return result


async def sample_decide(base_url: str, world: str) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        body = (await client.get(f"/worlds/{world}/decide")).json()
    h = body.get("hysteresis") or {}
    return (f"  check     GET /worlds/{world}/decide: effective_mode={body.get('effective_mode')} "
            f"score={body.get('score')} hysteresis={h.get('status')} (pass_streak {h.get('pass_streak')}) "
            f"reason={body.get('reason')!r}")


async def http_load(base_url: str, args: argparse.Namespace) -> tuple[list[Result], str]:
    started = time.perf_counter()
    fixture = await seed(base_url, args.worlds, args.strategies)
    print(f"  seeded {len(fixture.worlds)} worlds in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)
    results = [await measure_level(base_url, make_case(name, fixture), name, conc, args)
               for name in CASES for conc in args.concurrency]
    return results, await sample_decide(base_url, fixture.worlds[0])


def start_daemon(args: argparse.Namespace, workdir: Path) -> tuple[DaemonProcess, str]:
    env = {"WORLDSERVICE__SERVER__DSN": args.dsn} if args.dsn else {}
    daemon = DaemonProcess(workdir, workdir / "daemon.log", env=env)
    daemon.start()
    store = f"PostgreSQL {args.dsn}" if args.dsn else "SQLite file, synchronous=FULL"
    return daemon, f"own daemon at {daemon.url}, dev profile ({store}, in-memory bus and projection)"


def run_http(args: argparse.Namespace) -> tuple[list[Result], str, str]:
    if args.url:
        results, check = asyncio.run(http_load(args.url.rstrip("/"), args))
        return results, f"{args.url} (already running)", check
    with tempfile.TemporaryDirectory(prefix="ws-bench-decision-") as tmp:
        daemon, target = start_daemon(args, Path(tmp))
        with daemon:
            results, check = asyncio.run(http_load(daemon.url, args))
    return results, target, check


def section_http(args: argparse.Namespace) -> int:
    results, target, check = run_http(args)
    amount = f"{args.duration:g} s" if args.duration else f"{args.requests} requests"
    print(f"\n2. HTTP end to end\n  target    {target}\n"
          f"  fixture   {args.worlds} worlds x {args.strategies} bound+decided strategies, decision policy, "
          f"one evidence POST each\n  load      {amount} per case and concurrency after "
          f"max({args.warmup}, 2 x conc) warm-up requests; httpx {httpx.__version__}, one keep-alive client "
          f"per asyncio worker\n{check}\n")
    print(table(results))
    errors = sum(sum(r.errors.values()) for r in results)
    print(f"\ntotal errors: {errors}")
    return errors


# --- main ---------------------------------------------------------------------------------------------


def header() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cores = os.cpu_count()
    return "\n".join([
        "WorldService decision engine benchmark",
        f"  date      {datetime.now(UTC).isoformat(timespec='seconds')}",
        (f"  machine   {platform.machine()}, {cores} cores, {platform.system()} {platform.release()}, "
         f"Python {platform.python_version()} ({platform.python_implementation()}), "
         f"load average at start {load}"),
        (f"  NOTE      HTTP: client and daemon share these {cores} cores and compete for CPU; the numbers "
         "are a lower bound of what the daemon alone could serve"),
    ])


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="HTTP section against this running daemon instead of starting one")
    p.add_argument("--dsn", help="SQL DSN of the daemon this script starts (default: SQLite in a temp dir)")
    p.add_argument("--worlds", type=int, default=100)
    p.add_argument("--strategies", type=int, default=10, help="bound+decided strategies a world (default 10)")
    p.add_argument("--requests", type=int, default=2000, help="per case and concurrency (default 2000)")
    p.add_argument("--duration", type=float, help="seconds per case and concurrency instead of --requests")
    p.add_argument("--warmup", type=int, default=100, help="unmeasured requests per level (default 100)")
    p.add_argument("--concurrency", type=_ints, default=[1, 8, 32], help="comma-separated (default 1,8,32)")
    p.add_argument("--sizes", type=_ints, default=[1, 10, 50], help="engine world sizes (default 1,10,50)")
    p.add_argument("--engine-seconds", type=float, default=2.0, help="time per engine size (default 2)")
    p.add_argument("--skip-engine", action="store_true")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header(), flush=True)
    if not args.skip_engine:
        section_engine(args)
    errors = 0 if args.skip_http else section_http(args)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
