"""The policy engine behind evaluate and apply: which strategies a policy selects, and why.

Pipeline (reference §5.2): choose a validation profile, merge its thresholds into the effective selection
rules, flatten each strategy's metrics, then thresholds -> top_k -> correlation -> hysteresis. Everything
here is a pure function of its arguments and never depends on the order of dicts or lists it is given:
strategies are visited in id order and every tie is broken by id.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import msgspec

from domain.hashing import blake3_hex, canonical_json
from domain.series_metrics import merged
from messages.errors import unprocessable
from messages.policies import Correlation, Hysteresis, Policy, Selection, Threshold, TopK

# {"s1": {"s2": 0.93}}: string keys only, so it travels as JSON (the reference's tuple keys could not).
Correlations = dict[str, dict[str, float]]


class SelectionResult(msgspec.Struct, kw_only=True):
    active: list[str]
    ruleset_hash: str
    profile: str | None
    rules: dict[str, dict[str, str]]
    notes: list[str]


# Profile key -> the threshold it creates; the profile is keyed by (section, key) as the document nests it.
PROFILE_THRESHOLDS: dict[tuple[str, str], tuple[str, str]] = {
    ("sample", "min_effective_years"): ("effective_history_years", "min"),
    ("sample", "min_trades_total"): ("n_trades_total", "min"),
    ("performance", "sharpe_min"): ("sharpe", "min"),
    ("performance", "max_dd_max"): ("max_drawdown", "max"),
    ("performance", "gain_to_pain_min"): ("gain_to_pain_ratio", "min"),
    ("robustness", "dsr_min"): ("deflated_sharpe_ratio", "min"),
    ("risk", "adv_utilization_p95_max"): ("adv_utilization_p95", "max"),
    ("risk", "participation_rate_p95_max"): ("participation_rate_p95", "max"),
}

_CURRENCY_PREFIXES = ("lag", "stale", "fresh", "as_of", "coverage")
_SAMPLE_PREFIXES = ("sample", "history", "effective_history", "n_trades", "num_trades")
_SAMPLE_METRICS = ("n_trades_total", "n_trades_per_year", "num_trades", "effective_history_years",
                   "sample_days")
# The evaluation layers a later capability reports on; they are part of "the rules that produced this result".
_HASHED_LAYERS = ("cohort", "portfolio", "benchmark", "stress", "paper_shadow_consistency", "live_monitoring")


# --- numbers -------------------------------------------------------------------------------------------

def _finite(number: int | float) -> float | None:
    """A huge int cannot become a float at all; like NaN and inf, it carries no usable value."""
    try:
        value = float(number)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(number: float) -> str:
    """Short form for notes, unless shortening would misstate the value."""
    text = f"{number:.6g}"
    return text if float(text) == number else repr(number)


# --- correlations --------------------------------------------------------------------------------------

def correlation(correlations: Correlations, a: str, b: str) -> float:
    """Symmetric lookup; ids are ordered first so corr(a, b) == corr(b, a) even for one-sided input."""
    first, second = sorted((a, b))
    value = correlations.get(first, {}).get(second)
    if value is None:
        value = correlations.get(second, {}).get(first)
    return 0.0 if value is None else float(value)


def parse_correlations(raw: Any) -> Correlations:
    """Accept ``{a: {b: v}}`` or ``[{"a", "b", "value"}]``; absent (None) means no correlations.

    The result is canonical: every pair once, under its smaller id. The two spellings of one pair must agree,
    otherwise which value wins would depend on the order the client happened to send them in.
    """
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        triples = _nested_triples(raw)
    elif isinstance(raw, list):
        triples = _listed_triples(raw)
    else:
        raise unprocessable('correlations must be an object {"a": {"b": value}} or a list of '
                            '{"a": str, "b": str, "value": number}')
    return _canonical_pairs(triples)


def _nested_triples(raw: Mapping[Any, Any]) -> Iterator[tuple[str, str, float]]:
    for a, row in raw.items():
        if not isinstance(a, str) or not isinstance(row, Mapping):
            raise unprocessable(f"correlations[{a!r}] must be an object mapping strategy ids to numbers")
        for b, value in row.items():
            if not isinstance(b, str):
                raise unprocessable(f"correlations[{a!r}] has a non-string strategy id {b!r}")
            yield a, b, _correlation_value(value, f"correlations[{a!r}][{b!r}]")


def _is_pair_object(item: Any) -> bool:
    return (isinstance(item, Mapping) and set(item) == {"a", "b", "value"}
            and isinstance(item["a"], str) and isinstance(item["b"], str))


def _listed_triples(raw: list[Any]) -> Iterator[tuple[str, str, float]]:
    for index, item in enumerate(raw):
        if not _is_pair_object(item):
            raise unprocessable(f'correlations[{index}] must be exactly '
                                '{"a": str, "b": str, "value": number}')
        yield item["a"], item["b"], _correlation_value(item["value"], f"correlations[{index}].value")


def _correlation_value(value: Any, where: str) -> float:
    number = _finite(value) if _is_number(value) else None
    if number is None or not -1.0 <= number <= 1.0:
        raise unprocessable(f"{where} must be a finite number in [-1, 1], got {repr(value)[:40]}")
    return number


def _canonical_pairs(triples: Iterable[tuple[str, str, float]]) -> Correlations:
    pairs: dict[tuple[str, str], float] = {}
    for a, b, value in triples:
        key = (min(a, b), max(a, b))
        if pairs.setdefault(key, value) != value:
            raise unprocessable(f"correlations give two different values for the pair {key[0]!r}/{key[1]!r}")
    nested: Correlations = {}
    for (first, second), value in sorted(pairs.items()):
        nested.setdefault(first, {})[second] = value
    return nested


# --- metrics -------------------------------------------------------------------------------------------

def flatten_metrics(values: Any) -> dict[str, float]:
    """``{"returns": {"sharpe": 1}}`` -> ``{"returns.sharpe": 1.0, "sharpe": 1.0}``.

    Exact dotted paths outrank bare leaf names, and among equals the shallowest then smallest path wins, so
    a name that occurs twice resolves the same way whatever order the payload's keys came in. Booleans are
    not metrics, and NaN/inf are treated as missing.
    """
    leaves = sorted(_leaves((), values), key=lambda leaf: (len(leaf[0]), leaf[0]))
    flat: dict[str, float] = {}
    for path, number in leaves:
        flat.setdefault(".".join(path), number)
    for path, number in leaves:
        flat.setdefault(path[-1], number)
    return flat


def _leaves(path: tuple[str, ...], node: Any) -> Iterator[tuple[tuple[str, ...], float]]:
    if isinstance(node, Mapping):
        for key, child in node.items():
            yield from _leaves((*path, str(key)), child)
    elif path and _is_number(node):
        number = _finite(node)
        if number is not None:
            yield path, number


# --- profiles and the effective rules ------------------------------------------------------------------

def _norm(name: Any) -> str:
    return str(name).strip().lower().replace("-", "_")


def _first_by_norm(names: Iterable[str]) -> dict[str, str]:
    """Normalised name -> original; on a collision the smallest original wins, independent of input order."""
    table: dict[str, str] = {}
    for name in sorted(names):
        table.setdefault(_norm(name), name)
    return table


def _profile_candidates(policy: Policy, stage: str | None) -> list[str]:
    by_stage = policy.default_profile_by_stage
    candidates: list[str | None] = []
    if stage is not None and _norm(stage):
        mapped = {norm: by_stage[name] for norm, name in _first_by_norm(by_stage).items()}
        candidates += [mapped.get(_norm(stage)), mapped.get(f"{_norm(stage)}_only"), stage]
    candidates += [by_stage[key] for key in sorted(by_stage)]
    candidates += ["backtest", "paper"]
    return [c for c in candidates if c is not None]


def choose_profile(policy: Policy, stage: str | None = None) -> str | None:
    """Reference ``_choose_profile`` minus the explicit profile; "the first profile" is the smallest name."""
    if not policy.validation_profiles:
        return None
    profiles = _first_by_norm(policy.validation_profiles)
    for candidate in _profile_candidates(policy, stage):
        if _norm(candidate) in profiles:
            return profiles[_norm(candidate)]
    return min(policy.validation_profiles)


def _profile_section(name: str, profile: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    body = profile.get(section)
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise unprocessable(f"validation profile {name!r}: {section} must be an object")
    return body


def profile_thresholds(name: str, profile: Mapping[str, Any]) -> dict[str, Threshold]:
    """The thresholds a profile creates, keyed by metric name (as the reference keys them)."""
    created: dict[str, Threshold] = {}
    for (section, key), (metric, bound) in PROFILE_THRESHOLDS.items():
        value = _profile_section(name, profile, section).get(key)
        if value is None:
            continue
        number = _finite(value) if _is_number(value) else None
        if number is None:
            raise unprocessable(f"validation profile {name!r}: {section}.{key} must be a finite number")
        created[metric] = Threshold(metric=metric, **{bound: number})
    return created


def _contains_nan(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_contains_nan(v) for v in node.values())
    return isinstance(node, float) and math.isnan(node)


def effective_rules(policy: Policy, profile: str | None = None) -> Selection:
    """Top-level thresholds win over ``selection``'s, the selection block wins for the other rules, and the
    chosen profile's thresholds are merged over both (keyed by metric name)."""
    block = policy.selection or Selection()
    thresholds = {**block.thresholds, **policy.thresholds}
    if profile is not None:
        thresholds.update(profile_thresholds(profile, policy.validation_profiles[profile]))
    merged = Selection(thresholds=thresholds, top_k=block.top_k or policy.top_k,
                       correlation=block.correlation or policy.correlation,
                       hysteresis=block.hysteresis or policy.hysteresis)
    document = msgspec.to_builtins(merged)
    # NaN compares false with everything: a NaN bound would silently pass, or drop, every strategy.
    if _contains_nan(document):
        raise unprocessable("selection rules must not contain NaN")
    try:  # the round trip validates structs built in code and turns int bounds into floats for the hash
        return msgspec.convert(document, Selection)
    except msgspec.ValidationError as exc:
        raise unprocessable(f"invalid selection rules: {exc}") from None


def ruleset_hash(policy: Policy, rules: Selection, profile: str | None) -> str:
    """One ``blake3:`` prefix (the reference doubles it) over the rules that actually ran."""
    document = {**msgspec.to_builtins(rules), "validation": policy.validation,
                **{layer: getattr(policy, layer) for layer in _HASHED_LAYERS}}
    payload: dict[str, Any] = {"policy": document}
    if profile is not None:
        payload["profile"] = profile
    return blake3_hex(canonical_json(msgspec.to_builtins(payload)))


# --- the selection pipeline ----------------------------------------------------------------------------

_Issue = tuple[str, str]  # ("fail" | "warn", human-readable reason)


def _threshold_issue(values: Mapping[str, float], rule: Threshold, mode: str) -> _Issue | None:
    value = values.get(rule.metric)
    if value is None:
        return None if mode == "ignore" else (mode, f"{rule.metric} missing")
    if rule.min is not None and value < rule.min:
        return "fail", f"{rule.metric} {_fmt(value)} < min {_fmt(rule.min)}"
    if rule.max is not None and value > rule.max:
        return "fail", f"{rule.metric} {_fmt(value)} > max {_fmt(rule.max)}"
    return None


def _threshold_issues(values: Mapping[str, float], thresholds: Iterable[Threshold], mode: str) -> list[_Issue]:
    issues = (_threshold_issue(values, rule, mode) for rule in thresholds)
    return [issue for issue in issues if issue is not None]


def _apply_top_k(flat: Mapping[str, Mapping[str, float]], candidates: list[str], rule: TopK | None,
                 notes: list[str]) -> tuple[list[str], set[str]]:
    if rule is None:
        return candidates, set()
    ranked = sorted(candidates, key=lambda sid: (-flat[sid].get(rule.metric, -math.inf), sid))
    for rank, sid in enumerate(ranked[rule.k:], start=rule.k + 1):
        notes.append(f"{sid}: rank {rank} by {rule.metric} is outside top_k {rule.k}")
    return ranked[:rule.k], set(ranked[rule.k:])


def _first_clash(sid: str, kept: list[str], correlations: Correlations,
                 limit: float) -> tuple[str, float] | None:
    for other in kept:
        value = correlation(correlations, sid, other)
        if abs(value) > limit:
            return other, value
    return None


def _apply_correlation(candidates: list[str], correlations: Correlations, rule: Correlation | None,
                       notes: list[str]) -> tuple[list[str], set[str]]:
    """Greedy: a candidate stays unless it is too correlated with one already kept. Unlike the reference,
    an empty matrix is not special-cased, so a missing pair is always 0.0 (it matters when max < 0)."""
    if rule is None:
        return candidates, set()
    kept: list[str] = []
    dropped: set[str] = set()
    for sid in candidates:
        clash = _first_clash(sid, kept, correlations, rule.max)
        if clash is None:
            kept.append(sid)
            continue
        dropped.add(sid)
        notes.append(f"{sid}: |corr| with {clash[0]} is {_fmt(abs(clash[1]))} > max {_fmt(rule.max)}")
    return kept, dropped


def _hysteresis_reason(value: float | None, was_active: bool, rule: Hysteresis) -> str | None:
    if value is None:
        return f"{rule.metric} missing (hysteresis)"
    floor, label = (rule.exit, "exit") if was_active else (rule.enter, "enter")
    if value >= floor:
        return None
    suffix = " (previously active)" if was_active else ""
    return f"{rule.metric} {_fmt(value)} < {label} {_fmt(floor)}{suffix}"


def _apply_hysteresis(flat: Mapping[str, Mapping[str, float]], candidates: list[str], previous: set[str],
                      rule: Hysteresis | None, notes: list[str]) -> tuple[list[str], set[str]]:
    if rule is None:
        return candidates, set()
    kept: list[str] = []
    dropped: set[str] = set()
    for sid in candidates:
        reason = _hysteresis_reason(flat[sid].get(rule.metric), sid in previous, rule)
        if reason is None:
            kept.append(sid)
        else:
            dropped.add(sid)
            notes.append(f"{sid}: {reason}")
    return kept, dropped


# --- per-strategy rule report (statuses only; selection never reads them) --------------------------------

def _group(metric: str) -> str:
    name = metric.lower()
    if name.startswith(_CURRENCY_PREFIXES):
        return "data_currency"
    if name.startswith(_SAMPLE_PREFIXES) or "trade" in name:
        return "sample"
    return "other"


def _worst(issues: Iterable[_Issue], default: str = "pass") -> str:
    kinds = {kind for kind, _ in issues}
    return "fail" if "fail" in kinds else "warn" if "warn" in kinds else default


class _Outcome(msgspec.Struct, frozen=True):
    """What the pipeline decided, as the report needs it."""

    rules: Selection
    mode: str
    issues: dict[str, list[_Issue]]
    outside_top_k: set[str]
    risk_dropped: set[str]


def _data_currency(values: Mapping[str, float], outcome: _Outcome) -> str:
    required = [t.metric for t in outcome.rules.thresholds.values() if _group(t.metric) == "data_currency"]
    if values and all(metric in values for metric in required):
        return "pass"
    # In "ignore" mode the reference still reports the gap, as a warning.
    return "fail" if outcome.mode == "fail" else "warn"


def _sample(values: Mapping[str, float], outcome: _Outcome) -> str:
    rules = [t for t in outcome.rules.thresholds.values() if _group(t.metric) == "sample"]
    has_depth = any(values.get(metric, 0.0) > 0 for metric in _SAMPLE_METRICS)
    return _worst(_threshold_issues(values, rules, outcome.mode), "pass" if has_depth else "warn")


def _performance(sid: str, outcome: _Outcome) -> str:
    return "fail" if sid in outcome.outside_top_k else _worst(outcome.issues[sid])


def _risk_constraint(sid: str, outcome: _Outcome) -> str:
    return "fail" if sid in outcome.risk_dropped else "pass"


def _report(sid: str, values: Mapping[str, float], outcome: _Outcome) -> dict[str, str]:
    return {"data_currency": _data_currency(values, outcome), "sample": _sample(values, outcome),
            "performance": _performance(sid, outcome), "risk_constraint": _risk_constraint(sid, outcome)}


def _screen(flat: Mapping[str, Mapping[str, float]], rules: Selection,
            mode: str) -> tuple[dict[str, list[_Issue]], list[str], list[str]]:
    """Thresholds, in threshold-name order so the notes read the same for any input order."""
    thresholds = [rules.thresholds[name] for name in sorted(rules.thresholds)]
    issues = {sid: _threshold_issues(values, thresholds, mode) for sid, values in flat.items()}
    survivors = [sid for sid, found in issues.items() if _worst(found) != "fail"]
    notes = [f"{sid}: {text}" for sid, found in issues.items() for kind, text in found if kind == "fail"]
    return issues, survivors, notes


# --- entry point ---------------------------------------------------------------------------------------

def select(policy: Policy, metrics: Mapping[str, Any], previous: Iterable[str], correlations: Correlations,
           stage: str | None = None, derived: Mapping[str, Mapping[str, float]] | None = None) -> SelectionResult:
    """Run the selection pipeline; refuses an unusable policy profile as ``UNPROCESSABLE``.
    ``derived``: flat metrics computed from the request's series, merged over the flattened ``metrics``."""
    profile = choose_profile(policy, stage)
    rules = effective_rules(policy, profile)
    mode = policy.validation.on_missing_metric
    flat = merged({sid: flatten_metrics(metrics[sid]) for sid in metrics}, derived or {})
    issues, survivors, notes = _screen(flat, rules, mode)
    ranked, outside = _apply_top_k(flat, survivors, rules.top_k, notes)
    kept, uncorrelated_out = _apply_correlation(ranked, correlations, rules.correlation, notes)
    active_set = set(previous)
    active, hysteresis_out = _apply_hysteresis(flat, kept, active_set, rules.hysteresis, notes)
    notes += [f"{sid}: previously active but no metrics were supplied"
              for sid in sorted(active_set - flat.keys())]
    outcome = _Outcome(rules=rules, mode=mode, issues=issues, outside_top_k=outside,
                       risk_dropped=uncorrelated_out | hysteresis_out)
    return SelectionResult(active=sorted(active), ruleset_hash=ruleset_hash(policy, rules, profile),
                           profile=profile, rules={sid: _report(sid, v, outcome) for sid, v in flat.items()},
                           notes=notes)
