"""Execution domains: the one normalisation every route, cache key and gating policy uses.

Case-insensitive; empty or ``default`` is ``backtest``; the reference's aliases map onto the four domains;
anything else is refused (422), never silently bucketed.
"""

from __future__ import annotations

from messages.errors import unprocessable

DOMAINS = ("backtest", "dryrun", "live", "shadow")
ALIASES: dict[str, str] = {
    "": "backtest", "default": "backtest", "backtest": "backtest", "validate": "backtest",
    "compute": "backtest", "compute-only": "backtest", "offline": "backtest",
    "dryrun": "dryrun", "paper": "dryrun", "sim": "dryrun", "sandbox": "dryrun",
    "live": "live", "prod": "live",
    "shadow": "shadow",
}
# List queries take these to mean "every domain".
EVERY_DOMAIN = ("*", "all")


def resolve_domain(value: str | None) -> str | None:
    """The domain ``value`` names, or ``None`` when it names none (no error: callers decide)."""
    return ALIASES.get((value or "").strip().lower())


def normalise_domain(value: str | None) -> str:
    domain = resolve_domain(value)
    if domain is None:
        raise unprocessable(f"unknown execution_domain {value!r}; expected one of {', '.join(DOMAINS)} "
                            f"(aliases: {', '.join(sorted(k for k in ALIASES if k and k not in DOMAINS))})")
    return domain
