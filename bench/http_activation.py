"""HTTP benchmark of the WorldService daemon: activation writes, decide reads and the health probe.

    uv run python bench/http_activation.py                  # starts its own daemon (temp data dir)
    uv run python bench/http_activation.py --url http://127.0.0.1:8080   # an already running daemon
    uv run python bench/http_activation.py --requests 5000 --concurrency 1,8,32
    uv run python bench/http_activation.py --duration 10    # a fixed time per case instead of a count
    uv run python bench/http_activation.py --client httpx   # force the Python client even if wrk is installed

Seeds ``--worlds`` worlds x ``--strategies`` strategies (bindings, decisions and one activation each),
then for every case and concurrency level sends requests from ``concurrency`` asyncio workers, each with
its own keep-alive ``httpx.AsyncClient`` (one connection per worker; one shared client with a 32-connection
pool is markedly slower, since httpcore's pool does O(connections) work per request), and prints
throughput (req/s), p50 and p99 latency (ms) and the number of errors (transport failures and unexpected
statuses). Latency is measured per request, from just before the call to the parsed response.

Load generator (``--client``): ``httpx`` is the asyncio client described above; ``wrk`` runs
``wrk -t1 -c<concurrency> -d<seconds>s --latency -s <script>`` per case and concurrency (``--duration``,
default 8 s, after a 1 s unreported warm-up run unless ``--warmup 0``) with generated Lua scripts that pick
the same random seeded worlds and strategies, and reads requests, req/s, p50/p99 and errors (non-2xx/3xx
responses plus socket errors) from wrk's report; ``auto`` (the default) uses wrk when it is on PATH. The
Python client tops out well below the daemon on a small machine, so wrk gives the more faithful numbers.

Cases:
  put_activation  PUT /worlds/{id}/activation   random world and strategy, random side and weight
  decide          GET /worlds/{id}/decide        random world
  evaluate        POST /worlds/{id}/evaluate      random world and strategy, random sharpe for every
                                                 strategy: the policy's selection plus one durable
                                                 evaluation run (a row, an audit entry, an event)
  healthz         GET /healthz                   no actor involved: the HTTP stack's own ceiling

The client runs on the same machine as the daemon, so both compete for the same cores: the numbers are
the daemon's throughput on this machine under this client, not its ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec

from tests.daemon_process import DaemonProcess

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CASES = ("put_activation", "decide", "evaluate", "healthz")
BENCH_POLICY = {"thresholds": {"sharpe": {"metric": "sharpe", "min": 0.5}}, "top_k": {"metric": "sharpe", "k": 5}}
CLIENTS = ("httpx", "wrk", "auto")
WRK_DEFAULT_DURATION_S = 8.0
_encode = msgspec.json.encode


# --- seeding ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    worlds: list[str]
    strategies: list[str]


async def _expect(response: Awaitable[httpx.Response], *ok: int) -> None:
    r = await response
    if r.status_code not in ok:
        raise SystemExit(f"seeding failed: {r.request.method} {r.request.url} -> {r.status_code} {r.text}")


async def seed(client: httpx.AsyncClient, n_worlds: int, n_strategies: int, concurrency: int = 16) -> Fixture:
    """Worlds get a per-run prefix so a shared daemon (``--url``) never meets a 409."""
    run = uuid.uuid4().hex[:6]
    fixture = Fixture(worlds=[f"bench-{run}-{i:03d}" for i in range(n_worlds)],
                      strategies=[f"strat-{j:02d}" for j in range(n_strategies)])
    body = {"strategies": fixture.strategies}

    async def one(world: str) -> None:
        await _expect(client.post("/worlds", json={"id": world}), 201)
        await _expect(client.post(f"/worlds/{world}/policies", json={"policy": BENCH_POLICY}), 200)
        await _expect(client.post(f"/worlds/{world}/bindings", json=body), 200)
        await _expect(client.post(f"/worlds/{world}/decisions", json=body), 200)
        for sid in fixture.strategies:
            activation = {"strategy_id": sid, "side": "long", "active": True, "weight": 0.5}
            await _expect(client.put(f"/worlds/{world}/activation", json=activation), 200)

    queue = list(fixture.worlds)

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return fixture


# --- measurement --------------------------------------------------------------------------------------


Send = Callable[[httpx.AsyncClient, random.Random], Awaitable[httpx.Response]]


def make_case(name: str, fixture: Fixture) -> Send:
    worlds, strategies = fixture.worlds, fixture.strategies
    json_headers = {"content-type": "application/json"}

    async def put_activation(client: httpx.AsyncClient, rng: random.Random) -> httpx.Response:
        side = "long" if rng.random() < 0.5 else "short"
        body = _encode({"strategy_id": rng.choice(strategies), "side": side, "active": True,
                        "weight": round(rng.random(), 4)})
        world = rng.choice(worlds)
        return await client.put(f"/worlds/{world}/activation", content=body, headers=json_headers)

    async def decide(client: httpx.AsyncClient, rng: random.Random) -> httpx.Response:
        return await client.get(f"/worlds/{rng.choice(worlds)}/decide")

    async def evaluate(client: httpx.AsyncClient, rng: random.Random) -> httpx.Response:
        metrics = {sid: {"sharpe": round(rng.random() * 2, 4)} for sid in strategies}
        body = _encode({"strategy_id": rng.choice(strategies), "metrics": metrics})
        return await client.post(f"/worlds/{rng.choice(worlds)}/evaluate", content=body, headers=json_headers)

    async def healthz(client: httpx.AsyncClient, rng: random.Random) -> httpx.Response:
        return await client.get("/healthz")

    return {"put_activation": put_activation, "decide": decide, "evaluate": evaluate, "healthz": healthz}[name]


@dataclass
class Result:
    case: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    cpu_ms: float | None = None  # daemon CPU (user+system) per request during the measured run

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def rate(self) -> float | None:
        """Successful requests per second."""
        return len(self.latencies) / self.elapsed if self.elapsed else None

    def percentile_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))  # nearest rank
        return ordered[rank] * 1000


async def run_case(clients: list[httpx.AsyncClient], send: Send, result: Result, count: int | None,
                   duration: float | None, seed: int) -> None:
    """One worker per client; each sends back to back until the shared count or the time is used up."""
    remaining = count
    deadline = None
    latencies, errors, perf = result.latencies, result.errors, time.perf_counter

    async def worker(n: int, client: httpx.AsyncClient) -> None:
        nonlocal remaining
        rng = random.Random(seed * 1000 + n)
        while True:
            if remaining is not None:
                if remaining <= 0:
                    return
                remaining -= 1
            elif perf() >= deadline:
                return
            started = perf()
            try:
                response = await send(client, rng)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            if response.status_code == 200:
                latencies.append(perf() - started)
            else:
                errors[f"HTTP {response.status_code}"] += 1

    started = perf()
    deadline = started + duration if duration else None
    await asyncio.gather(*(worker(n, client) for n, client in enumerate(clients)))
    result.elapsed = perf() - started


async def measure(base_url: str, fixture: Fixture, args: argparse.Namespace) -> list[Result]:
    results = []
    for name in args.cases:
        send = make_case(name, fixture)
        for concurrency in args.concurrency:
            clients = [httpx.AsyncClient(base_url=base_url, timeout=30.0) for _ in range(concurrency)]
            try:
                warmup = Result(name, concurrency)  # opens every connection; not reported
                await run_case(clients, send, warmup, max(args.warmup, 2 * concurrency), None, args.seed + 1)
                result = Result(name, concurrency)
                before = daemon_cpu_s(args.pid)
                await run_case(clients, send, result, None if args.duration else args.requests, args.duration,
                               args.seed)
                result.cpu_ms = cpu_per_request_ms(args.pid, before, result.requests)
            finally:
                for client in clients:
                    await client.aclose()
            results.append(result)
            print(f"  done: {name:<15} c={concurrency:<3} {result.requests} requests in "
                  f"{result.elapsed:.1f} s", file=sys.stderr, flush=True)
    return results


# --- daemon CPU ---------------------------------------------------------------------------------------


def daemon_cpu_s(pid: int | None) -> float | None:
    """The daemon's user+system CPU seconds so far, from /proc (None off Linux or without a pid): the
    server's cost per request, which req/s alone hides when the load generator shares the cores."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def cpu_per_request_ms(pid: int | None, before: float | None, requests: int) -> float | None:
    after = daemon_cpu_s(pid)
    if before is None or after is None or not requests:
        return None
    return (after - before) * 1000 / requests


# --- measurement with wrk -----------------------------------------------------------------------------


@dataclass
class WrkResult:
    """One wrk run, in the shape of ``Result`` as far as ``table`` needs it."""

    case: str
    concurrency: int
    requests: int = 0  # every completed request, errors included (wrk's "N requests in ...")
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    rate: float | None = None  # wrk's Requests/sec (all completed requests)
    percentiles_ms: dict[int, float] = field(default_factory=dict)  # from --latency
    cpu_ms: float | None = None  # daemon CPU (user+system) per request during the measured run

    def percentile_ms(self, p: float) -> float:
        return self.percentiles_ms.get(int(p), float("nan"))


_LUA_HEAD = """-- generated by bench/http_activation.py
local worlds = {{{worlds}}}
local strategies = {{{strategies}}}
math.randomseed({seed})
"""

_LUA_REQUEST = {
    "put_activation": """wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local world = worlds[math.random(#worlds)]
  local side = "long"
  if math.random() < 0.5 then side = "short" end
  local body = string.format('{"strategy_id":"%s","side":"%s","active":true,"weight":%.4f}',
                             strategies[math.random(#strategies)], side, math.random())
  return wrk.format("PUT", "/worlds/" .. world .. "/activation", nil, body)
end
""",
    "decide": """request = function()
  return wrk.format("GET", "/worlds/" .. worlds[math.random(#worlds)] .. "/decide")
end
""",
    "evaluate": """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local parts = {}
  for i, sid in ipairs(strategies) do
    parts[i] = string.format('"%s":{"sharpe":%.4f}', sid, math.random() * 2)
  end
  local body = string.format('{"strategy_id":"%s","metrics":{%s}}', strategies[math.random(#strategies)],
                             table.concat(parts, ","))
  return wrk.format("POST", "/worlds/" .. worlds[math.random(#worlds)] .. "/evaluate", nil, body)
end
""",
    # no request function: wrk formats this one request once and resends it
    "healthz": """wrk.method = "GET"
wrk.path = "/healthz"
""",
}

_WRK_URL_PATH = {"put_activation": "/", "decide": "/", "evaluate": "/", "healthz": "/healthz"}
_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def _lua_strings(values: list[str]) -> str:
    return ", ".join(msgspec.json.encode(v).decode() for v in values)  # a JSON string of ASCII ids is Lua too


def write_wrk_scripts(fixture: Fixture, directory: Path, seed: int) -> dict[str, Path]:
    head = _LUA_HEAD.format(worlds=_lua_strings(fixture.worlds), strategies=_lua_strings(fixture.strategies),
                            seed=seed)
    scripts = {}
    for name, body in _LUA_REQUEST.items():
        scripts[name] = directory / f"{name}.lua"
        scripts[name].write_text(head + body)
    return scripts


def _time_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([a-z]+)", text)
    if match is None or match[2] not in _TIME_UNITS_MS:
        raise ValueError(f"unparsable wrk time {text!r}")
    return float(match[1]) * _TIME_UNITS_MS[match[2]]


def _search(pattern: str, output: str) -> re.Match[str]:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise SystemExit(f"wrk output lacks {pattern!r}:\n{output}")
    return match


def _wrk_errors(output: str) -> Counter[str]:
    errors: Counter[str] = Counter()
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors["non-2xx/3xx"] = int(non_2xx[1])
    sockets = _SOCKET_ERRORS.search(output)
    if sockets:
        for kind, count in zip(("connect", "read", "write", "timeout"), sockets.groups(), strict=True):
            if int(count):
                errors[f"socket {kind}"] = int(count)
    return errors


def parse_wrk(output: str, case: str, concurrency: int) -> WrkResult:
    total = _search(r"^\s*(\d+) requests in (\S+),", output)
    return WrkResult(
        case, concurrency, requests=int(total[1]), errors=_wrk_errors(output),
        elapsed=_time_ms(total[2]) / 1000, rate=float(_search(r"^Requests/sec:\s+([\d.]+)", output)[1]),
        percentiles_ms={p: _time_ms(_search(rf"^\s*{p}%\s+(\S+)\s*$", output)[1]) for p in (50, 99)})


def run_wrk(base_url: str, script: Path, case: str, concurrency: int, seconds: int) -> WrkResult:
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s", "--latency",
               "-s", str(script), base_url + _WRK_URL_PATH[case]]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited with {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return parse_wrk(proc.stdout, case, concurrency)


def measure_wrk(base_url: str, fixture: Fixture, args: argparse.Namespace) -> list[WrkResult]:
    seconds = max(1, round(args.duration or WRK_DEFAULT_DURATION_S))
    results = []
    with tempfile.TemporaryDirectory(prefix="ws-bench-wrk-") as tmp:
        scripts = write_wrk_scripts(fixture, Path(tmp), args.seed)
        for name in args.cases:
            for concurrency in args.concurrency:
                if args.warmup:
                    run_wrk(base_url, scripts[name], name, concurrency, 1)  # not reported
                before = daemon_cpu_s(args.pid)
                result = run_wrk(base_url, scripts[name], name, concurrency, seconds)
                result.cpu_ms = cpu_per_request_ms(args.pid, before, result.requests)
                results.append(result)
                print(f"  done: {name:<15} c={concurrency:<3} {result.requests} requests in "
                      f"{result.elapsed:.1f} s", file=sys.stderr, flush=True)
    return results


def wrk_version() -> str:
    proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (proc.stdout or proc.stderr).splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def resolve_client(choice: str) -> str:
    found = shutil.which("wrk") is not None
    if choice == "wrk" and not found:
        raise SystemExit("--client wrk: wrk not found on PATH (Debian/Ubuntu: apt-get install wrk)")
    if choice == "auto":
        return "wrk" if found else "httpx"
    return choice


# --- report -------------------------------------------------------------------------------------------


def _load_line(args: argparse.Namespace) -> str:
    if args.client == "wrk":
        seconds = max(1, round(args.duration or WRK_DEFAULT_DURATION_S))
        warmup = "after a 1 s warm-up run" if args.warmup else "without warm-up"
        return (f"  load      {seconds} s per case and concurrency {warmup}; wrk -t1 -c<conc> --latency, "
                "Lua scripts pick random seeded worlds/strategies")
    amount = f"{args.duration:.0f} s" if args.duration else f"{args.requests} requests"
    return (f"  load      {amount} per case and concurrency after {args.warmup} warm-up requests; "
            "asyncio, one keep-alive httpx.AsyncClient per worker")


def _client_line(args: argparse.Namespace) -> str:
    chosen = f"(--client {args.client_choice})"
    if args.client == "wrk":
        return f"  client    {wrk_version()} at {shutil.which('wrk')} {chosen}"
    return f"  client    httpx {httpx.__version__} asyncio {chosen}"


def header(args: argparse.Namespace, target: str) -> str:
    cores = os.cpu_count()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "\n".join([
        "WorldService HTTP benchmark",
        f"  target    {target}",
        (f"  machine   {platform.machine()}, {cores} cores, {platform.system()} {platform.release()}, "
         f"Python {platform.python_version()}, httpx {httpx.__version__}, load average at start {load}"),
        (f"  NOTE      client and daemon share this {cores}-core machine and compete for CPU: the numbers "
         "are a lower bound of what the daemon alone could serve"),
        _client_line(args),
        (f"  fixture   {args.worlds} worlds x {args.strategies} strategies "
         "(bindings, decisions, one activation each)"),
        _load_line(args),
    ])


def _row(r: Result | WrkResult) -> tuple[str, ...]:
    rate = f"{r.rate:.0f}" if r.rate is not None else "-"
    return (r.case, str(r.concurrency), str(r.requests), str(sum(r.errors.values())), f"{r.elapsed:.2f}", rate,
            f"{r.percentile_ms(50):.2f}", f"{r.percentile_ms(99):.2f}",
            f"{r.cpu_ms:.3f}" if r.cpu_ms is not None else "-")


def _row_format(cols: tuple[str, ...], rows: list[tuple[str, ...]]) -> tuple[str, list[int]]:
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    return "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)), widths


def table(results: list[Result] | list[WrkResult]) -> str:
    cols = ("case", "conc", "requests", "errors", "seconds", "req/s", "p50 ms", "p99 ms", "cpu ms/req")
    rows = [_row(r) for r in results]
    fmt, widths = _row_format(cols, rows)
    out = [fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row) for row in rows]
    out += [f"errors in {r.case} c={r.concurrency}: {dict(r.errors)}" for r in results if r.errors]
    out += share_of_healthz(results)
    return "\n".join(out)


def share_of_healthz(results: list[Result] | list[WrkResult]) -> list[str]:
    """Each case's rate as a share of the no-op /healthz rate at the same concurrency in this run: the
    part of the edge's capacity a real command leaves, which is steadier than req/s on shared cores."""
    healthz = {r.concurrency: r.rate for r in results if r.case == "healthz" and r.rate}
    return [f"{r.case} c={r.concurrency}: {r.rate / healthz[r.concurrency]:.0%} of healthz rate"
            for r in results if r.case != "healthz" and r.rate and r.concurrency in healthz]


# --- main ---------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _cases(text: str) -> list[str]:
    names = [x for x in text.split(",") if x]
    unknown = set(names) - set(CASES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="benchmark this running daemon instead of starting one")
    p.add_argument("--daemon-pid", type=int, help="with --url: the daemon's pid, for CPU per request")
    p.add_argument("--data-dir", help="data dir of the daemon this script starts (default: a temp dir)")
    p.add_argument("--requests", type=int, default=3000, help="per case and concurrency (default 3000)")
    p.add_argument("--duration", type=float,
                   help="seconds per case and concurrency (httpx: instead of --requests; wrk: default "
                        f"{WRK_DEFAULT_DURATION_S:.0f})")
    p.add_argument("--warmup", type=int, default=200, help="unmeasured requests per case (default 200)")
    p.add_argument("--concurrency", type=_ints, default=[1, 32], help="comma-separated (default 1,32)")
    p.add_argument("--cases", type=_cases, default=list(CASES),
                   help=f"comma-separated (default {','.join(CASES)})")
    p.add_argument("--worlds", type=int, default=100)
    p.add_argument("--strategies", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--redis", metavar="URL",
                   help="own daemon: Redis activation projection at this URL (default: in-memory projection)")
    p.add_argument("--client", choices=CLIENTS, default="auto",
                   help="load generator: httpx (asyncio), wrk, or auto = wrk if on PATH else httpx (default)")
    args = p.parse_args(argv)
    args.client_choice = args.client
    args.pid = args.daemon_pid
    args.client = resolve_client(args.client)
    return args


async def bench(base_url: str, args: argparse.Namespace) -> list[Result] | list[WrkResult]:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        started = time.perf_counter()
        fixture = await seed(client, args.worlds, args.strategies)
        print(f"  seeded {len(fixture.worlds)} worlds in {time.perf_counter() - started:.1f} s",
              file=sys.stderr, flush=True)
    if args.client == "wrk":
        return measure_wrk(base_url, fixture, args)  # blocking, but nothing else runs on this loop
    return await measure(base_url, fixture, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    daemon = None
    tmp = None
    if args.url:
        base_url, target = args.url.rstrip("/"), f"{args.url} (already running)"
    else:
        if args.data_dir:
            data_dir = Path(args.data_dir)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="ws-bench-")
            data_dir = Path(tmp.name)
        env = {}
        if args.redis:  # a bench-only prefix, so the projection does not mix with another run's keys
            env = {"WORLDSERVICE__SERVER__REDIS": args.redis,
                   "WORLDSERVICE__SERVER__REDIS_PREFIX": f"wsbench-{uuid.uuid4().hex[:8]}-"}
        daemon = DaemonProcess(data_dir, data_dir / "daemon.log", env=env)  # the tests' helper
        daemon.start()
        args.pid = daemon.pid
        base_url = daemon.url
        projection = f"Redis activation projection at {args.redis}" if args.redis else "in-memory activation projection"
        target = (f"own daemon at {base_url}, dev profile (SQLite file, synchronous=FULL, {projection}), "
                  f"data {data_dir}")
    try:
        print(header(args, target), flush=True)
        results = asyncio.run(bench(base_url, args))
    finally:
        if daemon is not None:
            daemon.stop()
        if tmp is not None:
            tmp.cleanup()
    print()
    print(table(results))
    total_errors = sum(sum(r.errors.values()) for r in results)
    print(f"\ntotal errors: {total_errors}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
