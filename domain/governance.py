"""The live-promotion governance block and the gates it sets, as pure rules (reference §1.10).

``governance.live_promotion`` is read from the world's default policy. Absent, it means the defaults:
``manual_approval`` (a production control plane does not promote to live unasked), no cooldown, no slot
bound, no canary, no approvers list, and a fresh risk snapshot required.

The gates, each a function of its inputs only (time is passed in):

- cooldown: seconds left of ``cooldown`` since the world's last completed apply (``None``: no cooldown set;
  ``0``: none left). Elapsed time is counted in whole seconds, as the reference does.
- max live slots: refused when the promoted active set has more strategies than ``max_live_slots``.
- canary: ``sha256("world:strategy:run")``'s first 8 bytes as a big-endian uint64 over ``2**64`` must be
  below ``canary_fraction`` (``None`` or ``>= 1``: always; ``<= 0``: never).
- risk snapshot: the world's latest risk snapshot must exist and not be expired (expired when
  ``now > created_at + ttl_sec``, the reference hub's rule). In the reference the hub is always present in
  the app, so this gate always applies there, as here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from domain import durations
from domain.timefmt import parse_iso
from messages.errors import unprocessable
from messages.promotions import LivePromotionGovernance

_UINT64 = float(1 << 64)


def _invalid(message: str) -> Exception:
    return unprocessable(f"invalid policy: governance.live_promotion: {message}")


def duration_seconds(text: str | None) -> int | None:
    return durations.duration_seconds(text, "invalid policy: governance.live_promotion: ")


def parse_governance(governance: dict[str, Any] | None) -> LivePromotionGovernance:
    """The ``live_promotion`` block of a policy's ``governance`` (other governance keys are not ours)."""
    raw = (governance or {}).get("live_promotion")
    if raw is None:
        return LivePromotionGovernance()
    try:
        block = msgspec.convert(raw, LivePromotionGovernance)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    duration_seconds(block.cooldown)
    return block


# --- the gates ---------------------------------------------------------------------------------------------


def cooldown_remaining(cooldown_s: int | None, last_completed: datetime | None, now: datetime) -> int | None:
    """Seconds of cooldown left: ``None`` without a cooldown, ``0`` when no apply ever completed."""
    if cooldown_s is None:
        return None
    if last_completed is None:
        return 0
    elapsed = max(0, int((now - last_completed).total_seconds()))
    return max(0, cooldown_s - elapsed)


def slots_exceeded(max_live_slots: int | None, target: list[str]) -> bool:
    return max_live_slots is not None and len(target) > max_live_slots


def canary_score(world_id: str, strategy_id: str, run_id: str) -> float:
    digest = hashlib.sha256(f"{world_id}:{strategy_id}:{run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=False) / _UINT64


def canary_allows(fraction: float | None, world_id: str, strategy_id: str, run_id: str) -> bool:
    if fraction is None or fraction >= 1:
        return True
    if fraction <= 0:
        return False
    return canary_score(world_id, strategy_id, run_id) < fraction


@dataclass(frozen=True)
class RiskSnapshotStamp:
    """What the gate needs of a world's latest risk snapshot: when the hub accepted it and its TTL."""

    version: str
    created_at: str
    ttl_sec: int
    as_of: str = ""  # the snapshot's own time: "latest" orders by it, then by created_at


def risk_snapshot_fresh(snapshot: RiskSnapshotStamp | None, now: datetime) -> bool:
    """Present and not expired; expired means ``now > created_at + ttl_sec`` (fresh at the boundary)."""
    if snapshot is None:
        return False
    return now <= parse_iso(snapshot.created_at) + timedelta(seconds=snapshot.ttl_sec)


def risk_snapshot_blocks(governance: LivePromotionGovernance, snapshot: RiskSnapshotStamp | None,
                         now: datetime) -> bool:
    """The ``risk_snapshot_missing_or_expired`` gate.

    ``snapshot`` is the world's newest accepted Risk Hub snapshot (``None`` before the first): without a
    fresh one every promotion is blocked with this reason, unless the policy sets
    ``require_risk_snapshot: false`` (then the gate is skipped, and the answer does not pretend evidence
    was seen). A control plane does not promote
    to live on risk evidence it does not have. The reference skipped the gate only when its app had no hub
    object at all, which its app factory never allows."""
    return governance.require_risk_snapshot and not risk_snapshot_fresh(snapshot, now)
