"""``rebalancing_planned``: one audit entry and one ControlBus event per world of a planned rebalance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain.effects import AuditRecord
from domain.events import cloudevent
from domain.hashing import blake3_hex, canonical_json
from domain.state import Outcome, WorldState
from messages.commands import RecordRebalance

REBALANCING_TOPIC = "rebalancing_planned"


def _plan_payload(notice_plan: Any) -> dict[str, Any]:
    """The reference's event payload writes ``venue`` even when null (its REST answer drops it)."""
    plan = msgspec.to_builtins(notice_plan)
    plan["deltas"] = [{"venue": None, **delta} for delta in plan["deltas"]]
    return plan


def record_rebalance(state: WorldState, cmd: RecordRebalance, now: datetime) -> Outcome:
    """Recorded for any world id the plan names, as the reference does: positions may belong to a world
    this service does not (yet) hold."""
    notice = cmd.body
    plan = _plan_payload(notice.plan)
    digest = blake3_hex(canonical_json(plan))
    data: dict[str, Any] = {"world_id": state.world_id, "plan": plan, "version": notice.version,
                            "schema_version": notice.version}
    if notice.version >= 2:
        data["alpha_metrics"] = notice.alpha_metrics
        data["rebalance_intent"] = msgspec.to_builtins(notice.rebalance_intent)
    key = f"rebalancing_planned:{state.world_id}:{digest}:{notice.version}"
    event = cloudevent(REBALANCING_TOPIC, "rebalancing_planned", state.world_id, data, key,
                       cmd.correlation_id or f"rebalancing_plan:{state.world_id}:{digest}", now)
    audit = AuditRecord(event="rebalancing_planned", request=None, result={"plan": plan, "version": notice.version})
    return Outcome(state=state, effects=[audit, event], reply=None, status=204)
