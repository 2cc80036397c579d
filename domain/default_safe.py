"""The one default-safe rule (seed §0 "Default-safe", §3, §4): may this world be live now, and if not, why.

Every path that can make a world live asks ``live_refusals`` (apply's Switch, PUT activation, ``/decide``
on both of its paths, an edge override into ``live``, a world update that must demote): there is no other
copy of the rule. A world may be live only when it allows live, its circuit breaker is off, it is ACTIVE,
a dataset fingerprint is pinned and the policy's validation passed. An empty answer means "may be live";
otherwise every failing condition is named, as a reason token, in this order.

The rest of this module is the seed's mapping between a world's execution domain and the ``effective_mode``
policy string a Gateway turns back into that domain (validate/compute-only -> backtest, paper -> dryrun,
live -> live, shadow -> shadow), and the capping every activation write goes through.
"""

from __future__ import annotations

from typing import Any

from domain.effects import AuditRecord
from domain.state import Outcome, WorldState
from messages.errors import ErrorBody, Refusal
from messages.worlds import WorldRecord

LIVE = "live"
BACKTEST = "backtest"
COMPUTE_ONLY = "compute-only"

# execution domain -> the effective_mode a reference Gateway maps back onto that domain
MODE_OF_DOMAIN = {"backtest": COMPUTE_ONLY, "dryrun": "paper", "live": LIVE, "shadow": "shadow"}

# The reason tokens, declared once (the reference's names where it had one).
ALLOW_LIVE_DISABLED = "allow_live_disabled"
CIRCUIT_BREAKER_ON = "circuit_breaker_on"
WORLD_NOT_ACTIVE = "world_not_active"
FINGERPRINT_MISSING = "dataset_fingerprint_missing"
NOT_PROMOTED = "execution_domain_not_live"  # no validated Switch has made the world live


def live_refusals(world: WorldRecord, fingerprint: str | None, validation: str | None = None) -> list[str]:
    """Why ``world`` may not be live with ``fingerprint`` pinned; ``validation`` is the reason the policy's
    validation did not pass (``None``: it passed). Empty: it may be live."""
    checks = (
        (ALLOW_LIVE_DISABLED, world.allow_live),
        (CIRCUIT_BREAKER_ON, not world.circuit_breaker),
        (WORLD_NOT_ACTIVE, world.state == "ACTIVE"),
        (FINGERPRINT_MISSING, bool((fingerprint or "").strip())),
    )
    refusals = [token for token, holds in checks if not holds]
    return refusals + ([validation] if validation else [])


def world_refusals(world: WorldRecord) -> list[str]:
    """The rule for what a world already is: live only through a validated Switch (its domain is ``live``)
    on the fingerprint that Switch pinned, and still allowed now."""
    promoted = None if world.execution_domain == LIVE else NOT_PROMOTED
    return live_refusals(world, world.dataset_fingerprint, promoted)


def may_be_live(world: WorldRecord) -> bool:
    return not world_refusals(world)


def must_demote(before: WorldRecord, after: WorldRecord) -> list[str]:
    """Why an update must take a live world out of live at once (empty: it need not). A fingerprint other
    than the one Switch pinned is data nobody validated, so it demotes too."""
    if before.execution_domain != LIVE:
        return []
    refusals = live_refusals(after, after.dataset_fingerprint)
    if not refusals and after.dataset_fingerprint != before.dataset_fingerprint:
        refusals.append("dataset_fingerprint_changed")
    return refusals


def mode_of(domain: str | None) -> str:
    """The effective_mode an activation entry carries in ``domain``; no domain is backtest (default-safe)."""
    return MODE_OF_DOMAIN.get(domain or BACKTEST, COMPUTE_ONLY)


def capped_mode(mode: str | None, live_allowed: bool) -> str | None:
    """An entry's mode as it may be written: ``live`` only while the world may be live."""
    return COMPUTE_ONLY if mode == LIVE and not live_allowed else mode


def refusal_detail(what: str, refusals: list[str]) -> str:
    """The one wording of a refusal, naming every rule that refused (clients and operators grep for it)."""
    return f"{what} refused by the default-safe rule: {', '.join(refusals)}"


def refused(state: WorldState, what: str, refusals: list[str], request: dict[str, Any] | None) -> Outcome:
    """A conflict naming every rule, audited as rejected (not downgraded); nothing else is written."""
    audit = AuditRecord(event="live_refused", request=request,
                        result={"what": what, "refusals": refusals, "outcome": "rejected"})
    return Outcome(state=state, effects=[audit], reply=ErrorBody(detail=refusal_detail(what, refusals)),
                   result=Refusal.CONFLICT)
