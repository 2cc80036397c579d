"""Live promotions (reference §1.10): the governance block of a policy, the request bodies of
``/worlds/{id}/promotions/live/*`` and their answers.

The governance block lives in the world's default policy document under ``governance.live_promotion``; it
is validated when the policy is uploaded (``domain.governance``), so a typo in a safety control is a 422
then, never a silently ignored key later.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from messages.types import Identifier

PromotionMode = Literal["disabled", "manual_approval", "auto_apply"]
Reason = Annotated[str, Meta(min_length=1, max_length=8192)]
Actor = Annotated[str, Meta(min_length=1, max_length=256)]
Stamp = Annotated[str, Meta(max_length=64)]


class LivePromotionGovernance(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """``governance.live_promotion``. ``cooldown`` is a duration (``30s``, ``15m``, ``24h``, ``1.5d``) from the
    world's last completed apply; ``max_live_slots`` bounds the size of the promoted active set;
    ``canary_fraction`` is the share of runs ``auto-apply`` promotes (a stable hash decides which);
    ``approvers`` limits who may approve or reject.

    ``require_risk_snapshot`` is ours: a promotion needs a fresh risk snapshot of the world (the reference's
    ``risk_snapshot_missing_or_expired`` gate) unless the policy says ``false``."""

    mode: PromotionMode = "manual_approval"
    cooldown: Annotated[str, Meta(max_length=64)] | None = None
    max_live_slots: Annotated[int, Meta(ge=0)] | None = None
    canary_fraction: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    approvers: list[Actor] | None = None
    require_risk_snapshot: bool = True


class LivePromotionApproveRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    strategy_id: Identifier
    run_id: Identifier
    reason: Reason
    actor: Actor
    timestamp: Stamp | None = None  # none: the server's clock


class LivePromotionRejectRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    strategy_id: Identifier
    run_id: Identifier
    reason: Reason | None = None
    actor: Actor | None = None
    timestamp: Stamp | None = None


class LivePromotionApplyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``force`` skips the manual approval and the validation gates (audited), never the others."""

    strategy_id: Identifier
    run_id: Identifier
    apply_run_id: Identifier
    force: bool = False


class LivePlan(msgspec.Struct, kw_only=True):
    """``activate: target - current``, ``deactivate: current - target`` (reference ``ApplyPlan``)."""

    activate: list[str] = []
    deactivate: list[str] = []


class LivePromotionPlan(msgspec.Struct, kw_only=True):
    """``GET …/promotions/live/plan``. ``blocked_reasons`` holds the reference's gates in its order, then
    the default-safe rule's refusals (``allow_live_disabled``, …) when the world may not be live."""

    world_id: str
    strategy_id: str
    run_id: str
    plan: LivePlan
    target_active: list[str] = []
    current_active: list[str] = []
    promotion_mode: PromotionMode
    override_status: str
    pending_manual_approval: bool
    eligible: bool
    blocked_reasons: list[str] = []
    cooldown_remaining_sec: int | None = None
    max_live_slots: int | None = None
    canary_fraction: float | None = None


class LivePromotionAutoApplyResponse(msgspec.Struct, kw_only=True):
    """``POST …/promotions/live/auto-apply``: ``reason`` is ``applied`` or why nothing was applied;
    ``blocked_reasons`` (ours) lists every refusal when more than one gate refused."""

    world_id: str
    applied: bool
    reason: str
    cooldown_remaining_sec: int | None = None
    source_strategy_id: str | None = None
    source_run_id: str | None = None
    apply_run_id: str | None = None
    plan: LivePlan | None = None
    blocked_reasons: list[str] = []


class LivePromotionCandidate(msgspec.Struct, kw_only=True):
    strategy_id: str
    run_id: str
    created_at: str | None = None
    updated_at: str | None = None
    status: str | None = None
    override_status: str
    pending_manual_approval: bool
    eligible: bool
    blocked_reasons: list[str] = []
    target_active: list[str] = []
    plan: LivePlan | None = None


class LivePromotionCandidates(msgspec.Struct, kw_only=True):
    """``GET …/promotions/live/candidates``: the latest paper run per strategy that passed or warned."""

    world_id: str
    promotion_mode: PromotionMode
    candidates: list[LivePromotionCandidate] = []
