"""What apply's Switch changes besides the decision set, and what its rollback puts back: the world's
execution domain and pinned fingerprint (through ``domain.promotion``), the gating policy's edge overrides,
and the ``policy_updated`` notice. Each change is remembered in the run so the rollback can restore it."""

from __future__ import annotations

from datetime import datetime

import msgspec

from domain.default_safe import BACKTEST, LIVE, world_refusals
from domain.effects import Effect, RemoveEdge, SaveEdge
from domain.events import cloudevent
from domain.gating import parse_gating
from domain.policies import POLICY_TOPIC
from domain.promotion import domain_changed
from domain.state import WorldState, require_world
from domain.timefmt import iso_z
from domain.wvg import edge_event
from messages.apply import ApplyRun, EdgeOverride


def switched_domain(state: WorldState, run: ApplyRun, now: datetime) -> tuple[WorldState, list[Effect]]:
    """Switch moves the world to the run's domain (none named: backtest, default-safe) and pins the run's
    dataset fingerprint, in the transaction that changes the decision set."""
    world = require_world(state)
    after = msgspec.structs.replace(world, execution_domain=run.execution_domain or BACKTEST,
                                    dataset_fingerprint=run.dataset_fingerprint or world.dataset_fingerprint)
    return domain_changed(state, after, {"run_id": run.run_id}, now)


def edge_key(src: str, dst: str) -> str:
    return f"{src}->{dst}"


EdgeChange = tuple[dict[str, EdgeOverride], list[Effect], dict[str, EdgeOverride | None]]


def toggle_edges(state: WorldState, run: ApplyRun, now: datetime) -> EdgeChange:
    """Edges ``domain:backtest -> domain:<d>`` as the gating policy says, remembering what each was."""
    gating = parse_gating(run.gating) if run.gating else None
    if gating is None:
        return state.edges, [], {}
    edges, effects, before = dict(state.edges), [], {}
    wanted = [(d, False, "pre_promotion_disable") for d in gating.disable_to]
    wanted += [(d, True, "post_promotion_enable") for d in gating.enable_to]
    for domain, active, why in wanted:
        edge = EdgeOverride(src="domain:backtest", dst=f"domain:{domain}", active=active,
                            reason=f"{why}:{run.run_id}", updated_at=iso_z(now))
        key = edge_key(edge.src, edge.dst)
        before.setdefault(key, state.edges.get(key))
        edges[key] = edge
        effects.append(SaveEdge(edge=edge))
    # One announcement per edge, of its final state (a domain both disabled and enabled is enabled).
    effects += [edge_event(state, edges[key], run_correlation(state, run), now) for key in before]
    return edges, effects, before


def run_correlation(state: WorldState, run: ApplyRun) -> str:
    return f"activation:{state.world_id}:{run.run_id}"


def policy_notice(state: WorldState, run: ApplyRun, now: datetime) -> list[Effect]:
    """``policy_updated`` at Switch, with the policy's real checksum (the reference hashed the active set)."""
    policy = state.policies.get(run.policy_version) if run.policy_version is not None else None
    if policy is None:
        return []
    data = {"world_id": state.world_id, "policy_version": policy.version, "checksum": policy.checksum,
            "status": policy.status, "ts": iso_z(now), "version": 1}
    key = f"policy_updated:{state.world_id}:{policy.version}:{policy.checksum}:apply:{run.run_id}"
    return [cloudevent(POLICY_TOPIC, "policy_updated", state.world_id, data, key,
                       f"policy:{state.world_id}:{policy.version}", now)]


def restored_domain(state: WorldState, run: ApplyRun, now: datetime) -> tuple[WorldState, list[Effect]]:
    """The domain and fingerprint from before Switch, unless that was live and the world may no longer be
    live: then backtest (a rollback never makes a world live on its own)."""
    world = state.world
    if run.domain_before is None or world is None:
        return state, []
    restored = msgspec.structs.replace(world, execution_domain=run.domain_before,
                                       dataset_fingerprint=run.fingerprint_before)
    if run.domain_before == LIVE and world_refusals(restored):
        restored = msgspec.structs.replace(restored, execution_domain=BACKTEST)
    return domain_changed(state, restored, {"run_id": run.run_id, "reason": "rolled_back"}, now)


def restore_edges(state: WorldState, run: ApplyRun, now: datetime) -> tuple[dict[str, EdgeOverride], list[Effect]]:
    """Every restored edge is announced like any other change; one the run created is announced deleted."""
    edges, effects, correlation = dict(state.edges), [], run_correlation(state, run)
    for key, previous in run.edges_before.items():
        if previous is None:
            current = edges.pop(key, None)
            if current is not None:
                effects += [RemoveEdge(src=current.src, dst=current.dst),
                            edge_event(state, current, correlation, now, "edge_override_deleted")]
        else:
            edges[key] = previous
            effects += [SaveEdge(edge=previous), edge_event(state, previous, correlation, now)]
    return edges, effects
