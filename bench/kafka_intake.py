"""Kafka command intake benchmark: the daemon's intake against a no-op consume-and-reply loop, same broker.

    uv run python bench/kafka_intake.py                        # its own tansu, 100 worlds, 3000 commands
    uv run python bench/kafka_intake.py --commands 10000 --worlds 100 --rounds 3
    uv run python bench/kafka_intake.py --daemon-root /tmp/ws-main   # A/B: a daemon from another tree
    uv run python bench/kafka_intake.py --profile /tmp/prof    # py-spy the daemon during the timed rounds
    WORLDSERVICE_TEST_KAFKA=127.0.0.1:9092 uv run python bench/kafka_intake.py   # an existing broker

Both targets are child processes fed by the same load generator (this process):

* ``daemon``: ``worldservice serve`` on the durable profile (SQLite ``synchronous=FULL``; ``--redis URL``
  adds the Redis projection) with a Kafka ControlBus; its intake consumes the command topic.
* ``noop``: an aiokafka consumer in a group that answers every record on its ``reply_to`` with a small JSON
  reply and commits each batch after the replies are acknowledged; nothing else. The broker's and the
  client library's own ceiling: what a perfect intake would reach on this machine.

For each target: seed ``--worlds`` worlds over HTTP (daemon only), send one warm-up command per world and
wait for its reply (the group has joined, every world actor is resident), then per round produce
``--commands`` ``put_activation`` commands (JSON, key = world_id, headers ``correlation_id`` and
``reply_to``; worlds round-robin, so a fetched batch spans many worlds) as fast as the producer takes them,
and stop the clock when the last reply arrived on ``reply_to``. A reply leaves the daemon only after the
command is committed, so commands/s is end-to-end durable throughput. Latency is per command, from its send
to its reply. Everything runs on the same cores: the numbers are indicative, the ratio is the point.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from tests import daemon_process  # noqa: E402
from tests.kafka_broker import EXTERNAL_BROKER_ENV, KafkaBroker, speaks_kafka, unique_topic  # noqa: E402
from tests.kafka_gateway import daemon_kafka_env  # noqa: E402

GROUP_OPTIONS = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300}
_encode = msgspec.json.encode


# --- the no-op target (a child process) -----------------------------------------------------------------


async def noop_loop(brokers: str, topic: str, group: str, max_records: int, fetch_max_wait_ms: int,
                    linger_ms: int) -> None:
    """Consume, reply on ``reply_to``, await the acks, commit; until SIGTERM."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms,
                                max_poll_records=max_records, **GROUP_OPTIONS)
    producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=linger_ms)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await consumer.start()
    await producer.start()
    try:
        while not stopping.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=max_records)
            acks = []
            for records in batch.values():
                for record in records:
                    headers = {name: value for name, value in record.headers}
                    body = _encode({"status": 200, "body": None, "correlation_id": headers["correlation_id"].decode()})
                    acks.append(await producer.send(headers["reply_to"].decode(), body, key=record.key,
                                                    headers=[("correlation_id", headers["correlation_id"])]))
            await asyncio.gather(*acks)
            if batch:
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
    finally:
        await producer.stop()
        await consumer.stop()


class NoopTarget:
    def __init__(self, brokers: str, topic: str, args: argparse.Namespace, log_path: Path) -> None:
        self._command = [sys.executable, str(Path(__file__).resolve()), "_noop", brokers, topic,
                         unique_topic("bench-noop"), str(args.max_records), str(args.fetch_max_wait_ms),
                         str(args.linger_ms)]
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(self._command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)


# --- load generator -------------------------------------------------------------------------------------


@dataclass
class Round:
    target: str
    commands: int
    elapsed: float
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)

    @property
    def rate(self) -> float:
        return self.commands / self.elapsed

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def put_activation(world_id: str, n: int) -> bytes:
    side = "long" if n % 2 else "short"
    return _encode({"kind": "put_activation", "world_id": world_id,
                    "body": {"strategy_id": f"s{n % 10}", "side": side, "active": True, "weight": (n % 97) / 100}})


class Driver:
    """Produces commands and collects their replies (matched by correlation id) on one reply topic."""

    def __init__(self, brokers: str, commands_topic: str) -> None:
        self.brokers, self.commands_topic = brokers, commands_topic
        self.reply_topic = unique_topic("bench-replies")
        self.producer = AIOKafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=5)
        self.consumer: AIOKafkaConsumer | None = None
        self._sent_at: dict[str, float] = {}
        self._waiting: dict[str, tuple[Round, asyncio.Event, list[int]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()
        await self.producer.send_and_wait(self.reply_topic, b"{}")  # the topic exists before we subscribe
        self.consumer = AIOKafkaConsumer(self.reply_topic, bootstrap_servers=self.brokers, group_id=None,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=10)
        await self.consumer.start()
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.consumer is not None:
            await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        assert self.consumer is not None
        while True:
            for records in (await self.consumer.getmany(timeout_ms=100, max_records=2000)).values():
                now = time.perf_counter()
                for record in records:
                    self._arrived(record.value, now)

    def _arrived(self, value: bytes, now: float) -> None:
        reply = msgspec.json.decode(value)
        correlation = reply.get("correlation_id")
        sent = self._sent_at.pop(correlation, None) if correlation else None
        if sent is None:
            return  # the topic's first message, or a duplicate of an at-least-once reply
        result, done, remaining = self._waiting[correlation.rsplit("-", 1)[0]]
        result.latencies.append(now - sent)
        result.statuses[reply["status"]] += 1
        remaining[0] -= 1
        if not remaining[0]:
            done.set()

    async def round(self, target: str, worlds: list[str], count: int, timeout_s: float) -> Round:
        """Send ``count`` commands (worlds round-robin) and return once every reply arrived."""
        prefix = f"{target}.{uuid.uuid4().hex[:8]}"
        result, done = Round(target=target, commands=count, elapsed=0.0), asyncio.Event()
        self._waiting[prefix] = (result, done, [count])
        started = time.perf_counter()
        acks = []
        for n in range(count):
            world_id, correlation = worlds[n % len(worlds)], f"{prefix}-{n}"
            self._sent_at[correlation] = time.perf_counter()
            headers = [("correlation_id", correlation.encode()), ("reply_to", self.reply_topic.encode())]
            acks.append(await self.producer.send(self.commands_topic, put_activation(world_id, n),
                                                 key=world_id.encode(), headers=headers))
        await asyncio.gather(*acks)
        try:
            await asyncio.wait_for(done.wait(), timeout_s)
        except TimeoutError:
            raise SystemExit(f"{target}: {self._waiting[prefix][2][0]} of {count} replies missing after "
                             f"{timeout_s} s") from None
        result.elapsed = time.perf_counter() - started
        return result


# --- targets and the run --------------------------------------------------------------------------------


def seed_worlds(url: str, worlds: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for world_id in worlds:
            response = client.post("/worlds", json={"id": world_id})
            if response.status_code != 201:
                raise SystemExit(f"seeding {world_id}: {response.status_code} {response.text}")


def daemon_target(brokers: str, topics: dict[str, str], args: argparse.Namespace, workdir: Path,
                  worlds: list[str]) -> daemon_process.DaemonProcess:
    env = {**daemon_kafka_env(brokers, topics), **dict(item.split("=", 1) for item in args.daemon_env)}
    if args.redis:
        env["WORLDSERVICE__SERVER__REDIS"] = args.redis
    daemon_process.PROJECT_ROOT = args.daemon_root  # the tree whose daemon is measured (A/B)
    daemon = daemon_process.DaemonProcess(workdir / "data", workdir / "daemon.log", env=env)
    daemon.start()
    seed_worlds(daemon.url, worlds)
    return daemon


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", "200", "--format", "raw",
                             "--threads", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def stop_profiler(profiler: subprocess.Popen[bytes], out: Path) -> None:
    profiler.send_signal(signal.SIGINT)
    profiler.wait(timeout=60)
    print(f"  profile: {out}  (top self time below; flamegraph: py-spy's raw format, one stack per line)")
    for line in summarize_profile(out):
        print(f"    {line}")


def summarize_profile(raw: Path, top: int = 15) -> list[str]:
    """Self samples per leaf frame, and inclusive samples per thread, from py-spy's collapsed stacks."""
    leaves: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, samples = stack.split(";"), int(count)
        total += samples
        threads[frames[0].split(" ")[0] if frames else "?"] += samples
        leaves[frames[-1]] += samples
    lines = [f"{100 * n / total:5.1f}%  {thread}" for thread, n in threads.most_common(8)]
    lines += [f"{100 * n / total:5.1f}%  {leaf}" for leaf, n in leaves.most_common(top)]
    return lines


async def measure(target: str, start: Callable[[], int], stop: Callable[[], None], brokers: str,
                  commands_topic: str, worlds: list[str], args: argparse.Namespace, workdir: Path) -> list[Round]:
    pid = start()
    driver = Driver(brokers, commands_topic)
    await driver.start()
    rounds = []
    try:
        await driver.round(target, worlds, len(worlds), timeout_s=120)  # group joined, worlds resident
        profiler = start_profiler(pid, workdir / f"{target}.pyspy.txt") if args.profile else None
        for _ in range(args.rounds):
            rounds.append(await driver.round(target, worlds, args.commands, timeout_s=600))
            print(f"  {target}: {rounds[-1].rate:8.0f} commands/s  p50 {rounds[-1].percentile_ms(50):7.1f} ms  "
                  f"p99 {rounds[-1].percentile_ms(99):7.1f} ms  statuses {dict(rounds[-1].statuses)}", flush=True)
        if profiler is not None:
            stop_profiler(profiler, workdir / f"{target}.pyspy.txt")
    finally:
        await driver.stop()
        stop()
    return rounds


def best(rounds: list[Round]) -> Round:
    return max(rounds, key=lambda r: r.rate)


async def run(args: argparse.Namespace, brokers: str) -> None:
    workdir = Path(args.profile or tempfile.mkdtemp(prefix="ws-bench-kafka-"))
    workdir.mkdir(parents=True, exist_ok=True)
    worlds = [f"kb-{uuid.uuid4().hex[:4]}-{i:03d}" for i in range(args.worlds)]
    results: dict[str, list[Round]] = {}
    for target in args.targets:
        topics = {name: unique_topic(f"bench-{name}")
                  for name in ("activation", "policy", "ack", "commands", "dlq", "group")}
        if target == "daemon":
            holder: list[daemon_process.DaemonProcess] = []

            def start_daemon() -> int:
                holder.append(daemon_target(brokers, topics, args, workdir, worlds))
                return holder[0].pid

            results[target] = await measure(target, start_daemon, lambda: holder[0].stop(), brokers,
                                            topics["commands"], worlds, args, workdir)
        else:
            noop = NoopTarget(brokers, topics["commands"], args, workdir / "noop.log")

            def start_noop() -> int:
                noop.start()
                return noop.pid

            results[target] = await measure(target, start_noop, noop.stop, brokers, topics["commands"],
                                            worlds, args, workdir)
    print(f"\n{args.commands} put_activation commands x {args.rounds} rounds, {args.worlds} worlds, "
          f"daemon from {args.daemon_root}; best round:")
    for target, rounds in results.items():
        top = best(rounds)
        print(f"  {target:7} {top.rate:8.0f} commands/s   p50 {top.percentile_ms(50):7.1f} ms   "
              f"p99 {top.percentile_ms(99):7.1f} ms")
    if {"daemon", "noop"} <= results.keys():
        print(f"  ratio   {best(results['daemon']).rate / best(results['noop']).rate:8.1%} of the no-op loop")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=3000, help="commands per timed round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--worlds", type=int, default=100)
    parser.add_argument("--targets", type=lambda s: s.split(","), default=["noop", "daemon"])
    parser.add_argument("--redis", help="a Redis URL for the daemon's activation projection")
    parser.add_argument("--daemon-root", type=Path, default=PROJECT_ROOT,
                        help="the source tree the daemon runs from (A/B against another commit)")
    parser.add_argument("--daemon-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra WORLDSERVICE__* setting for the daemon")
    parser.add_argument("--max-records", type=int, default=500, help="no-op loop: records per fetch")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=50, help="no-op loop: broker-side fetch wait")
    parser.add_argument("--linger-ms", type=int, default=0, help="no-op loop: producer linger")
    parser.add_argument("--profile", help="a directory: py-spy each target during its timed rounds")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    if argv[:1] == ["_noop"]:
        brokers, topic, group, max_records, fetch_wait, linger = argv[1:7]
        asyncio.run(noop_loop(brokers, topic, group, int(max_records), int(fetch_wait), int(linger)))
        return
    args = parse_args(argv)
    external = os.environ.get(EXTERNAL_BROKER_ENV)
    broker = None
    if external:
        if not speaks_kafka(external, timeout_s=5.0):
            raise SystemExit(f"{EXTERNAL_BROKER_ENV}={external} does not answer")
        brokers = external
    else:
        broker = KafkaBroker()
        broker.start()
        brokers = broker.address
    try:
        asyncio.run(run(args, brokers))
    finally:
        if broker is not None:
            broker.close()


if __name__ == "__main__":
    main(sys.argv[1:])
