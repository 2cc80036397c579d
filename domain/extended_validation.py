"""Writing the extended-validation worker's results into a world's evaluation runs (reference
``extended_validation_worker``): each strategy's latest run gets, in a new revision, the ``portfolio``
(baseline and incremental VaR/ES at 99%) and ``stress`` rule results, ``extended_revision`` + 1,
``extended_evaluated_at`` and one more ``extended_history`` entry. A run whose block is already the one
recorded (the same snapshot, re-delivered) or whose last block is of a newer snapshot is left alone, so a
replayed event writes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain.effects import Effect
from domain.evaluation import saved, strategy_runs
from domain.state import Outcome, WorldState, require_world
from domain.timefmt import iso_z
from messages import commands as c
from messages.evaluation import EvaluationRun, EvaluationValidation, RuleResult


class ExtendedRecorded(msgspec.Struct, kw_only=True):
    updated: list[str]  # "strategy_id/run_id" of every run given a new revision


def _latest_runs(state: WorldState) -> dict[str, EvaluationRun]:
    """The newest run of each strategy (runs are ordered oldest first)."""
    return {run.strategy_id: run for run in strategy_runs(state)}


def _rules(block: dict[str, Any]) -> dict[str, RuleResult]:
    status = "pass" if block.get("status", "pass") == "pass" else "warn"
    rules = {"portfolio": RuleResult(status=status, severity="soft", owner="risk",
                                     reason_code="portfolio_risk_evaluated" if status == "pass" else
                                     "portfolio_risk_unavailable", reason=block.get("reason"),
                                     details={k: block[k] for k in ("baseline", "incremental") if k in block})}
    if block.get("stress"):
        rules["stress"] = RuleResult(status="pass", severity="soft", owner="risk", reason_code="stress_evaluated",
                                     details={"scenarios": block["stress"]})
    return rules


def _stale(history: list[dict[str, Any]], block: dict[str, Any]) -> bool:
    """A block of an older snapshot than the run's last one (a replay out of order) does not replace it."""
    last = history[-1].get("block", {}) if history else {}
    return bool(last) and str(last.get("snapshot_as_of", "")) > str(block.get("snapshot_as_of", ""))


def _with_block(run: EvaluationRun, block: dict[str, Any], now: datetime) -> EvaluationRun | None:
    validation = run.validation or EvaluationValidation()
    history = list(validation.extended_history or [])
    if any(entry.get("block") == block for entry in history) or _stale(history, block):
        return None
    revision = (validation.extended_revision or 0) + 1
    results = {**(validation.results or {}), **_rules(block)}
    history.append({"revision": revision, "evaluated_at": iso_z(now), "block": block})
    validation = msgspec.structs.replace(validation, results=results, extended_revision=revision,
                                         extended_evaluated_at=iso_z(now), extended_history=history)
    return msgspec.structs.replace(run, validation=validation, updated_at=iso_z(now), revision=run.revision + 1)


def record_extended_validation(state: WorldState, cmd: c.RecordExtendedValidation, now: datetime) -> Outcome:
    require_world(state)
    effects: list[Effect] = []
    updated: list[str] = []
    latest = _latest_runs(state)
    for strategy_id in sorted(cmd.blocks):
        run = latest.get(strategy_id)
        changed = None if run is None else _with_block(run, cmd.blocks[strategy_id], now)
        if changed is None:
            continue
        state, written = saved(state, changed, "extended_validation", now, cmd.correlation_id)
        effects += written
        updated.append(f"{changed.strategy_id}/{changed.run_id}")
    return Outcome(state=state, effects=effects, reply=ExtendedRecorded(updated=updated))
