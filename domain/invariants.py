"""Validation invariants of a world and its evaluation runs (reference ``GET /worlds/{id}/validations/invariants``,
fact sheet §1.7). Every list names the runs that break one invariant; ``ok`` is true when all are empty:

- ``live_status_failures``: the latest live-stage run of a strategy whose summary status is not ``pass``;
- ``live_policy_version_mismatches``: such a run validated under an older policy than the world's default
  (or an inline one, which names no version);
- ``fail_closed_violations``: a world whose ``metadata`` marks it high tier and client critical
  (``risk_profile.tier == "high"`` and ``client_critical``) must fail closed: its default policy's
  ``validation`` must say ``on_error: fail`` and ``on_missing_metric: fail``. The reference reads a
  ``validation`` key of the world record; here those modes belong to the policy that evaluate and apply
  enforce, so that is what is checked (``<unset>`` where it declares none);
- ``approved_overrides``: runs carrying an approved override, with when its review falls due (30 days for a
  live run or a critical world, else 90) and which of reason / actor / timestamp it lacks;
- ``validation_health_gaps``: runs whose recorded validation-health figures differ from the recomputed ones.

``strategy_id`` narrows the run-based lists to one strategy.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from domain.evaluation import strategy_runs
from domain.evaluation_report import validation_health
from domain.policies import default_policy
from domain.timefmt import iso_z, parse_iso
from domain.state import WorldState, require_world
from messages.commands import GetValidationInvariants
from messages.evaluation import EvaluationRun, EvaluationSummary
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


def _ref(run: EvaluationRun) -> dict[str, Any]:
    return {"world_id": run.world_id, "strategy_id": run.strategy_id, "run_id": run.run_id}


def _latest_live(runs: list[EvaluationRun]) -> list[EvaluationRun]:
    """Per strategy, its newest live-stage run (by creation; ``runs`` is oldest first, so the last wins)."""
    latest: dict[str, EvaluationRun] = {}
    for run in runs:
        if run.stage.lower() == "live":
            latest[run.strategy_id] = run
    return list(latest.values())


def _status(run: EvaluationRun) -> str | None:
    return run.summary.status if run.summary else None


def live_status_failures(live: list[EvaluationRun]) -> list[dict[str, Any]]:
    return [{**_ref(run), "status": _status(run)} for run in live if _status(run) != "pass"]


def _version(run: EvaluationRun) -> int | None:
    raw = run.validation.policy_version if run.validation else None
    return int(raw) if raw is not None and raw.isdigit() else None


def live_policy_mismatches(live: list[EvaluationRun], required: int | None) -> list[dict[str, Any]]:
    if required is None:
        return []
    return [{**_ref(run), "policy_version": run.validation.policy_version if run.validation else None,
             "required_policy_version": required} for run in live if (_version(run) or 0) < required]


def review_window_days(world: WorldRecord, run: EvaluationRun) -> int:
    return 30 if run.stage.lower() == "live" or must_fail_closed(world) else 90


def _override(world: WorldRecord, run: EvaluationRun, now: datetime) -> dict[str, Any]:
    summary = run.summary or EvaluationSummary()
    days = review_window_days(world, run)
    stamp = parse_iso(summary.override_timestamp) if summary.override_timestamp else None
    due = stamp + timedelta(days=days) if stamp is not None else None
    fields = {"override_reason": summary.override_reason, "override_actor": summary.override_actor,
              "override_timestamp": summary.override_timestamp}
    return {**_ref(run), "stage": run.stage, **fields, "review_window_days": days,
            "review_due_at": iso_z(due) if due else None, "review_overdue": now > due if due else None,
            "missing_fields": [name for name, value in fields.items() if not value]}


def approved_overrides(world: WorldRecord, runs: list[EvaluationRun], now: datetime) -> list[dict[str, Any]]:
    return [_override(world, run, now) for run in runs
            if run.summary is not None and run.summary.override_status == "approved"]


def _health_gaps(run: EvaluationRun) -> list[dict[str, Any]]:
    """A run still evaluating has recorded nothing yet, so it has nothing to disagree with."""
    if run.metrics is None:
        return []
    expected = msgspec.to_builtins(validation_health(run.metrics, run.validation.results if run.validation else None))
    diagnostics = run.metrics.diagnostics if run.metrics else None
    health = diagnostics.validation_health if diagnostics else None
    recorded = msgspec.to_builtins(health) if health else {}
    return [{**_ref(run), "metric": name, "expected": value, "recorded": recorded.get(name)}
            for name, value in expected.items()
            if recorded.get(name) is None or abs(recorded[name] - value) > 1e-6]


def validation_invariants(state: WorldState, query: GetValidationInvariants,
                          now: datetime) -> ValidationInvariantsReport:
    """The report; an unknown world is 404 (the reference answered ``ok`` for any id)."""
    world = require_world(state)
    runs = strategy_runs(state, query.strategy_id)
    live = _latest_live(runs)
    report = ValidationInvariantsReport(
        ok=True, live_status_failures=live_status_failures(live),
        live_policy_version_mismatches=live_policy_mismatches(live, world.default_policy_version),
        fail_closed_violations=fail_closed_violations(state), approved_overrides=approved_overrides(world, runs, now),
        validation_health_gaps=[gap for run in runs for gap in _health_gaps(run)])
    lists = msgspec.to_builtins(report)
    return msgspec.structs.replace(report, ok=not any(value for key, value in lists.items() if key != "ok"))
