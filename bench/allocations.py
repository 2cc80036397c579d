"""Benchmark of ``POST /allocations`` and of multi-world rebalance planning.

    uv run python bench/allocations.py                       # both sections, own daemon
    uv run python bench/allocations.py --skip-plan           # section 1 only
    uv run python bench/allocations.py --skip-http           # in-process planning only, no daemon
    uv run python bench/allocations.py --worlds 100 --requests 500 --concurrency 1,8,32

Sections:

1. allocation upserts: ``python -m daemon serve`` in the dev profile (SQLite file with synchronous=FULL,
   in-memory ControlBus), ``--worlds`` worlds created (``POST /worlds`` w0..; allocations do not need them,
   but a real client allocates existing worlds). Then, per concurrency level, ``--requests`` upserts with
   fresh run ids, each allocating a random pair of worlds (ratio in [0.05, 0.5]) and carrying 3 strategies
   x 2 symbols of positions per world (12 slices, marks > 0, quantities on the 0.001 lot). Every level
   starts with one unmeasured upsert per worker. The replay row sends the first level's bodies again
   (same run id, same content: the stored plan is answered) at ``--replay-concurrency``; its etags must
   equal the first answers'. Afterwards ``GET /allocations`` must show, for every world, the allocation of
   the run it names. One ``AllocationCoordinator`` actor serializes all runs, so concurrency mostly adds
   queueing.
2. planning: one ``MultiWorldRebalanceRequest`` of ``--plan-worlds`` worlds x ``--plan-strategies``
   strategies, each strategy holding one slice of a symbol picked round robin over ``--plan-symbols``
   symbols (slice k of world w: symbol ``(w x strategies + k) mod symbols``, so every symbol appears),
   random world allocations before and after, no strategy totals (they are inferred from exposure), lot
   0.001 for every symbol, ``min_trade_notional`` 1.0, ``schema_version`` 2. In process: msgspec decode of
   the JSON body, ``plan_scaling``, the full v2 ``plan_rebalance(..., compat_rebalance_v2=True)`` and the
   response encode, min and median of ``--plan-runs`` runs. Over HTTP (unless ``--skip-http``): the same
   body once to ``POST /rebalancing/plan`` on the section-1 daemon, started with ``compat_rebalance_v2``.
   The body is written as a client would (shortest floats, no nulls): about 8.8 MB at the default shape,
   close to Litestar's default ``request_max_body_size`` of 10,000,000 bytes, above which the daemon
   answers 413 before planning (msgspec's own encoding of the struct, with ``"venue":null`` per slice and
   unrounded floats, was 10.35 MB and got that 413).

Workers are asyncio tasks with one keep-alive ``httpx.AsyncClient`` each; latency is per request, from just
before the call to the response read (the JSON answer is parsed after the clock stops). Only 200s count
as successes. Client and daemon share this machine's cores: the numbers are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))  # run as a script, only bench/ is on sys.path

from bench.apply import _ints, code_version, log_findings, start_daemon, table
from bench.http_activation import Result
from domain.rebalancing import plan_rebalance, plan_scaling
from messages.rebalancing import MultiWorldRebalanceRequest, PositionSlice
from tests.daemon_process import DaemonProcess

JSON_HEADERS = {"content-type": "application/json"}
STRATEGIES = ("alpha", "beta", "gamma")
SYMBOLS = ("BTCUSDT", "ETHUSDT")
LOT = 0.001
_encode = msgspec.json.encode
_decode = msgspec.json.decode


# --- section 1: upsert bodies -------------------------------------------------------------------------


@dataclass(frozen=True)
class Upsert:
    run_id: str
    body: dict[str, Any]
    raw: bytes


def world_positions(rng: random.Random, world: str) -> list[dict[str, Any]]:
    return [{"world_id": world, "strategy_id": sid, "symbol": sym,
             "qty": round(rng.randint(1, 2000) * LOT, 3), "mark": round(rng.uniform(10.0, 50_000.0), 2)}
            for sid in STRATEGIES for sym in SYMBOLS]


def upsert_body(rng: random.Random, worlds: list[str], run_id: str) -> dict[str, Any]:
    pair = sorted(rng.sample(worlds, 2))
    return {"run_id": run_id, "total_equity": 1_000_000.0,
            "world_allocations": {w: round(rng.uniform(0.05, 0.5), 4) for w in pair},
            "positions": [p for w in pair for p in world_positions(rng, w)],
            "lot_size_by_symbol": dict.fromkeys(SYMBOLS, LOT)}


def make_upserts(worlds: list[str], n: int, tag: str) -> list[Upsert]:
    rng = random.Random(tag)
    upserts = []
    for i in range(n):
        body = upsert_body(rng, worlds, f"{tag}-{i}")
        upserts.append(Upsert(body["run_id"], body, _encode(body)))
    return upserts


# --- section 1: load ----------------------------------------------------------------------------------


@dataclass
class Level:
    """One row: the timing, the first body of every unexpected status, the etag of every 200 answer."""

    result: Result
    samples: dict[str, str] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    warmup_etags: dict[str, str] = field(default_factory=dict)  # the unmeasured warm-up's 200 answers


async def _post(client: httpx.AsyncClient, upsert: Upsert, level: Level) -> None:
    result, started = level.result, time.perf_counter()
    try:
        r = await client.post("/allocations", content=upsert.raw, headers=JSON_HEADERS)
    except httpx.HTTPError as exc:
        result.errors[type(exc).__name__] += 1
        return
    if r.status_code != 200:
        key = f"HTTP {r.status_code}"
        result.errors[key] += 1
        level.samples.setdefault(key, r.text[:300])
        return
    result.latencies.append(time.perf_counter() - started)
    level.etags[upsert.run_id] = _decode(r.content).get("etag", "")


async def _drain(client: httpx.AsyncClient, queue: Iterator[Upsert], level: Level) -> None:
    for upsert in queue:  # one shared iterator: every worker takes the next body when it is free
        await _post(client, upsert, level)


async def run_level(clients: list[httpx.AsyncClient], upserts: list[Upsert], name: str) -> Level:
    level = Level(Result(name, len(clients)))
    queue = iter(upserts)
    started = time.perf_counter()
    await asyncio.gather(*(_drain(client, queue, level) for client in clients))
    level.result.elapsed = time.perf_counter() - started
    return level


async def measure_level(url: str, conc: int, warmup: list[Upsert], upserts: list[Upsert], name: str) -> Level:
    clients = [httpx.AsyncClient(base_url=url, timeout=120.0) for _ in range(conc)]
    try:
        warm = await run_level(clients, warmup, name)  # opens every connection; not reported
        level = await run_level(clients, upserts, name)
        level.warmup_etags = warm.etags
    finally:
        for client in clients:
            await client.aclose()
    print(f"  done: {name} c={conc}: {level.result.requests} requests in {level.result.elapsed:.1f} s",
          file=sys.stderr, flush=True)
    return level


async def create_worlds(url: str, worlds: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        for world in worlds:
            r = await client.post("/worlds", json={"id": world})
            if r.status_code != 201:
                raise SystemExit(f"POST /worlds {world} -> {r.status_code} {r.text[:300]}")


@dataclass
class UpsertRun:
    levels: list[Level]
    replay: Level | None
    replay_mismatches: int
    sent: dict[str, Upsert]
    etags: dict[str, str]


async def measure_upserts(url: str, worlds: list[str], args: argparse.Namespace) -> UpsertRun:
    tag = uuid.uuid4().hex[:6]
    levels, sent = [], {}
    for conc in args.concurrency:
        warmup = make_upserts(worlds, conc, f"{tag}-c{conc}-warm")
        upserts = make_upserts(worlds, args.requests, f"{tag}-c{conc}")
        sent.update((u.run_id, u) for u in warmup + upserts)
        levels.append(await measure_level(url, conc, warmup, upserts, "upsert"))
    etags = {run: etag for level in levels for run, etag in {**level.warmup_etags, **level.etags}.items()}
    replay, mismatches = await measure_replay(url, levels, sent, args.replay_concurrency)
    return UpsertRun(levels, replay, mismatches, sent, etags)


async def measure_replay(url: str, levels: list[Level], sent: dict[str, Upsert],
                         conc: int) -> tuple[Level | None, int]:
    """The first level's successful upserts again; the warm-up replays the last level's."""
    if not levels:
        return None, 0
    again = [sent[run] for run in levels[0].etags]
    warmup = [sent[run] for run in list(levels[-1].etags)[:conc]]
    level = await measure_level(url, conc, warmup, again, "replay")
    mismatches = sum(1 for run, etag in level.etags.items() if etag != levels[0].etags[run])
    return level, mismatches


# --- section 1: GET /allocations ----------------------------------------------------------------------


@dataclass
class SnapshotCheck:
    status: int
    seconds: float
    worlds: int = 0
    stale: int = 0
    inconsistent: list[str] = field(default_factory=list)


def _consistent(world: str, snap: dict[str, Any], run: UpsertRun) -> bool:
    upsert = run.sent.get(snap.get("run_id") or "")
    if upsert is None:
        return False
    return (upsert.body["world_allocations"].get(world) == snap.get("allocation")
            and run.etags.get(upsert.run_id) == snap.get("etag"))


async def check_snapshots(url: str, run: UpsertRun) -> SnapshotCheck:
    """Every world's latest allocation must be the one of the run it names, under that run's etag."""
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        started = time.perf_counter()
        r = await client.get("/allocations")
        check = SnapshotCheck(r.status_code, time.perf_counter() - started)
    if r.status_code != 200:
        check.inconsistent.append(r.text[:300])
        return check
    snaps = _decode(r.content).get("allocations", {})
    check.worlds = len(snaps)
    check.stale = sum(1 for s in snaps.values() if s.get("stale"))
    check.inconsistent = [w for w, s in snaps.items() if not _consistent(w, s, run)]
    return check


# --- section 2: the plan request ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlanShape:
    worlds: int
    strategies: int
    symbols: int


def _slice(rng: random.Random, world: int, k: int, shape: PlanShape, marks: list[float]) -> PositionSlice:
    symbol = (world * shape.strategies + k) % shape.symbols
    qty = round(rng.choice((-1, 1)) * rng.randint(1, 10_000) * LOT, 3)  # shortest JSON, as a client sends
    return PositionSlice(world_id=f"pw{world:04d}", strategy_id=f"s{k:03d}", symbol=f"SYM{symbol:03d}",
                         qty=qty, mark=marks[symbol])


def plan_request(shape: PlanShape, seed: int = 7) -> MultiWorldRebalanceRequest:
    rng = random.Random(seed)
    marks = [round(rng.uniform(1.0, 5_000.0), 2) for _ in range(shape.symbols)]
    worlds = [f"pw{w:04d}" for w in range(shape.worlds)]
    positions = [_slice(rng, w, k, shape, marks)
                 for w in range(shape.worlds) for k in range(shape.strategies)]
    return MultiWorldRebalanceRequest(
        total_equity=1e9, positions=positions, schema_version=2, min_trade_notional=1.0,
        world_alloc_before={w: rng.uniform(0.0002, 0.0018) for w in worlds},
        world_alloc_after={w: rng.uniform(0.0002, 0.0018) for w in worlds},
        lot_size_by_symbol={f"SYM{s:03d}": LOT for s in range(shape.symbols)})


def plan_body(request: MultiWorldRebalanceRequest) -> bytes:
    """The JSON a client would send: null fields left out (msgspec writes ``"venue":null`` for every slice
    of the struct, 1.3 MB at the default shape)."""
    document = {k: v for k, v in msgspec.to_builtins(request).items() if v is not None}
    document["positions"] = [{k: v for k, v in p.items() if v is not None} for p in document["positions"]]
    return _encode(document)


def _timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    times, value = [], None
    for _ in range(runs):
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return times, value


Step = tuple[str, list[float], str]  # (step, seconds per run, what it produced)


def time_plan(request: MultiWorldRebalanceRequest, body: bytes, runs: int) -> list[Step]:
    decode_s, _ = _timed(lambda: _decode(body, type=MultiWorldRebalanceRequest), runs)
    scaling_s, (per_world, global_deltas) = _timed(lambda: plan_scaling(request), runs)
    v2_s, response = _timed(lambda: plan_rebalance(request, compat_rebalance_v2=True), runs)
    encode_s, answer = _timed(lambda: _encode(response), runs)
    deltas = sum(len(p.deltas) for p in per_world.values())
    alpha_worlds = len(response.alpha_metrics.per_world) if response.alpha_metrics else 0
    return [("decode body (msgspec)", decode_s, f"{len(request.positions)} slices"),
            ("plan_scaling", scaling_s,
             f"{len(per_world)} world plans, {deltas} world deltas, {len(global_deltas)} global deltas"),
            ("plan_rebalance v2", v2_s,
             f"schema_version {response.schema_version}, alpha metrics for {alpha_worlds} worlds"),
            ("encode response", encode_s, f"{len(answer) / 1e6:.2f} MB")]


@dataclass
class HttpPlan:
    status: int
    seconds: float
    answer_mb: float
    note: str


def _plan_note(r: httpx.Response) -> str:
    if r.status_code != 200:
        return r.text[:300]
    answer = _decode(r.content)
    return (f"schema_version {answer.get('schema_version')}, {len(answer.get('per_world', {}))} world plans, "
            f"{len(answer.get('global_deltas', []))} global deltas")


async def post_plan(url: str, body: bytes) -> HttpPlan:
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:
        await client.get("/healthz")  # connection opened outside the timing
        started = time.perf_counter()
        try:
            r = await client.post("/rebalancing/plan", content=body, headers=JSON_HEADERS)
        except httpx.HTTPError as exc:
            return HttpPlan(0, time.perf_counter() - started, 0.0, repr(exc))
        seconds = time.perf_counter() - started
    return HttpPlan(r.status_code, seconds, len(r.content) / 1e6, _plan_note(r))


# --- report -------------------------------------------------------------------------------------------


def header(args: argparse.Namespace) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join([
        "WorldService allocations / rebalance planning benchmark",
        f"  date      {datetime.now(UTC).isoformat(timespec='seconds')}",
        (f"  machine   {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
         f"{platform.release()}, load average at start {load}"),
        f"  python    {platform.python_version()}, httpx {httpx.__version__}, msgspec {msgspec.__version__}",
        f"  code      {code_version()}",
        (f"  upserts   {args.worlds} worlds, {args.requests} upserts per concurrency level "
         f"{args.concurrency}, 2 worlds x {len(STRATEGIES)} strategies x {len(SYMBOLS)} symbols each; "
         f"replay at c={args.replay_concurrency}" + (" (skipped)" if args.skip_http else "")),
        (f"  plan      {args.plan_worlds} worlds x {args.plan_strategies} strategies over "
         f"{args.plan_symbols} symbols, {args.plan_runs} runs" + (" (skipped)" if args.skip_plan else "")),
        "  NOTE      client and daemon share this machine: the numbers are a lower bound",
    ])


def upsert_table(levels: list[Level]) -> str:
    cols = ("case", "conc", "requests", "errors", "seconds", "upserts/s", "p50 ms", "p99 ms")
    rows = [(lv.result.case, str(lv.result.concurrency), str(lv.result.requests),
             str(sum(lv.result.errors.values())), f"{lv.result.elapsed:.2f}", f"{lv.result.rate or 0:.1f}",
             f"{lv.result.percentile_ms(50):.1f}", f"{lv.result.percentile_ms(99):.1f}") for lv in levels]
    notes = [f"  {lv.result.case} c={lv.result.concurrency} errors {dict(lv.result.errors)}; first bodies "
             f"{lv.samples}" for lv in levels if lv.result.errors]
    return "\n".join([table(cols, rows), *notes])


def snapshot_line(check: SnapshotCheck) -> str:
    return (f"  GET /allocations: {check.status} in {check.seconds * 1000:.1f} ms, {check.worlds} worlds, "
            f"{check.stale} stale, {len(check.inconsistent)} not matching their run "
            f"{check.inconsistent[:5] if check.inconsistent else ''}")


def plan_table(steps: list[Step]) -> str:
    cols = ("step", "min s", "median s", "output")
    rows = [(name, f"{min(s):.3f}", f"{statistics.median(s):.3f}", what) for name, s, what in steps]
    return table(cols, rows)


def http_plan_line(plan: HttpPlan, body: bytes) -> str:
    return (f"  POST /rebalancing/plan: body {len(body) / 1e6:.2f} MB, HTTP {plan.status} in "
            f"{plan.seconds:.3f} s, answer {plan.answer_mb:.2f} MB; {plan.note}")


def findings_line(daemon: DaemonProcess) -> str:
    found = log_findings(daemon.log_path)
    return f"  daemon log: {dict(found) if found else 'no warnings or errors'}"


def print_section(title: str, *parts: str) -> None:
    print(f"\n## {title}", *parts, sep="\n", flush=True)


# --- sections -----------------------------------------------------------------------------------------


@dataclass
class HttpOutcome:
    run: UpsertRun | None = None
    snapshots: SnapshotCheck | None = None
    plan: HttpPlan | None = None
    findings: str = ""


async def _http_load(daemon: DaemonProcess, args: argparse.Namespace, body: bytes | None) -> HttpOutcome:
    worlds = [f"w{i}" for i in range(args.worlds)]
    await create_worlds(daemon.url, worlds)
    outcome = HttpOutcome()
    outcome.run = await measure_upserts(daemon.url, worlds, args)
    outcome.snapshots = await check_snapshots(daemon.url, outcome.run)
    if body is not None:
        outcome.plan = await post_plan(daemon.url, body)
    return outcome


def run_http(workdir: Path, args: argparse.Namespace, body: bytes | None) -> HttpOutcome:
    env = {"WORLDSERVICE__SERVER__COMPAT_REBALANCE_V2": "true"}
    with contextlib.ExitStack() as stack:  # the daemon is stopped whatever happens
        daemon = start_daemon(stack, workdir, "dev", env)
        outcome = asyncio.run(_http_load(daemon, args, body))
    outcome.findings = findings_line(daemon)
    return outcome


def report_upserts(outcome: HttpOutcome) -> int:
    run = outcome.run
    levels = run.levels + ([run.replay] if run.replay else [])
    print_section("1. POST /allocations (dev profile: SQLite synchronous=FULL, in-memory bus)",
                  upsert_table(levels),
                  f"  replay etags differing from the first answer: {run.replay_mismatches}",
                  snapshot_line(outcome.snapshots), outcome.findings)
    errors = sum(sum(lv.result.errors.values()) for lv in levels)
    return errors + run.replay_mismatches + len(outcome.snapshots.inconsistent)


def report_plan(request: MultiWorldRebalanceRequest, body: bytes, args: argparse.Namespace,
                http: HttpPlan | None) -> int:
    steps = time_plan(request, body, args.plan_runs)
    symbols = len({p.symbol for p in request.positions})
    parts = [(f"  request: {len(request.world_alloc_after)} worlds, {len(request.positions)} position "
              f"slices, {symbols} symbols, JSON body {len(body) / 1e6:.2f} MB"),
             plan_table(steps)]
    if http is not None:
        parts.append(http_plan_line(http, body))
    print_section("2. rebalance planning (in process; then HTTP end to end)", *parts)
    return 0 if http is None or http.status == 200 else 1


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", type=int, default=100, help="worlds for the upserts (default 100, at least 2)")
    p.add_argument("--requests", type=int, default=500, help="upserts per concurrency level (default 500)")
    p.add_argument("--concurrency", type=_ints, default=[1, 8, 32], help="comma-separated (default 1,8,32)")
    p.add_argument("--replay-concurrency", type=int, default=8, help="replay row concurrency (default 8)")
    p.add_argument("--plan-worlds", type=int, default=1000)
    p.add_argument("--plan-strategies", type=int, default=100)
    p.add_argument("--plan-symbols", type=int, default=500)
    p.add_argument("--plan-runs", type=int, default=3)
    p.add_argument("--skip-plan", action="store_true", help="no planning section")
    p.add_argument("--skip-http", action="store_true", help="no daemon: no upserts, no HTTP plan")
    args = p.parse_args(argv)
    if args.worlds < 2:
        p.error("--worlds must be at least 2 (every upsert allocates a pair)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header(args), flush=True)
    request = body = None
    if not args.skip_plan:
        request = plan_request(PlanShape(args.plan_worlds, args.plan_strategies, args.plan_symbols))
        body = plan_body(request)
    errors, outcome = 0, HttpOutcome()
    if not args.skip_http:
        with tempfile.TemporaryDirectory(prefix="ws-bench-alloc-") as tmp:
            outcome = run_http(Path(tmp), args, body)
        errors += report_upserts(outcome)
    if request is not None and body is not None:
        errors += report_plan(request, body, args, outcome.plan)
    print(f"\ntotal errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
