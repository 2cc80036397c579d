"""``rebalancing_planned``: one audit entry and one ControlBus event per world of a planned rebalance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain.effects import AuditRecord, Effect, SaveWorldAllocation
from domain.events import cloudevent
from domain.hashing import blake3_hex, canonical_json
from domain.state import Outcome, WorldState
from messages.commands import RecordRebalance
from messages.errors import Result
from messages.rebalancing import RebalanceNotice, WorldPlan

REBALANCING_TOPIC = "rebalancing_planned"


def _plan_payload(notice_plan: Any) -> dict[str, Any]:
    """The reference's event payload writes ``venue`` even when null (its REST answer drops it)."""
    plan = msgspec.to_builtins(notice_plan)
    plan["deltas"] = [{"venue": None, **delta} for delta in plan["deltas"]]
    return plan


def rebalance_effects(world_id: str, notice: RebalanceNotice, correlation_id: str | None,
                      now: datetime) -> list[Effect]:
    plan = _plan_payload(notice.plan)
    digest = blake3_hex(canonical_json(plan))
    data: dict[str, Any] = {"world_id": world_id, "plan": plan, "version": notice.version,
                            "schema_version": notice.version}
    if notice.version >= 2:
        data["alpha_metrics"] = notice.alpha_metrics
        data["rebalance_intent"] = msgspec.to_builtins(notice.rebalance_intent)
    key = f"rebalancing_planned:{world_id}:{digest}:{notice.version}"
    event = cloudevent(REBALANCING_TOPIC, "rebalancing_planned", world_id, data, key,
                       correlation_id or f"rebalancing_plan:{world_id}:{digest}", now)
    return [AuditRecord(event="rebalancing_planned", request=None, result={"plan": plan, "version": notice.version}),
            event]


def record_rebalance(state: WorldState, cmd: RecordRebalance, now: datetime) -> Outcome:
    """Recorded for any world id the plan names, as the reference does: positions may belong to a world
    this service does not (yet) hold."""
    effects = rebalance_effects(state.world_id, cmd.body, cmd.correlation_id, now)
    return Outcome(state=state, effects=effects, reply=None, result=Result.NO_CONTENT)


def allocation_effects(world_id: str, snapshot: dict[str, Any], plan: WorldPlan | None, correlation_id: str | None,
                       now: datetime) -> list[Effect]:
    """One world's share of an allocation run: its new allocation, the audit entry and, when the plan has
    a part for it, the ``rebalancing_planned`` event (schema v1 on this route, as the reference)."""
    effects: list[Effect] = [SaveWorldAllocation(record=snapshot),
                             AuditRecord(event="world_allocation_upserted", request=None, result=snapshot)]
    if plan is not None:
        effects += rebalance_effects(world_id, RebalanceNotice(plan=plan, version=1), correlation_id, now)
    return effects
