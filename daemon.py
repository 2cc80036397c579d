"""Composition root and CLI: ``worldservice serve | migrate | check-config | rebuild-activation | world``.

config -> storage -> actors -> transports; signals and drain. The asyncio loop runs in the main thread
(where signals arrive) and serves HTTP; actors run on their own threads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import msgspec
import uvicorn

from actors.directory_messages import noop_reply
from actors.risk_consumer import RiskEventReceived
from actors.system import ActorSystem
from config import Config, ConfigError, load_config
from storage import migrate
from storage.activation_store import MemoryActivationStore
from storage.engine import create_engine
from storage.epochs import OwnerEpochs
from storage.probes import sql_unreachable
from storage.sql import SqlStore
from transport.http import Edge, RebalanceFlags, create_app
from transport.log_sink import LogSink, stamp_time, to_queue
from transport.memory_bus import InMemoryBus
from transport.systemd import Systemd

log = structlog.get_logger("worldservice.daemon")


def configure_logging(level: str) -> LogSink:
    """One JSON object per line on stdout, for our own events and for libraries' stdlib logging
    (uvicorn, alembic) alike; the level filter runs before any formatting work, and the rendering and
    writing run on the sink's thread, off the command path."""
    global _log_sink
    if _log_sink is not None:
        _log_sink.stop()
    _log_sink = sink = LogSink(sys.stdout).start()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, stamp_time,
                    structlog.processors.format_exc_info, to_queue],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=sink.logger_factory,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers = [sink.stdlib_handler(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level,
                           structlog.processors.TimeStamper(fmt="iso", utc=True)],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.JSONRenderer()],
    ))]
    root.setLevel(level.upper())
    return sink


def stop_logging() -> None:
    """Write every queued log line (also done at interpreter exit)."""
    if _log_sink is not None:
        _log_sink.stop()


_log_sink: LogSink | None = None


@dataclass
class Runtime:
    config: Config
    store: SqlStore
    bus: Any  # the ControlBus publisher: InMemoryBus (dev, tests) or KafkaPublisher
    system: ActorSystem

    def close(self) -> None:
        self.system.stop()
        self.store.engine.dispose()


def preflight(config: Config) -> list[str]:
    """Everything that stops a start, one line per setting: missing settings first (prod's, a JWT block's,
    cluster mode's); in prod, then every required service that does not answer."""
    problems = config.prod_problems() + config.auth_problems() + config.cluster_problems()
    if problems or config.profile != "prod":
        return problems
    from transport.kafka import brokers_unreachable  # the prod preflight only

    server = config.server
    # Not Redis: it holds only a projection of SQL, so an unreachable Redis is a degraded start (served
    # from SQL, rebuilt when Redis answers), never a refused one that a supervisor would loop on.
    probes = (("worldservice.server.dsn", sql_unreachable, server.dsn),
              ("worldservice.server.controlbus_brokers", brokers_unreachable, server.controlbus_brokers))
    return [f"{name}: unreachable ({why})" for name, probe, target in probes if (why := probe(target))]


def _checked(config: Config) -> Config:
    problems = preflight(config)
    if problems:
        raise ConfigError("\n".join(problems))
    return config


def projection_store(config: Config) -> Any:
    if config.server.redis:
        from storage.redis_stores import RedisActivationStore  # only with Redis: see storage.redis_stores

        return RedisActivationStore(config.server.redis, config.server.redis_prefix)
    if config.profile == "prod":
        raise ConfigError("prod profile requires worldservice.server.redis (in-memory activation store refused)")
    return MemoryActivationStore()


def rebalance_executor(config: Config) -> Any:
    """The HTTP rebalance executor when ``allocations.executor_url`` is set (httpx only then), else ``None``."""
    a = config.worldservice.allocations
    if not a.executor_url:
        return None
    from transport.executor import HttpExecutor

    return HttpExecutor(a.executor_url, a.executor_timeout_s, a.executor_retries)


def storage_engine(config: Config) -> Any:
    """The SQL engine with the storage settings' bounds (the PostgreSQL ones are ignored by SQLite)."""
    s = config.worldservice.storage
    return create_engine(config.sql_dsn(), sqlite_synchronous=s.sqlite_synchronous,
                         connect_timeout_s=s.sql_connect_timeout_s, pool_timeout_s=s.sql_pool_timeout_s,
                         statement_timeout_s=s.sql_statement_timeout_s)


def build_runtime(config: Config, publisher: Any = None, executor: Any = None, **clocks: Any) -> Runtime:
    """Storage first (migrated when the profile says so), then the actors around it. Without a Kafka
    ``publisher`` the ControlBus is in memory. ``clocks`` (``clock``, ``monotonic``) let tests drive time
    instead of waiting for it."""
    engine = storage_engine(config)
    if config.auto_migrate():
        migrate.upgrade(engine)
    elif not migrate.is_current(engine):
        raise ConfigError("database schema is not at head; run `worldservice migrate` first")
    cluster = config.cluster  # cluster mode: every write batch is fenced by its partitions' owner epochs
    store = SqlStore(engine, OwnerEpochs(cluster.partitions) if cluster is not None else None)
    bus = publisher if publisher is not None else InMemoryBus()
    executor = executor if executor is not None else rebalance_executor(config)
    system = ActorSystem(store, projection_store(config), bus, config, executor=executor, **clocks)
    if isinstance(bus, InMemoryBus):
        bus.subscribe(lambda published: system.receive_ack_now(published.event),
                      topic=config.worldservice.controlbus.ack_topic)
        if config.worldservice.risk_hub.consumer_enabled:  # dev: the same event-driven path, in memory
            for family in ("risk_snapshot", "policy"):  # snapshots, and new evaluation runs
                bus.subscribe(lambda published: system.receive_risk_event(
                    RiskEventReceived(raw=msgspec.json.encode(published.event), reply=noop_reply)),
                    topic=config.worldservice.controlbus.topics[family])
    return Runtime(config=config, store=store, bus=bus, system=system)


class _Server(uvicorn.Server):
    """Signals are the daemon's, not uvicorn's: uvicorn would re-raise a captured SIGTERM after its own
    shutdown and so kill the process before the actors drain."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Shutdown:
    """Installed before anything starts and kept until the drain is over, so a signal at any moment
    (during recovery, while serving, a second one while draining) leads to the same clean exit."""

    def __init__(self, systemd: Systemd) -> None:
        self.requested = False
        self.server: uvicorn.Server | None = None
        self.edge: Edge | None = None
        self.systemd = systemd

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request)

    def request(self) -> None:
        if not self.requested:
            self.systemd.notify("STOPPING=1")
        self.requested = True
        if self.edge is not None:
            self.edge.draining = True  # readiness fails first, so balancers stop sending
        if self.server is not None:
            self.server.should_exit = True

    @staticmethod
    def uninstall() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)  # drained: a late signal must not turn exit 0 into a kill


async def _sweep_forever(system: ActorSystem, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(system.sweep)


async def _guard_projection_forever(system: ActorSystem, interval_s: float) -> None:
    """Every ``interval_s``; while the projection is degraded, a probe with backoff (0.25 s doubling up
    to ``interval_s``), so Redis' return is noticed quickly without a PING storm during a long outage."""
    backoff = _PROBE_FIRST_S
    while True:
        degraded = system.projection_degraded()
        await asyncio.sleep(min(backoff, interval_s) if degraded else interval_s)
        backoff = backoff * 2 if degraded else _PROBE_FIRST_S
        try:
            repaired = await asyncio.to_thread(system.guard_projection)
        except Exception as exc:  # noqa: BLE001 - Redis down or a world slow: the next round retries
            log.error("activation_projection_guard_failed", error=repr(exc))
            continue
        if repaired:
            backoff = _PROBE_FIRST_S
            log.warning("activation_projection_rebuilt", worlds=len(repaired))


_PROBE_FIRST_S = 0.25


async def _tick_forever(system: ActorSystem, config: Config) -> None:
    """Apply timers (ACK gap timeouts, deadlines, re-sends) and relay retries after a broker outage;
    both are ``tell``s, so the loop never waits on an actor."""
    tick_s = config.worldservice.apply.tick_interval_ms / 1000
    relay_every = max(1, round(config.worldservice.controlbus.relay_retry_ms / config.worldservice.apply.tick_interval_ms))
    ticks = 0
    while True:
        await asyncio.sleep(tick_s)
        system.tick()
        ticks += 1
        if ticks % relay_every == 0:
            system.relay_soon()


async def _recover(runtime: Runtime) -> int:
    """Before readiness: repair the activation projection, carry on (or roll back) apply runs a crash
    interrupted, and relay events committed before the crash."""
    repaired = await asyncio.to_thread(runtime.system.verify_projection)
    resumed = await asyncio.to_thread(runtime.system.resume_open_runs)
    if resumed:
        log.info("apply_runs_resumed", worlds=resumed)
    await asyncio.to_thread(runtime.system.relay_now)
    return len(repaired)


def _kafka_publisher(config: Config) -> Any:
    """The Kafka ControlBus when brokers are configured, else ``None`` (the bus stays in memory)."""
    if not config.server.controlbus_brokers:
        return None
    from transport.kafka_wiring import kafka_publisher  # aiokafka only with brokers: see the module

    return kafka_publisher(config)


async def _start_consumers(config: Config, runtime: Runtime, edge: Edge, publisher: Any) -> list[Any]:
    if publisher is None:
        return []
    from transport.kafka_wiring import start_consumers

    return await start_consumers(config, runtime.system, publisher, edge)


async def serve(config: Config) -> None:
    shutdown = _Shutdown(Systemd())
    shutdown.install()
    publisher = _kafka_publisher(config)
    runtime = await asyncio.to_thread(build_runtime, config, publisher)
    edge = Edge(system=runtime.system)
    consumers: list[Any] = []
    try:
        if publisher is not None:
            await publisher.start()
        repaired = await _recover(runtime)
        consumers = await _start_consumers(config, runtime, edge, publisher)
        if not shutdown.requested:
            await _serve_http(config, runtime, edge, shutdown, repaired)
    finally:
        edge.draining = True
        for consumer in consumers:  # intake stops first: nothing new arrives while the actors drain
            await consumer.stop()
        await asyncio.to_thread(runtime.close)  # the relay's last publish still runs on this loop
        if publisher is not None:
            await publisher.stop()
        log.info("stopped")
        shutdown.uninstall()


async def _serve_http(config: Config, runtime: Runtime, edge: Edge, shutdown: _Shutdown, repaired: int) -> None:
    edge.ready = True
    bind = config.server.bind
    flags = RebalanceFlags(config.server.compat_rebalance_v2, config.server.alpha_metrics_required)
    server = _Server(uvicorn.Config(create_app(edge, config.server.auth, flags), host=bind.host, port=bind.port, lifespan="off",
                                    http="httptools", log_config=None, access_log=False, timeout_graceful_shutdown=25))
    shutdown.server, shutdown.edge = server, edge
    timers = [asyncio.create_task(_sweep_forever(runtime.system, config.worldservice.actors.sweep_interval_s)),
              asyncio.create_task(_tick_forever(runtime.system, config)),
              asyncio.create_task(_guard_projection_forever(runtime.system, config.worldservice.actors.projection_check_s)),
              asyncio.create_task(_ready_then_watchdog(server, shutdown.systemd, runtime.system))]
    log.info("serving", host=bind.host, port=bind.port, profile=config.profile, dsn=_redacted(config.sql_dsn()),
             projection_repaired=repaired)
    try:
        await server.serve()
    finally:
        edge.draining = True
        for timer in timers:
            timer.cancel()


async def _ready_then_watchdog(server: uvicorn.Server, systemd: Systemd, system: ActorSystem) -> None:
    """READY=1 once recovery is done and the port accepts connections (uvicorn sets ``started``); the
    watchdog pets begin after it."""
    while not server.started:
        await asyncio.sleep(0.02)
    systemd.notify("READY=1")
    await systemd.watchdog(system.alive)


def _redacted(dsn: str) -> str:
    head, sep, tail = dsn.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if sep else dsn


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    ws: dict[str, Any] = {}
    if args.data_dir:
        ws["data_dir"] = args.data_dir
    bind = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if bind:
        ws["server"] = {"bind": bind}
    out: dict[str, Any] = {"worldservice": ws} if ws else {}
    if args.profile:
        out["profile"] = args.profile
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldservice", description="WorldService daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "run the daemon"), ("migrate", "upgrade the database schema"),
                            ("check-config", "validate the configuration and exit"),
                            ("rebuild-activation", "rebuild the activation projection from the audit log")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", help="YAML or TOML file")
        p.add_argument("--profile", choices=["dev", "prod"])
        p.add_argument("--host")
        p.add_argument("--port", type=int)
        p.add_argument("--data-dir")
    # Only for the help text: ``main`` hands ``world …`` to the CLI before argparse sees it.
    sub.add_parser("world", help="operate a running daemon over HTTP (worldservice world --help)", add_help=False)
    return parser


def _run_migrate(config: Config) -> None:
    engine = create_engine(config.sql_dsn())
    migrate.upgrade(engine)
    print(f"schema at {migrate.current_revision(engine)}")


def _run_rebuild(config: Config) -> None:
    runtime = build_runtime(config)
    try:
        print(f"rebuilt activation for {runtime.system.rebuild_projection_from_audit()} worlds")
    finally:
        runtime.close()


def _run_loop(main_coro: Any) -> None:
    """uvloop when installed (uvicorn[standard] brings it): the edge's per-request event-loop work is
    about a third cheaper in CPU than on the stdlib loop (measured by bench/http_activation.py)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_coro)
        return
    uvloop.run(main_coro)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["world"]:
        from cli.main import run  # the operators' CLI: it only speaks HTTP to a daemon

        return run(argv[1:])
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config, overrides=_overrides(args))
        if args.command != "check-config":
            configure_logging(config.worldservice.log_level)
        if args.command == "serve":
            _run_loop(serve(_checked(config)))
        elif args.command == "migrate":
            _run_migrate(config)
        elif args.command == "rebuild-activation":
            _run_rebuild(config)
        else:
            _checked(config)
            print(f"configuration ok (profile {config.profile})")
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"worldservice: {line}", file=sys.stderr)
        return 2
    finally:
        stop_logging()
    return 0


if __name__ == "__main__":
    sys.exit(main())
