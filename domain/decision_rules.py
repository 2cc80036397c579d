"""The policy's ``decision`` section, parsed and checked once into ``DecisionRules``.

The section drives ``/decide`` (seed §4): data currency, sample sufficiency, gates (AND/OR of thresholds),
a weighted score, constraints (correlation, exposure) and hysteresis. Every malformed piece is refused at
policy upload with the path of the offending key, so evaluation never meets a rule it cannot read.

```yaml
decision:
  promote_to: live            # live | paper | shadow (live still needs the world's allow_live)
  demote_to: compute-only     # compute-only | validate | paper
  ttl: 300s                   # how long a decision stays valid after its evaluation
  data_currency: {max_lag: 5m}
  sample: {min_days: 30, min_trades: 40, min_bars: 500}
  gates: {and: ["sharpe >= 0.6", {or: ["max_dd <= 0.25", {metric: calmar, min: 1}]}]}
  score: {weights: {sharpe: 1.0, ulcer: -0.2}, min: 0.5}
  constraints: {correlation: {max_pairwise: 0.8}, exposure: {metric: gross_exposure, max_gross: 1.0}}
  hysteresis: {promote_after: 2, demote_after: 2, min_dwell: 3h}
```
"""

from __future__ import annotations

import functools
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from messages.errors import CommandRejected, unprocessable

PROMOTE_MODES = ("live", "paper", "shadow")
DEMOTE_MODES = ("compute-only", "validate", "paper")
DEFAULT_TTL_S = 300
MAX_GATE_DEPTH = 8

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_COMPARISON = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|>|<)\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
}


@dataclass(frozen=True)
class Gate:
    """One threshold: ``metric op value``."""

    metric: str
    op: str
    value: float

    def holds(self, actual: float) -> bool:
        return OPERATORS[self.op](actual, self.value)


@dataclass(frozen=True)
class GateGroup:
    """``and``: every item passes; ``or``: at least one does."""

    mode: str
    items: tuple[Gate | GateGroup, ...]

    def metrics(self) -> list[str]:
        names: list[str] = []
        for item in self.items:
            names += item.metrics() if isinstance(item, GateGroup) else [item.metric]
        return names


@dataclass(frozen=True)
class DecisionRules:
    promote_to: str = "live"
    demote_to: str = "compute-only"
    ttl_s: int = DEFAULT_TTL_S
    max_lag_s: float | None = None
    min_days: float | None = None
    min_trades: float | None = None
    min_bars: float | None = None
    gates: GateGroup | None = None
    score_weights: dict[str, float] = field(default_factory=dict)
    score_min: float | None = None
    max_pairwise_correlation: float | None = None
    exposure_metric: str = "gross_exposure"
    max_gross_exposure: float | None = None
    promote_after: int = 1
    demote_after: int = 1
    min_dwell_s: float = 0.0


def _fail(path: str, message: str) -> CommandRejected:
    return unprocessable(f"invalid policy: decision.{path}: {message}")


def parse_duration(raw: Any, path: str) -> float:
    """``300``, ``"300s"``, ``"5m"``, ``"3h"``, ``"60d"``: seconds, never negative."""
    if isinstance(raw, bool):
        raise _fail(path, "expected a duration such as 300s, 5m, 3h or 60d")
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw) or raw < 0:
            raise _fail(path, "must be a finite, non-negative number of seconds")
        return float(raw)
    match = _DURATION.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise _fail(path, "expected a duration such as 300s, 5m, 3h or 60d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _number(raw: Any, path: str, low: float | None = None) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise _fail(path, "must be a finite number")
    if low is not None and raw < low:
        raise _fail(path, f"must be >= {low}")
    return float(raw)


def _count(raw: Any, path: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise _fail(path, "must be an integer >= 1")
    return raw


def _section(doc: dict[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    raw = doc.get(key) or {}
    if not isinstance(raw, dict):
        raise _fail(key, "must be a mapping")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(key, f"unknown keys {unknown}; expected some of {sorted(allowed)}")
    return raw


def _optional(section: dict[str, Any], key: str, path: str, low: float | None = None) -> float | None:
    return None if section.get(key) is None else _number(section[key], f"{path}.{key}", low)


def _leaf_from_text(text: str, path: str) -> Gate:
    match = _COMPARISON.match(text)
    if match is None:
        raise _fail(path, f"{text!r} is not 'metric >=|<=|>|< number'")
    return Gate(metric=match.group(1), op=match.group(2), value=float(match.group(3)))


def _leaves_from_mapping(raw: dict[str, Any], path: str) -> list[Gate]:
    unknown = sorted(set(raw) - {"metric", "min", "max"})
    if unknown or not isinstance(raw.get("metric"), str) or not raw["metric"]:
        raise _fail(path, "a threshold is {metric, min?, max?}, or a single 'and'/'or' list")
    bounds = [(op, raw[key]) for key, op in (("min", ">="), ("max", "<=")) if raw.get(key) is not None]
    if not bounds:
        raise _fail(path, "a threshold needs min or max")
    return [Gate(raw["metric"], op, _number(value, path)) for op, value in bounds]


def parse_gates(raw: Any, path: str = "gates", depth: int = 0) -> GateGroup:
    """``{and|or: [item, ...]}`` where an item is a group, ``"metric >= 1.0"`` or ``{metric, min, max}``."""
    if depth >= MAX_GATE_DEPTH:
        raise _fail(path, f"nested deeper than {MAX_GATE_DEPTH}")
    if isinstance(raw, list):
        raw = {"and": raw}
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in ("and", "or"):
        raise _fail(path, "expected {and: [...]} or {or: [...]}")
    mode, items = next(iter(raw.items()))
    if not isinstance(items, list) or not items:
        raise _fail(f"{path}.{mode}", "must be a non-empty list")
    parsed: list[Gate | GateGroup] = []
    for i, item in enumerate(items):
        parsed += _gate_item(item, f"{path}.{mode}[{i}]", depth)
    return GateGroup(mode=mode, items=tuple(parsed))


def _gate_item(item: Any, path: str, depth: int) -> list[Gate | GateGroup]:
    if isinstance(item, str):
        return [_leaf_from_text(item, path)]
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in ("and", "or"):
        return [parse_gates(item, path, depth + 1)]
    if isinstance(item, dict):
        return list(_leaves_from_mapping(item, path))
    raise _fail(path, "expected a threshold or a nested group")


def _modes(doc: dict[str, Any]) -> tuple[str, str]:
    promote, demote = doc.get("promote_to", "live"), doc.get("demote_to", "compute-only")
    if promote not in PROMOTE_MODES:
        raise _fail("promote_to", f"expected one of {list(PROMOTE_MODES)}")
    if demote not in DEMOTE_MODES or demote == promote:
        raise _fail("demote_to", f"expected one of {list(DEMOTE_MODES)}, other than promote_to")
    return promote, demote


def _score(doc: dict[str, Any]) -> tuple[dict[str, float], float | None]:
    section = _section(doc, "score", {"weights", "min"})
    weights = section.get("weights") or {}
    if not isinstance(weights, dict) or any(not isinstance(k, str) or not k for k in weights):
        raise _fail("score.weights", "must map metric names to numbers")
    parsed = {name: _number(w, f"score.weights.{name}") for name, w in weights.items()}
    score_min = _optional(section, "min", "score")
    if score_min is not None and not parsed:
        raise _fail("score.min", "needs score.weights")
    return parsed, score_min


def _constraints(doc: dict[str, Any]) -> dict[str, Any]:
    section = _section(doc, "constraints", {"correlation", "exposure"})
    correlation = _section(section, "correlation", {"max_pairwise"})
    exposure = _section(section, "exposure", {"metric", "max_gross"})
    max_pairwise = _optional(correlation, "max_pairwise", "constraints.correlation", 0.0)
    if max_pairwise is not None and max_pairwise > 1:
        raise _fail("constraints.correlation.max_pairwise", "must be within [0, 1]")
    metric = exposure.get("metric", "gross_exposure")
    if not isinstance(metric, str) or not metric:
        raise _fail("constraints.exposure.metric", "must be a metric name")
    return {"max_pairwise_correlation": max_pairwise, "exposure_metric": metric,
            "max_gross_exposure": _optional(exposure, "max_gross", "constraints.exposure", 0.0)}


def _hysteresis(doc: dict[str, Any]) -> dict[str, Any]:
    section = _section(doc, "hysteresis", {"promote_after", "demote_after", "min_dwell"})
    return {"promote_after": _count(section.get("promote_after", 1), "hysteresis.promote_after"),
            "demote_after": _count(section.get("demote_after", 1), "hysteresis.demote_after"),
            "min_dwell_s": parse_duration(section.get("min_dwell", 0), "hysteresis.min_dwell")}


_TOP_LEVEL = {"promote_to", "demote_to", "ttl", "data_currency", "sample", "gates", "score", "constraints",
              "hysteresis"}


def parse_rules(doc: Any) -> DecisionRules:
    """Refuses (``UNPROCESSABLE``) naming the first offending key."""
    if not isinstance(doc, dict):
        raise unprocessable("invalid policy: decision must be a mapping")
    unknown = sorted(set(doc) - _TOP_LEVEL)
    if unknown:
        raise unprocessable(f"invalid policy: decision: unknown keys {unknown}; expected some of {sorted(_TOP_LEVEL)}")
    promote, demote = _modes(doc)
    currency = _section(doc, "data_currency", {"max_lag"})
    sample = _section(doc, "sample", {"min_days", "min_trades", "min_bars"})
    weights, score_min = _score(doc)
    ttl = parse_duration(doc.get("ttl", DEFAULT_TTL_S), "ttl")
    if ttl < 1:
        raise _fail("ttl", "must be at least 1s")
    return DecisionRules(
        promote_to=promote, demote_to=demote, ttl_s=int(ttl),
        max_lag_s=None if currency.get("max_lag") is None else parse_duration(currency["max_lag"], "data_currency.max_lag"),
        min_days=_optional(sample, "min_days", "sample", 0.0), min_trades=_optional(sample, "min_trades", "sample", 0.0),
        min_bars=_optional(sample, "min_bars", "sample", 0.0),
        gates=None if doc.get("gates") is None else parse_gates(doc["gates"]),
        score_weights=weights, score_min=score_min, **_constraints(doc), **_hysteresis(doc),
    )


def rules_of(document: dict[str, Any] | None) -> DecisionRules | None:
    """The rules of a stored (already validated) policy document; ``None`` without a decision section."""
    section = (document or {}).get("decision")
    return None if section is None else parse_rules(section)


@functools.lru_cache(maxsize=4096)
def rules_for_text(text: str) -> DecisionRules | None:
    """``rules_of`` a stored policy's canonical JSON text, memoised: every evidence post and every
    ``/decide`` needs the rules, and parsing them cost as much as a whole evaluation. Policy versions
    are immutable, so their text is a sound key."""
    return rules_of(json.loads(text))
