"""The default-safe rule (seed 003 §0 "Default-safe", §3, §4, §4-C) as a Hypothesis stateful test over HTTP.

Random sequences of world, policy, evidence, activation, apply and edge requests run against the in-process
daemon (SQLite file, in-memory projection, no Kafka, a fixed clock that only the ``advance_clock`` rule
moves). After every step, for every world, the answers must agree with one predicate:

    may_live = allow_live and not circuit_breaker and state == "ACTIVE"

1. ``/decide`` answers ``live`` only if ``may_live`` and the envelope names a dataset fingerprint;
2. an activation entry is ``live`` only if ``may_live`` and the world's ``execution_domain`` is live;
3. a world whose ``execution_domain`` is live has ``may_live`` and a pinned ``dataset_fingerprint``;
4. no active edge override into ``domain:live`` unless ``may_live`` and the domain is live.

Requests may be refused (any 2xx/4xx is fine); a 5xx fails, except an apply that rolled back (500,
``apply failed: ...``). Two machines share the invariant: switching (activation overrides, edges,
applies) and decisions (strategies, policies, evidence, time). ``WS_PROPERTY_EXAMPLES`` scales the example count; ``CI=true``
derandomizes (``--hypothesis-seed`` picks the search otherwise).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule, run_state_machine_as_test,
)
from litestar import Litestar
from litestar.testing import TestClient

from daemon import Runtime, build_runtime
from config import Config, load_config
from transport.http import Edge, RebalanceFlags, create_app

# A small pool, so sequences revisit the same world and strategy instead of spreading thin.
WORLDS = ("w1", "w2")
STRATEGIES = ("s1", "s2")
SIDES = ("long", "short")
DOMAINS = ("backtest", "dryrun", "live", "shadow")
MODES = ("validate", "compute-only", "paper", "live", "shadow")
FINGERPRINTS = ("fp1", "fp2")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
LIVE_EDGE = "domain:live"

SETTINGS = settings(
    max_examples=int(os.environ.get("WS_PROPERTY_EXAMPLES", "30")),
    stateful_step_count=15,
    deadline=None,  # a step is a few HTTP round trips through actors and SQLite; timing varies with load
    derandomize=os.environ.get("CI") == "true",  # stable CI; locally --hypothesis-seed picks the search
    # Shrink only the simplest failure of a run: shrinking every distinct one would not fit pytest's
    # --timeout; the per-family machines and other seeds show the others.
    report_multiple_bugs=False,
    # No explain phase: on Python < 3.12 it line-traces every step (minutes here); the steps say enough.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Clock:
    """The daemon's clock: fixed unless a rule moves it, so a printed failing sequence replays exactly."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


# --- request strategies ----------------------------------------------------------------------------


def _often(value: Any) -> st.SearchStrategy[Any]:
    """``value`` (a value or a strategy) three times in four, and what a failure shrinks to; else ``None``."""
    present = value if isinstance(value, st.SearchStrategy) else st.just(value)
    return st.one_of(present, present, present, st.none())


def world_flags() -> st.SearchStrategy[dict[str, Any]]:
    """A ``POST /worlds`` body's default-safe fields."""
    return st.fixed_dictionaries({"allow_live": st.booleans(), "circuit_breaker": st.booleans(),
                                  "state": st.sampled_from(("ACTIVE", "SUSPENDED"))})


def world_updates() -> st.SearchStrategy[dict[str, Any]]:
    """Any subset of the fields default-safe reads: a PUT never resets what it leaves out."""
    return st.fixed_dictionaries({}, optional={
        "allow_live": st.booleans(), "circuit_breaker": st.booleans(),
        "state": st.sampled_from(("ACTIVE", "SUSPENDED")),
        "dataset_fingerprint": st.sampled_from((None, *FINGERPRINTS)),
    })


def strategy_lists() -> st.SearchStrategy[list[str]]:
    # Shrinks to ["s1"], the strategy evidence names first; [] clears the set.
    return st.sampled_from((["s1"], ["s1", "s2"], ["s2"], []))


def decision_sections() -> st.SearchStrategy[dict[str, Any]]:
    """Valid decision sections, biased to promote fast (one pass, no dwell) so live is reachable."""
    return st.fixed_dictionaries({
        "promote_to": st.sampled_from(("live", "live", "paper", "shadow")),
        "hysteresis": st.fixed_dictionaries({"promote_after": st.sampled_from((1, 1, 2)),
                                             "demote_after": st.integers(1, 2),
                                             "min_dwell": st.sampled_from(("0s", "1h"))}),
    }, optional={
        "ttl": st.sampled_from(("1h", "10m")),
        "data_currency": st.just({"max_lag": "1h"}),
        "sample": st.just({"min_trades": 10}),
        "gates": st.sampled_from(({"and": ["sharpe >= 0.5"]}, {"or": ["sharpe >= 2", "max_dd <= 0.3"]})),
    })


def policies() -> st.SearchStrategy[dict[str, Any]]:
    """With or without a decision section: without one the reference's rules decide."""
    thresholds = st.sampled_from((0.0, 0.5, 1.0)).map(lambda lo: {"sharpe": {"metric": "sharpe", "min": lo}})
    return st.builds(lambda decision, extra: {**({"decision": decision} if decision else {}), **extra},
                     _often(decision_sections()), st.fixed_dictionaries({}, optional={"thresholds": thresholds}))


# Ages of evidence, either side of the 1h max_lag; a few values, not a range: every integer is a dozen
# shrink steps, and each step is a whole sequence against a daemon.
AGES_S = (0, 60, 1800, 5400)


def evidence() -> st.SearchStrategy[dict[str, Any]]:
    """A history post; ``age_s``/``data_age_s`` are turned into timestamps in the past of the clock."""
    metrics = st.fixed_dictionaries({"sharpe": st.sampled_from((0.2, 1.5, 3.0)), "max_dd": st.just(0.1),
                                     "n_trades_total": st.just(50.0)})
    return st.fixed_dictionaries({
        "strategy_id": st.sampled_from(STRATEGIES), "age_s": st.sampled_from(AGES_S),
        "rows": _often(5000), "metrics": _often(metrics),
    }, optional={"dataset_fingerprint": st.sampled_from(FINGERPRINTS), "data_age_s": st.sampled_from(AGES_S)})


def activations() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "strategy_id": st.sampled_from(STRATEGIES), "side": st.sampled_from(SIDES), "active": st.booleans(),
        "weight": st.sampled_from((0.0, 0.5, 1.0)),
    }, optional={"effective_mode": st.sampled_from(MODES)})


def _gating_policy(to: str | None, execution_domain: str | None, enable: str | None, fingerprint: str | None,
                   drop: str | None) -> dict[str, Any]:
    """A §4-C document around the knobs that matter here; ``drop`` removes one essential key, so refusals
    and compute-only downgrades happen too."""
    policy = {
        "domains": {"from": "backtest", "to": to} if to else None,
        "execution_domain": execution_domain,
        "dataset_fingerprint": fingerprint,
        "share_policy": "feature-artifacts-only",
        "snapshot": {"strategy_plane": "cow", "feature_plane": "readonly"},
        # Disabling every cross domain before promotion keeps any post-promotion target legal.
        "edges": {"pre_promotion": {"disable_edges_to": ["dryrun", "live", "shadow"]},
                  "post_promotion": {"enable_edges_to": enable} if enable else {}},
        "observability": {"slo": {"cross_context_cache_hit": 0}},
    }
    return {key: value for key, value in policy.items() if value is not None and key != drop}


def gating_policies() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        _gating_policy,
        to=st.sampled_from((*DOMAINS, None)),
        execution_domain=st.sampled_from((None, *DOMAINS)),
        enable=st.sampled_from(("live", None, "dryrun", "shadow")),
        fingerprint=_often("ohlcv:ASOF=2026-03-01T00:00:00Z"),
        drop=st.sampled_from((None, None, "share_policy", "snapshot", "edges")),
    )


def apply_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """The run id is added by the machine (always fresh); the gating policy and stage are optional."""
    plan = st.fixed_dictionaries({"activate": strategy_lists(), "deactivate": strategy_lists()})
    return st.fixed_dictionaries({"plan": plan}, optional={
        "gating_policy": gating_policies(),
        "stage": st.sampled_from(("backtest", "paper", "live", "shadow")),
    })


EDGES = (("domain:backtest", LIVE_EDGE), ("domain:dryrun", LIVE_EDGE), ("domain:backtest", "domain:shadow"))


# --- checks --------------------------------------------------------------------------------------


def _rolled_back(method: str, path: str, status: int, body: Any) -> bool:
    """The one tolerated 500: an apply whose run rolled back says so in ``detail``."""
    detail = body.get("detail") if isinstance(body, dict) else None
    return (method == "POST" and path.endswith("/apply") and status == 500 and isinstance(detail, str)
            and detail.startswith("apply failed"))


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def may_live(world: dict[str, Any]) -> bool:
    """The default-safe predicate as the test states it: the world allows live right now."""
    return bool(world.get("allow_live")) and not world.get("circuit_breaker") and world.get("state") == "ACTIVE"


def execution_domain(world: dict[str, Any]) -> str:
    """The world's execution domain; a world that does not say is in backtest (seed §0)."""
    return world.get("execution_domain") or "backtest"


def _flags(world: dict[str, Any]) -> str:
    keys = ("allow_live", "circuit_breaker", "state", "dataset_fingerprint", "execution_domain")
    return str({key: world.get(key) for key in keys})




# --- the daemon under test -----------------------------------------------------------------------


def _config(data_dir: Path, migrate: bool) -> Config:
    """``make_config``'s dev daemon (SQLite file, in-memory projection and bus, no Kafka: apply does not
    wait for ACKs), with the schema migrated once per module and copied (alembic costs ~0.15 s a start),
    and ``synchronous=NORMAL``: durability is not under test here, and a fsync per commit triples a step."""
    storage = {"auto_migrate": migrate, "sqlite_synchronous": "NORMAL"}
    ws = {"data_dir": str(data_dir), "actors": {"sweep_interval_s": 3600}, "storage": storage}
    return load_config(environ={}, overrides={"worldservice": ws})


class Shared:
    """What the machines of one module share: a migrated SQLite template and one Litestar app with its
    TestClient. Building the app costs ~0.35 s (route registration), more than a whole generated sequence;
    its only tie to a daemon is ``app.state.edge``, which every machine points at its own fresh daemon."""

    def __init__(self, root: Path) -> None:
        self.template = root / "template"
        runtime = build_runtime(_config(self.template, migrate=True))
        self.app: Litestar = create_app(Edge(system=runtime.system, ready=True), None, RebalanceFlags())
        runtime.close()
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.client.__enter__()

    def start(self, data_dir: Path, clock: Clock) -> Runtime:
        shutil.copytree(self.template, data_dir, dirs_exist_ok=True)
        runtime = build_runtime(_config(data_dir, migrate=False), clock=clock)
        self.app.state.edge = Edge(system=runtime.system, ready=True)
        return runtime

    def close(self) -> None:
        self.client.__exit__(None, None, None)


WORLD = Bundle("worlds")


class DaemonMachine(RuleBasedStateMachine):
    """One fresh daemon (own temp dir, SQLite file and actor system) per generated sequence, stopped in
    ``teardown``; the world rules and the default-safe invariant. The mixins below add the other rules."""

    shared: Shared  # set by the test before the run (a state machine cannot take fixtures)

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ws-default-safe-"))
        self.clock = Clock()
        self.runtime = self.shared.start(self.tmp, self.clock)
        self.created: list[str] = []
        self.runs = 0
        self.activation_seen: dict[str, tuple[Any, dict[tuple[str, str], Any]]] = {}
        self.dirty: set[str] = set()

    def teardown(self) -> None:
        self.runtime.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """Every request goes through here: a 5xx is a server bug whatever the request was."""
        if path.startswith("/worlds/"):
            self.dirty.add(path.split("/")[2])
        response = self.shared.client.request(method, path, **kwargs)
        body = _json(response)
        assert response.status_code < 500 or _rolled_back(method, path, response.status_code, body), (
            f"{method} {path} {kwargs.get('json') or kwargs.get('params')} -> {response.status_code}: {body}")
        return response

    def _read(self, path: str, **params: str) -> Any:
        """A read the invariants need: 200 with a body, or ``None`` for 404 (no such entry)."""
        response = self._send("GET", path, params=params or None)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, f"GET {path} {params} -> {response.status_code}: {_json(response)}"
        return response.json()

    def _create(self, wid: str, body: dict[str, Any]) -> bool:
        created = self._send("POST", "/worlds", json={"id": wid, "name": wid, **body}).status_code == 201
        if created:
            self.created.append(wid)
            self.dirty.add(wid)
        return created

    @rule(wid=WORLD, body=world_updates())
    def update_world(self, wid: str, body: dict[str, Any]) -> None:
        self._send("PUT", f"/worlds/{wid}", json=body)

    # --- the invariant ---------------------------------------------------------------------------

    @invariant()
    def default_safe(self) -> None:
        # Only the worlds this step touched (or all, after the clock moved): a world's state changes only
        # through its own actor's mailbox, so the others' answers are those already checked; this halves
        # the reads, and shrinking runs hundreds of sequences. One world read per world, shared by the
        # four checks (each asserts on its own line, so Hypothesis tells the broken invariants apart).
        touched, self.dirty = [wid for wid in self.created if wid in self.dirty], set()
        for wid in touched:
            world = self._read(f"/worlds/{wid}")
            assert world is not None, f"world {wid} vanished"
            self._check_decide(wid, world)
            self._check_activation(wid, world)
            self._check_domain(wid, world)
            self._check_edges(wid, world)

    def _check_decide(self, wid: str, world: dict[str, Any]) -> None:
        envelope = self._read(f"/worlds/{wid}/decide")
        if envelope is not None and envelope["effective_mode"] == "live":
            assert may_live(world) and envelope.get("dataset_fingerprint"), (
                f"invariant 1 (decide live needs may_live and a fingerprint) broke for {wid}: "
                f"world {_flags(world)}, decide {envelope}")

    def _check_activation(self, wid: str, world: dict[str, Any]) -> None:
        for (sid, side), entry in self._activation(wid).items():
            if entry is not None and entry.get("effective_mode") == "live":
                assert may_live(world) and execution_domain(world) == "live", (
                    f"invariant 2 (live activation needs may_live and domain live) broke for {wid} "
                    f"{sid}/{side}: world {_flags(world)}, activation {entry}")

    def _activation(self, wid: str) -> dict[tuple[str, str], Any]:
        """Every (strategy, side) entry, ``None`` where there is none. The state hash digests every entry
        with the world's activation counter (which only grows), so the four entry reads are repeated only
        when it moves: one read instead of four on most steps."""
        digest = self._read(f"/worlds/{wid}/activation/state_hash")
        if wid not in self.activation_seen or self.activation_seen[wid][0] != digest:
            entries = {(sid, side): self._read(f"/worlds/{wid}/activation", strategy_id=sid, side=side)
                       for sid in STRATEGIES for side in SIDES}
            self.activation_seen[wid] = (digest, entries)
        return self.activation_seen[wid][1]

    def _check_domain(self, wid: str, world: dict[str, Any]) -> None:
        if execution_domain(world) == "live":
            assert may_live(world) and world.get("dataset_fingerprint"), (
                f"invariant 3 (a live domain needs may_live and a pinned fingerprint) broke for {wid}: "
                f"world {_flags(world)}")

    def _check_edges(self, wid: str, world: dict[str, Any]) -> None:
        for edge in self._read(f"/worlds/{wid}/edges/overrides") or []:
            dst = edge.get("dst_node_id", edge.get("dst"))
            if edge.get("active") and dst == LIVE_EDGE:
                assert may_live(world) and execution_domain(world) == "live", (
                    f"invariant 4 (an active edge into live needs may_live and domain live) broke for {wid}: "
                    f"world {_flags(world)}, edge {edge}")


class Overrides(DaemonMachine):
    """Operator paths that name a mode or an edge directly."""

    @rule(wid=WORLD, body=activations())
    def put_activation(self, wid: str, body: dict[str, Any]) -> None:
        self._send("PUT", f"/worlds/{wid}/activation", json=body)

    @rule(wid=WORLD, edge=st.sampled_from(EDGES), active=st.booleans())
    def put_edge(self, wid: str, edge: tuple[str, str], active: bool) -> None:
        src, dst = edge
        self._send("PUT", f"/worlds/{wid}/edges/{src}/{dst}", json={"active": active, "reason": "operator"})


class Decisions(DaemonMachine):
    """What ``/decide`` reads: strategies, policies, evidence and the passing of time."""

    @rule(wid=WORLD, kinds=st.sampled_from((("bindings", "decisions"), ("bindings",), ("decisions",))),
          strategies=strategy_lists())
    def set_strategies(self, wid: str, kinds: tuple[str, ...], strategies: list[str]) -> None:
        for kind in kinds:  # both at once is what an operator usually does
            self._send("POST", f"/worlds/{wid}/{kind}", json={"strategies": strategies})

    @rule(wid=WORLD, policy=policies(), make_default=st.booleans())
    def upload_policy(self, wid: str, policy: dict[str, Any], make_default: bool) -> None:
        # The first upload of a world becomes its default by itself; make_default exercises set-default.
        response = self._send("POST", f"/worlds/{wid}/policies", json={"policy": policy})
        if make_default and response.status_code == 200:
            self._send("POST", f"/worlds/{wid}/set-default", json={"version": response.json()["version"]})

    @rule(wid=WORLD, record=evidence())
    def post_evidence(self, wid: str, record: dict[str, Any]) -> None:
        body = {key: value for key, value in record.items()
                if key not in ("age_s", "data_age_s") and value is not None}
        body.update(node_id="n1", interval=60, as_of=self._ago(record["age_s"]))
        if "data_age_s" in record:
            body["data_end"] = self._ago(record["data_age_s"])
        self._send("POST", f"/worlds/{wid}/history", json=body)

    def _ago(self, seconds: int) -> str:
        return (self.clock.now - timedelta(seconds=seconds)).isoformat()  # never in the future

    @rule(minutes=st.sampled_from((1, 30, 90)))
    def advance_clock(self, minutes: int) -> None:
        # Staleness, ttl and dwell paths need time to pass; time never runs backwards.
        self.clock.now += timedelta(minutes=minutes)
        self.dirty.update(self.created)  # /decide of every world reads the clock


class Applies(DaemonMachine):
    """The 2-phase apply with a random gating policy."""

    @rule(wid=WORLD, body=apply_bodies())
    def apply(self, wid: str, body: dict[str, Any]) -> None:
        self.runs += 1  # a fresh run id: the same id would replay the stored outcome
        self._send("POST", f"/worlds/{wid}/apply", json={"run_id": f"r{self.runs}", **body})


# Two machines over the same invariant. Hypothesis reports the simplest failure of a run, and a two-step
# edge override or apply is always simpler than the four steps /decide needs to reach live, so the
# decision paths get a machine of their own (an apply would also rewrite the decided set under them).


class SwitchingMachine(Overrides, Applies):
    """Everything that names a mode, a domain or an edge: activation overrides, edges, applies."""

    @initialize(target=WORLD, flags=st.lists(world_flags(), min_size=len(WORLDS), max_size=len(WORLDS)))
    def create_worlds(self, flags: list[dict[str, Any]]) -> Any:
        # Every world of the pool exists from the start, so every step goes to a rule that matters.
        return multiple(*[wid for wid, body in zip(WORLDS, flags) if self._create(wid, body)])


class DecideMachine(Decisions):
    """Everything ``/decide`` reads: strategies, policies, evidence, time."""

    @initialize(target=WORLD, worlds=st.lists(st.tuples(world_flags(), strategy_lists(), st.none() | policies()),
                                              min_size=len(WORLDS), max_size=len(WORLDS)))
    def create_worlds(self, worlds: list[tuple[dict[str, Any], list[str], dict[str, Any] | None]]) -> Any:
        # The worlds start with bindings, decided strategies and maybe a policy: swarm testing switches
        # rules off per sequence, and the four-rule prefix /decide needs before it can say live was rare.
        # The rules still change all of it.
        for wid, (body, strategies, policy) in zip(WORLDS, worlds):
            if not self._create(wid, body):
                continue
            for kind in ("bindings", "decisions"):
                self._send("POST", f"/worlds/{wid}/{kind}", json={"strategies": strategies})
            if policy is not None:
                self._send("POST", f"/worlds/{wid}/policies", json={"policy": policy})
        return multiple(*self.created)


# --- the tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    resources = Shared(tmp_path_factory.mktemp("default-safe"))
    yield resources
    resources.close()


MACHINES = {"switching": SwitchingMachine, "decide": DecideMachine}


@pytest.mark.parametrize("name", list(MACHINES))
def test_every_path_stays_default_safe(shared: Shared, name: str) -> None:
    machine = MACHINES[name]
    machine.shared = shared
    run_state_machine_as_test(machine, settings=SETTINGS)
