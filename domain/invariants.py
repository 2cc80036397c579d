"""Validation invariants of a world (reference ``GET /worlds/{id}/validations/invariants``, fact sheet §1.7).

The reference derives five lists from a world and its *evaluation runs*. This daemon keeps no evaluation
runs yet (they are a later capability, DESIGN §12), so the four lists that are computed from runs are
always empty here, whatever ``strategy_id`` asks for:

- ``live_status_failures``: the latest live-stage run of a strategy whose summary status is not ``pass``;
- ``live_policy_version_mismatches``: such a run validated under an older policy than the world's default;
- ``approved_overrides``: runs carrying an approved validation override;
- ``validation_health_gaps``: runs whose recorded validation-health ratios differ from the recomputed ones.

What is answered from the world's own data is ``fail_closed_violations``: a world whose ``metadata`` marks
it high tier and client critical (``risk_profile.tier == "high"`` and ``client_critical`` on the profile
or on the metadata, the reference's extra world keys) must fail closed: its default policy's ``validation``
must say ``on_error: fail`` and ``on_missing_metric: fail``. The reference reads a ``validation`` key of
the world record; here those modes belong to the policy that evaluate and apply enforce, so that is what is
checked. A world without a default policy declares neither (``<unset>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.policies import default_policy
from domain.state import WorldState, require_world
from messages.commands import GetValidationInvariants
from messages.worlds import WorldRecord
from messages.wvg import FailClosedViolation, ValidationInvariantsReport

UNSET_MODE = "<unset>"
FAIL = "fail"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def must_fail_closed(world: WorldRecord) -> bool:
    """High tier and client critical, as the world's metadata declares it (the reference's truthiness)."""
    profile = _mapping(world.metadata.get("risk_profile"))
    tier = str(profile.get("tier", "")).lower()
    critical = bool(profile.get("client_critical") or world.metadata.get("client_critical"))
    return tier == "high" and critical


def _validation_modes(state: WorldState) -> tuple[str, str]:
    """``on_error`` and ``on_missing_metric`` of the default policy, ``<unset>`` where it declares none."""
    policy = default_policy(state)
    modes = _mapping(policy.document.get("validation")) if policy is not None else {}
    on_error = str(modes.get("on_error") or "").lower() or UNSET_MODE
    on_missing = str(modes.get("on_missing_metric") or "").lower() or UNSET_MODE
    return on_error, on_missing


def fail_closed_violations(state: WorldState) -> list[FailClosedViolation]:
    world = require_world(state)
    if not must_fail_closed(world):
        return []
    on_error, on_missing = _validation_modes(state)
    if on_error == FAIL and on_missing == FAIL:
        return []
    return [FailClosedViolation(world_id=state.world_id, on_error=on_error, on_missing_metric=on_missing)]


def validation_invariants(state: WorldState, query: GetValidationInvariants,
                          now: datetime) -> ValidationInvariantsReport:
    """The report; an unknown world is 404 (the reference answered ``ok`` for any id)."""
    violations = fail_closed_violations(state)
    return ValidationInvariantsReport(ok=not violations, fail_closed_violations=violations)
