"""Live monitoring: the latest live run of each strategy and how it fares against the policy's
``live_monitoring`` guardrails (reference §1.11, ``LiveMonitoringReport``)."""

from __future__ import annotations

from typing import Any

import msgspec

from messages.evaluation import RuleResult


class LiveMonitoringStrategyReport(msgspec.Struct, kw_only=True, omit_defaults=False):
    strategy_id: str
    run_id: str
    as_of: str | None = None
    diagnostics: dict[str, Any] | None = None
    live_monitoring: RuleResult | None = None  # none until a monitoring run evaluated the run


class LiveMonitoringCounts(msgspec.Struct, kw_only=True, rename={"passed": "pass"}):
    passed: int = 0
    warn: int = 0
    fail: int = 0


class LiveMonitoringSummary(msgspec.Struct, kw_only=True):
    counts: LiveMonitoringCounts
    total: int


class LiveMonitoringReport(msgspec.Struct, kw_only=True):
    world_id: str
    generated_at: str
    strategies: list[LiveMonitoringStrategyReport]
    summary: LiveMonitoringSummary


class LiveMonitoringRunResult(msgspec.Struct, kw_only=True):
    """``POST /worlds/{id}/live-monitoring/run``: how many live runs got a new revision."""

    world_id: str
    updated: int


class LiveMonitoringRunAllResult(msgspec.Struct, kw_only=True):
    """``POST /worlds/live-monitoring/run-all``: world id -> live runs updated there."""

    results: dict[str, int]


class LiveMonitoringRunAllFailed(msgspec.Struct, kw_only=True):
    """``run-all``'s 503: the worlds that ran (updated count) and, for each other, its error."""

    results: dict[str, int]
    failed: dict[str, str]
