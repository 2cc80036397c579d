"""The decision engine: a world's ``effective_mode`` from its policy's decision section and its evidence.

Three pure steps, each tested on its own:

1. ``evaluate`` judges the evidence of every strategy in the world's decision set at one moment: data
   currency, sample sufficiency, gates, score, constraints. The verdict is ``pass``, ``fail`` or ``missing``
   (an input the rules need is absent or not a finite number).
2. ``advance`` folds a verdict into the persisted hysteresis state. Promotion takes ``promote_after``
   consecutive passes, demotion ``demote_after`` consecutive failures, and neither happens within
   ``min_dwell`` of the last change. A ``missing`` verdict demotes at once (default-safe: never trade on
   inputs that are not there) and never counts toward a promotion.
3. ``read`` answers ``/decide`` at a moment from the stored state, lowering the mode to compute-only where
   the default-safe rules say so: evidence missing or stale at that moment, the decision older than its
   TTL, live refused by the default-safe rule (``domain.default_safe``). These only ever lower the mode
   and never change the stored state.

Evaluations happen when evidence arrives (``POST /history``), not when ``/decide`` is read, so polling
cannot advance a streak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from itertools import combinations

from domain.decision_rules import DecisionRules, Gate, GateGroup
from domain.timefmt import iso_z, parse_iso
from messages.decisions import DecisionState, DecisionTransition, HistoryEntry

Evidence = dict[str, HistoryEntry]
MAX_TRANSITIONS = 256  # kept in memory for ``as_of`` reads; older ones stay in decision_history


@dataclass(frozen=True)
class Verdict:
    outcome: str  # pass | fail | missing
    tokens: tuple[str, ...]
    score: float | None = None


class _Missing(Exception):
    """An input the rules need is absent: the evaluation stops with a ``missing`` verdict."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


# --- evidence --------------------------------------------------------------------------------------


def data_end(entry: HistoryEntry) -> datetime | None:
    """The end of the data behind an entry: ``data_end``, else the coverage upper bound, else ``as_of``."""
    if entry.data_end is not None:
        return parse_iso(entry.data_end)
    if entry.coverage_bounds is not None:
        try:
            return datetime.fromtimestamp(entry.coverage_bounds[1], tz=timezone.utc)
        except (OverflowError, OSError, ValueError):  # outside any calendar: as good as unknown
            return None
    return parse_iso(entry.as_of) if entry.as_of is not None else None


def _metric(entry: HistoryEntry, name: str) -> float:
    value = (entry.metrics or {}).get(name)
    if value is None or not math.isfinite(value):
        raise _Missing(f"metric_missing:{name}")
    return value


def _first_metric(entry: HistoryEntry, names: tuple[str, ...]) -> float | None:
    metrics = entry.metrics or {}
    return next((metrics[n] for n in names if metrics.get(n) is not None and math.isfinite(metrics[n])), None)


def _sample_days(entry: HistoryEntry) -> float | None:
    days = _first_metric(entry, ("sample_days",))
    if days is None and entry.coverage_bounds is not None:
        days = (entry.coverage_bounds[1] - entry.coverage_bounds[0]) / 86400
    return days


def _sample_bars(entry: HistoryEntry) -> float | None:
    return float(entry.rows) if entry.rows is not None else _first_metric(entry, ("bars",))


_SAMPLE = (
    ("min_days", "days", _sample_days),
    ("min_trades", "trades", lambda e: _first_metric(e, ("n_trades_total", "n_trades", "trades"))),
    ("min_bars", "bars", _sample_bars),
)


def visible_at(entry: HistoryEntry, at: datetime | None) -> bool:
    """No look-ahead: an entry dated after ``at`` did not exist yet; undated entries qualify."""
    return at is None or entry.as_of is None or parse_iso(entry.as_of) <= at


def evidence_at(history: Evidence, strategies: list[str], at: datetime | None) -> Evidence:
    """Each decided strategy's entry, if it existed at ``at``."""
    return {sid: history[sid] for sid in strategies if sid in history and visible_at(history[sid], at)}


# --- 1. evaluate -----------------------------------------------------------------------------------


def _world_data_end(evidence: Evidence) -> datetime:
    ends = [data_end(e) for e in evidence.values()]
    if any(end is None for end in ends):
        raise _Missing("data_end_missing")
    return min(end for end in ends if end is not None)  # the stalest strategy decides


def is_current(rules: DecisionRules, evidence: Evidence, at: datetime) -> bool:
    if rules.max_lag_s is None:
        return True
    return (at - _world_data_end(evidence)).total_seconds() <= rules.max_lag_s


def _check_currency(rules: DecisionRules, evidence: Evidence, at: datetime) -> list[str]:
    if rules.max_lag_s is None:
        return []
    return ["data_currency_ok"] if is_current(rules, evidence, at) else ["!data_stale"]


def _check_sample(rules: DecisionRules, evidence: Evidence) -> list[str]:
    wanted = [(getattr(rules, key), name, read) for key, name, read in _SAMPLE if getattr(rules, key) is not None]
    if not wanted:
        return []
    for entry in evidence.values():
        for minimum, name, read in wanted:
            value = read(entry)
            if value is None:
                raise _Missing(f"sample_missing:{name}")
            if value < minimum:
                return ["!sample_insufficient"]
    return ["sample_ok"]


def _gate_passes(group: GateGroup, entry: HistoryEntry) -> bool:
    results = [_gate_passes(item, entry) if isinstance(item, GateGroup) else _leaf(item, entry)
               for item in group.items]  # every item is read, so a missing metric is never skipped
    return all(results) if group.mode == "and" else any(results)


def _leaf(gate: Gate, entry: HistoryEntry) -> bool:
    return gate.holds(_metric(entry, gate.metric))


def _check_gates(rules: DecisionRules, evidence: Evidence) -> list[str]:
    if rules.gates is None:
        return []
    passed = [_gate_passes(rules.gates, entry) for entry in evidence.values()]
    return ["gates_pass"] if all(passed) else ["!gates_failed"]


def _score(rules: DecisionRules, evidence: Evidence) -> float | None:
    """The weakest strategy's weighted score: a world is only as good as what it would trade."""
    if not rules.score_weights:
        return None
    return min(sum(w * _metric(e, m) for m, w in rules.score_weights.items()) for e in evidence.values())


def _check_score(rules: DecisionRules, score: float | None) -> list[str]:
    if rules.score_min is None or score is None:
        return []
    return ["score_ok"] if score >= rules.score_min else ["!score_below_min"]


def _correlation(evidence: Evidence, a: str, b: str) -> float:
    value = (evidence[a].correlations or {}).get(b)
    if value is None:
        value = (evidence[b].correlations or {}).get(a)
    if value is None or not math.isfinite(value):
        raise _Missing(f"correlation_missing:{min(a, b)}|{max(a, b)}")
    return value


def _check_constraints(rules: DecisionRules, evidence: Evidence) -> list[str]:
    tokens = []
    if rules.max_pairwise_correlation is not None:
        worst = max((abs(_correlation(evidence, a, b)) for a, b in combinations(sorted(evidence), 2)), default=0.0)
        tokens.append("correlation_ok" if worst <= rules.max_pairwise_correlation else "!correlation_exceeded")
    if rules.max_gross_exposure is not None:
        gross = sum(abs(_metric(e, rules.exposure_metric)) for e in evidence.values())
        tokens.append("exposure_ok" if gross <= rules.max_gross_exposure else "!exposure_exceeded")
    return tokens


def _judge(rules: DecisionRules, strategies: list[str], evidence: Evidence, at: datetime) -> Verdict:
    absent = [sid for sid in strategies if sid not in evidence]
    if absent:
        raise _Missing("evidence_missing")
    # In the seed's order: data currency, sample sufficiency, gates, score, constraints.
    tokens = _check_currency(rules, evidence, at) + _check_sample(rules, evidence) + _check_gates(rules, evidence)
    score = _score(rules, evidence)
    tokens += _check_score(rules, score) + _check_constraints(rules, evidence)
    failed = [t[1:] for t in tokens if t.startswith("!")]
    if failed:
        return Verdict("fail", tuple(failed), score)
    return Verdict("pass", tuple(tokens) or ("no_rules",), score)


def evaluate(rules: DecisionRules, strategies: list[str], evidence: Evidence, at: datetime) -> Verdict:
    """Judge the decided strategies' evidence at ``at``. Every rule is checked; the failing ones (or the
    first missing input) are the verdict's tokens, otherwise the rules that passed."""
    try:
        return _judge(rules, strategies, evidence, at)
    except _Missing as missing:
        return Verdict("missing", (missing.token,))


# --- 2. advance (hysteresis) -----------------------------------------------------------------------


def _dwelled(state: DecisionState, rules: DecisionRules, now: datetime) -> bool:
    return state.since is None or (now - parse_iso(state.since)).total_seconds() >= rules.min_dwell_s


def _start(prev: DecisionState | None, rules: DecisionRules, policy_version: int) -> DecisionState:
    """Streaks earned under another policy version do not count under this one; the mode is kept."""
    if prev is not None and prev.policy_version == policy_version:
        return prev
    mode = prev.mode if prev is not None else rules.demote_to
    if mode not in (rules.promote_to, rules.demote_to):
        mode = rules.demote_to  # the policy changed its modes: start from its safe one
    return DecisionState(mode=mode, since=prev.since if prev else None, verdict="none", tokens=[],
                         hysteresis="steady", evaluated_at="", policy_version=policy_version,
                         transitions=list(prev.transitions) if prev else [])


def _step(state: DecisionState, rules: DecisionRules, verdict: Verdict, now: datetime) -> tuple[str, str, int, int]:
    """(mode, hysteresis status, pass streak, fail streak) after one verdict."""
    promoted = state.mode == rules.promote_to
    if verdict.outcome == "missing":
        return rules.demote_to, "demoted" if promoted else "steady", 0, 0
    if verdict.outcome == "pass":
        streak = state.pass_streak + 1
        if promoted:
            return state.mode, "steady", streak, 0
        return _maybe_change(state, rules, now, streak >= rules.promote_after, rules.promote_to, "promotion",
                             (streak, 0))
    streak = state.fail_streak + 1
    if not promoted:
        return state.mode, "steady", 0, streak
    return _maybe_change(state, rules, now, streak >= rules.demote_after, rules.demote_to, "demotion", (0, streak))


def _maybe_change(state: DecisionState, rules: DecisionRules, now: datetime, due: bool, target: str, kind: str,
                  streaks: tuple[int, int]) -> tuple[str, str, int, int]:
    if not due:
        return state.mode, f"pending_{kind}", *streaks
    if not _dwelled(state, rules, now):
        return state.mode, "dwell", *streaks
    return target, "promoted" if kind == "promotion" else "demoted", 0, 0


def advance(prev: DecisionState | None, rules: DecisionRules, verdict: Verdict, policy_version: int,
            now: datetime) -> DecisionState:
    """The state after one more evaluation."""
    state = _start(prev, rules, policy_version)
    mode, status, passes, fails = _step(state, rules, verdict, now)
    since, transitions = state.since, list(state.transitions)
    if mode != state.mode:
        since = iso_z(now)
        transitions = (transitions + [DecisionTransition(mode=mode, at=since)])[-MAX_TRANSITIONS:]
    return DecisionState(
        mode=mode, since=since, pass_streak=passes, fail_streak=fails, verdict=verdict.outcome,
        tokens=list(verdict.tokens), hysteresis=status, score=verdict.score, evaluated_at=iso_z(now),
        policy_version=policy_version, transitions=transitions,
    )


# --- 3. read ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    mode: str
    tokens: list[str]
    ttl_s: int


# A settled world reads the same whether it just changed or not, so its etag changes only with the decision.
_HYSTERESIS_REASON = {"promoted": "hysteresis_settled", "demoted": "hysteresis_settled", "steady": "hysteresis_settled",
                      "pending_promotion": "hysteresis_pending_promotion",
                      "pending_demotion": "hysteresis_pending_demotion", "dwell": "hysteresis_min_dwell"}


def _mode_at(state: DecisionState, at: datetime) -> str | None:
    """The decided mode in effect at a moment before the last evaluation (None: not known that far back)."""
    earlier = [t for t in state.transitions if parse_iso(t.at) <= at]
    if earlier:
        return earlier[-1].mode
    return None


def _safety(rules: DecisionRules, state: DecisionState, evidence: Evidence, strategies: list[str],
            at: datetime, check_ttl: bool) -> list[str]:
    """The default-safe rules that hold at ``at``, as reason tokens (any one means compute-only)."""
    if any(sid not in evidence for sid in strategies):
        return ["evidence_missing"]
    problems = []
    try:
        if not is_current(rules, evidence, at):
            problems.append("data_stale")
    except _Missing as missing:
        problems.append(missing.token)
    if check_ttl and at > parse_iso(state.evaluated_at) + timedelta(seconds=rules.ttl_s):
        problems.append("decision_stale")
    return problems


def _remaining_ttl(rules: DecisionRules, state: DecisionState, at: datetime) -> int:
    left = parse_iso(state.evaluated_at) + timedelta(seconds=rules.ttl_s) - at
    return max(1, min(rules.ttl_s, math.ceil(left.total_seconds())))


def read(rules: DecisionRules, state: DecisionState | None, strategies: list[str], evidence: Evidence,
         at: datetime, live_refusals: list[str], historical: bool) -> Reading:
    """The effective mode at ``at``. ``historical`` (an ``as_of`` before the last evaluation) reads the
    mode then in effect and skips the TTL check, which only concerns the newest decision. ``live_refusals``
    is ``domain.default_safe``'s answer for the world (empty: it may be live)."""
    if state is None:
        return Reading("compute-only", ["awaiting_evaluation"], rules.ttl_s)
    mode = _mode_at(state, at) if historical else state.mode
    if mode is None:
        return Reading("compute-only", ["decision_unavailable"], rules.ttl_s)
    tokens = [f"decided_{mode}"] if historical else [*state.tokens, _HYSTERESIS_REASON[state.hysteresis]]
    problems = _safety(rules, state, evidence, strategies, at, check_ttl=not historical)
    if mode == "live":
        problems += live_refusals  # the default-safe rule's answer for this world, asked by the caller
    if problems:
        return Reading("compute-only", tokens + problems, rules.ttl_s)
    ttl = rules.ttl_s if historical else _remaining_ttl(rules, state, at)
    return Reading(mode, tokens, ttl)
