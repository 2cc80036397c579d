"""Configuration: one schema and one loader for the daemon, the CLI and the tests.

Sources, later wins: built-in defaults < YAML/TOML file < ``WORLDSERVICE__SECTION__KEY`` environment
variables. The reference's layout is accepted: ``profile`` at the top and a ``worldservice:`` section whose
``server:`` keys may also be written inline.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta

ENV_PREFIX = "WORLDSERVICE__"
_INLINE_SERVER_KEYS = ("dsn", "redis", "controlbus_brokers", "controlbus_topic", "bind", "auth",
                       "compat_rebalance_v2", "alpha_metrics_required")


class Bind(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080


class JwtConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Bearer JWT verification, everything pinned: one algorithm, its key, issuer and audience."""

    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "ES256"] = "HS256"
    secret: str | None = None  # HS*: the shared secret
    public_key: str | None = None  # RS256/ES256: PEM text
    issuer: str | None = None
    audience: str | None = None
    roles_claim: str = "roles"
    leeway_s: Annotated[float, Meta(ge=0)] = 30.0


class Auth(msgspec.Struct, forbid_unknown_fields=True):
    """``jwt`` turns authentication on (every route but health and metrics). ``tokens`` are opaque
    service tokens (a Gateway's), granted ``service_role`` on every world."""

    header: str = "Authorization"
    tokens: list[str] = []
    service_role: Literal["reader", "operator", "owner"] = "reader"
    jwt: JwtConfig | None = None

    @property
    def enabled(self) -> bool:
        return self.jwt is not None or bool(self.tokens)


class ServerConfig(msgspec.Struct, forbid_unknown_fields=True):
    dsn: str | None = None  # None: SQLite file under data_dir
    redis: str | None = None  # None: in-memory activation store (dev only)
    redis_prefix: str = ""
    controlbus_brokers: list[str] = []
    controlbus_topic: str | None = None
    bind: Bind = msgspec.field(default_factory=Bind)
    auth: Auth = msgspec.field(default_factory=Auth)
    compat_rebalance_v2: bool = False
    alpha_metrics_required: bool = False


class ActorsConfig(msgspec.Struct, forbid_unknown_fields=True):
    idle_timeout_s: float = 300.0
    sweep_interval_s: float = 30.0
    max_resident_worlds: int = 5000
    group_commit_max: int = 256
    write_timeout_s: float = 30.0
    projection_check_s: float = 5.0  # how soon a flushed Redis is noticed and rebuilt


class StorageConfig(msgspec.Struct, forbid_unknown_fields=True):
    sqlite_synchronous: Literal["FULL", "NORMAL", "EXTRA"] = "FULL"
    auto_migrate: bool | None = None  # None: on in dev, off in prod (run `worldservice migrate`)
    # PostgreSQL only. While the database is away a command must fail fast (503, retry) rather than hold
    # the SqlWriter, a storage reader or the outbox relay: each of these bounds how long one attempt waits.
    sql_connect_timeout_s: Annotated[float, Meta(ge=1)] = 3.0  # opening a new connection (psycopg connect_timeout)
    sql_pool_timeout_s: Annotated[float, Meta(gt=0)] = 2.0  # waiting for a free pooled connection
    sql_statement_timeout_s: Annotated[float, Meta(gt=0)] = 10.0  # one statement, server side (statement_timeout)


class ApplyConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The 2-phase apply. ``await_acks`` None: on exactly when a Kafka ControlBus is configured."""

    await_acks: bool | None = None
    activation_gap_timeout_ms: Annotated[int, Meta(ge=1)] = 3000
    timeout_policy: Literal["hold_frozen", "rollback"] = "hold_frozen"
    deadline_ms: Annotated[int, Meta(ge=1)] = 30_000
    # A Gateway that is merely slow must not be buried under copies: the first re-send waits a while.
    resend_initial_ms: Annotated[int, Meta(ge=1)] = 2000
    resend_max_ms: Annotated[int, Meta(ge=1)] = 15_000
    tick_interval_ms: Annotated[int, Meta(ge=10)] = 200


def _default_topics() -> dict[str, str]:
    return {"activation": "activation", "policy": "policy", "rebalancing_planned": "rebalancing_planned",
            "edges": "control.edges", "domains": "control.domains", "risk_snapshot": "risk_snapshot"}


class ControlBusConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Kafka topics. ``topics`` maps each event family to its topic (the names a reference Gateway routes
    on); unlike the reference, event types are never mixed on one topic."""

    topics: dict[str, str] = msgspec.field(default_factory=_default_topics)
    ack_topic: str = "control.activation.ack"
    commands_topic: str = "worldservice.commands"
    commands_dlq_topic: str = "worldservice.commands.dlq"
    commands_enabled: bool = True
    group_id: str = "worldservice"
    send_timeout_s: Annotated[float, Meta(gt=0)] = 10.0
    relay_retry_ms: Annotated[int, Meta(ge=10)] = 1000
    session_timeout_ms: Annotated[int, Meta(ge=1000)] = 10_000  # a group join takes about half of it
    heartbeat_interval_ms: Annotated[int, Meta(ge=100)] = 3000
    fetch_max_wait_ms: Annotated[int, Meta(ge=1)] = 50  # ACKs and commands are latency-bound, not bulk
    # Most command records taken in one fetch: one batch handed to the worlds, one round of replies.
    commands_max_poll_records: Annotated[int, Meta(ge=1)] = 500
    # Fetched command batches handled at once (pipelined); their offsets are still committed in order.
    commands_in_flight: Annotated[int, Meta(ge=1)] = 4
    # How long the producer holds replies and events to send more of them per request; 0: send at once
    # (what accumulates during a request in flight still goes out as one batch).
    linger_ms: Annotated[int, Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        # A file naming only some families must not send the others to a topic named after the family.
        self.topics = {**_default_topics(), **self.topics}


class AllocationsConfig(msgspec.Struct, forbid_unknown_fields=True):
    """``execute=true`` calls this HTTP executor (POST, JSON plan snapshot); unset: 503 before anything is
    stored."""

    executor_url: str | None = None
    executor_timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    executor_retries: Annotated[int, Meta(ge=0)] = 2


class RiskHubConfig(msgspec.Struct, forbid_unknown_fields=True):
    """The Risk Signal Hub (reference ``risk_hub:``). ``token``: when set, a push must carry
    ``Authorization: Bearer <token>`` (the reference's check; with auth on, the route's role rule applies
    as well). ``blob_store`` None: Redis when ``server.redis`` is set, else SQL. The consumer reads
    ``risk_snapshot_updated`` from the ControlBus (group ``consumer_group``) and schedules extended
    validation; an event that fails ``max_attempts`` times goes to ``<topic>.dlq``. ``allowed_actors`` /
    ``allowed_stages``: when set, a push (or event) from another producer (``X-Actor``) or stage
    (``X-Stage``) is refused (422, exact names; an empty list admits nobody). ``realized_returns_max_points_*``:
    the reference's caps on inline realized returns (422 past them)."""

    token: str | None = None
    ttl_sec_default: Annotated[int, Meta(ge=1)] = 900
    ttl_sec_max: Annotated[int, Meta(ge=1)] = 86_400
    inline_cov_threshold: Annotated[int, Meta(ge=0)] = 100
    inline_max_bytes: Annotated[int, Meta(ge=0)] = 65_536
    allowed_actors: list[Annotated[str, Meta(min_length=1)]] | None = None
    allowed_stages: list[Annotated[str, Meta(min_length=1)]] | None = None
    realized_returns_max_points_per_series: Annotated[int, Meta(ge=1)] = 200_000
    realized_returns_max_points_total: Annotated[int, Meta(ge=1)] = 1_000_000
    blob_store: Literal["sql", "redis"] | None = None
    latest_cache_ttl_s: Annotated[int, Meta(ge=1)] = 300
    consumer_enabled: bool = True
    consumer_group: str = "worldservice-risk-hub"
    max_attempts: Annotated[int, Meta(ge=1)] = 3
    retry_backoff_ms: Annotated[int, Meta(ge=0)] = 500
    dedupe_window: Annotated[int, Meta(ge=1)] = 1000

    def __post_init__(self) -> None:
        if self.ttl_sec_default > self.ttl_sec_max:
            raise ValueError(f"risk_hub.ttl_sec_default ({self.ttl_sec_default}) exceeds ttl_sec_max "
                             f"({self.ttl_sec_max})")


class ClusterConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Many instances, one owner per world. Setting this section (a key of it in the file, or
    ``WORLDSERVICE__CLUSTER__ADVERTISE_URL`` alone) turns cluster mode on, which requires PostgreSQL and
    Kafka. Every instance joins the commands topic's consumer group (``controlbus.group_id``); a world
    belongs to the instance assigned its partition, and every write of the world is fenced in SQL by that
    partition's owner epoch. The instances share one file: only the port and ``advertise_url`` differ."""

    # This instance's internal base URL (``http://host:port``): where the other instances forward a
    # request for a world it owns, and the owner the epoch row names. Required in cluster mode.
    advertise_url: str | None = None
    # Partitions of the commands topic. A world's partition is Kafka's default partitioner for its id
    # (murmur2 of the UTF-8 bytes, modulo this), so it must equal the topic's partition count.
    partitions: Annotated[int, Meta(ge=1, le=10_000)] = 12
    # A request for a world owned by another instance: proxied to the owner (``forward``) or answered
    # 307 with the owner's URL (``redirect``).
    forward: Literal["forward", "redirect"] = "forward"
    # How long a forwarded request may wait for the owner's answer.
    forward_timeout_s: Annotated[float, Meta(gt=0)] = 10.0


class WorldServiceConfig(msgspec.Struct, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    data_dir: str = "./data"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    actors: ActorsConfig = msgspec.field(default_factory=ActorsConfig)
    storage: StorageConfig = msgspec.field(default_factory=StorageConfig)
    apply: ApplyConfig = msgspec.field(default_factory=ApplyConfig)
    controlbus: ControlBusConfig = msgspec.field(default_factory=ControlBusConfig)
    allocations: AllocationsConfig = msgspec.field(default_factory=AllocationsConfig)
    risk_hub: RiskHubConfig = msgspec.field(default_factory=RiskHubConfig)
    cluster: ClusterConfig | None = None  # None: one instance owns every world (the default)


class Config(msgspec.Struct, forbid_unknown_fields=True):
    profile: Literal["dev", "prod"] = "dev"
    worldservice: WorldServiceConfig = msgspec.field(default_factory=WorldServiceConfig)

    @property
    def server(self) -> ServerConfig:
        return self.worldservice.server

    def sql_dsn(self) -> str:
        return self.server.dsn or f"sqlite:///{Path(self.worldservice.data_dir) / 'worldservice.sqlite3'}"

    def prod_problems(self) -> list[str]:
        """What the prod profile requires and this configuration lacks, one line per setting."""
        if self.profile != "prod":
            return []
        server, problems = self.server, []
        if not _is_postgres(server.dsn):
            problems.append("worldservice.server.dsn: prod requires a PostgreSQL DSN (postgresql://...)")
        if not server.redis:
            problems.append("worldservice.server.redis: prod requires Redis (the in-memory activation store is refused)")
        if not server.controlbus_brokers:
            problems.append("worldservice.server.controlbus_brokers: prod requires Kafka (the in-memory bus is refused)")
        problems += _jwt_problems(server.auth.jwt)
        return problems

    @property
    def cluster(self) -> ClusterConfig | None:
        """The cluster section; ``None`` is the single-instance default."""
        return self.worldservice.cluster

    def cluster_problems(self) -> list[str]:
        """What cluster mode requires and this configuration lacks, one line per setting (any profile)."""
        cluster = self.cluster
        if cluster is None:
            return []
        problems, server = [], self.server
        if not (cluster.advertise_url or "").startswith(("http://", "https://")):
            problems.append("worldservice.cluster.advertise_url: cluster mode requires this instance's "
                            "internal URL (http://host:port; also WORLDSERVICE__CLUSTER__ADVERTISE_URL)")
        if not _is_postgres(server.dsn):
            problems.append("worldservice.server.dsn: cluster mode requires a PostgreSQL DSN "
                            "(postgresql://...): the owner epochs fencing the instances' writes live there")
        if not server.controlbus_brokers:
            problems.append("worldservice.server.controlbus_brokers: cluster mode requires Kafka (its "
                            "consumer group assigns the worlds to the instances)")
        return problems

    def auth_problems(self) -> list[str]:
        """A configured JWT block must name its key in any profile (prod checks more, above)."""
        jwt = self.server.auth.jwt
        if jwt is None or self.profile == "prod":
            return []
        return [p for p in _jwt_problems(jwt) if p.endswith(f"required for {jwt.algorithm}")]

    def await_acks(self) -> bool:
        flag = self.worldservice.apply.await_acks
        return bool(self.server.controlbus_brokers) if flag is None else flag

    def auto_migrate(self) -> bool:
        flag = self.worldservice.storage.auto_migrate
        return self.profile == "dev" if flag is None else flag


def _is_postgres(dsn: str | None) -> bool:
    return (dsn or "").startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def _jwt_problems(jwt: JwtConfig | None) -> list[str]:
    if jwt is None:
        return ["worldservice.server.auth.jwt: prod requires authentication (algorithm, key, issuer, audience)"]
    problems = []
    key_field = "secret" if jwt.algorithm.startswith("HS") else "public_key"
    if not getattr(jwt, key_field):
        problems.append(f"worldservice.server.auth.jwt.{key_field}: required for {jwt.algorithm}")
    for name in ("issuer", "audience"):
        if not getattr(jwt, name):
            problems.append(f"worldservice.server.auth.jwt.{name}: prod pins the token {name}")
    return problems


class ConfigError(ValueError):
    """A configuration problem, stated in one line that names the setting."""


def _read_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def _lift_inline_server_keys(data: dict[str, Any]) -> dict[str, Any]:
    section = dict(data.get("worldservice") or {})
    server = dict(section.get("server") or {})
    for key in _INLINE_SERVER_KEYS:
        if key in section:
            server[key] = section.pop(key)
    if server:
        section["server"] = server
    return {**data, "worldservice": section} if section else data


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``WORLDSERVICE__PROFILE=prod``, ``WORLDSERVICE__SERVER__DSN=...``, ``WORLDSERVICE__ACTORS__IDLE_TIMEOUT_S=5``.

    Values are parsed as YAML scalars so numbers, booleans and lists keep their types.
    """
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "WORLDSERVICE__CONFIG":
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        value = yaml.safe_load(raw) if raw != "" else None
        if path == ["profile"]:
            out["profile"] = value
        elif path:
            _set_path(out.setdefault("worldservice", {}), path, value)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _merge(merged.get(key) or {}, value) if isinstance(value, Mapping) else value
    return merged


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Load and validate. ``overrides`` (from CLI flags) win over everything."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("WORLDSERVICE__CONFIG")
    data: dict[str, Any] = _read_file(Path(path)) if path else {}
    data = _merge(_lift_inline_server_keys(data), _lift_inline_server_keys(_env_overrides(environ)))
    data = _merge(data, overrides or {})
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
