"""Policy documents and the policy registry's request/response bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from messages.types import PositiveVersion


class Threshold(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    metric: str
    min: float | None = None
    max: float | None = None


class TopK(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    metric: str
    k: Annotated[int, Meta(gt=0)]


class Correlation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    max: Annotated[float, Meta(ge=-1.0, le=1.0)]


class Hysteresis(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    metric: str
    enter: float
    exit: float


class Selection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    thresholds: dict[str, Threshold] = {}
    top_k: TopK | None = None
    correlation: Correlation | None = None
    hysteresis: Hysteresis | None = None


class ValidationModes(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    on_error: Literal["fail", "warn"] = "fail"
    on_missing_metric: Literal["fail", "warn", "ignore"] = "fail"


class Policy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The canonical policy document (reference ``Policy`` model, normalised on upload).

    The selection rules are typed; the evaluation layers owned by later capabilities (cohort, portfolio,
    stress, ...) are kept as validated JSON objects until their engines exist.
    """

    thresholds: dict[str, Threshold] = {}
    top_k: TopK | None = None
    correlation: Correlation | None = None
    hysteresis: Hysteresis | None = None
    selection: Selection | None = None
    validation_profiles: dict[str, dict[str, Any]] = {}
    default_profile_by_stage: dict[str, str] = {}
    validation: ValidationModes = ValidationModes()
    cohort: dict[str, Any] | None = None
    portfolio: dict[str, Any] | None = None
    benchmark: dict[str, Any] | None = None
    stress: dict[str, Any] | None = None
    paper_shadow_consistency: dict[str, Any] | None = None
    live_monitoring: dict[str, Any] | None = None
    governance: dict[str, Any] | None = None
    campaign: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None


PresetName = Annotated[str, Meta(min_length=1, max_length=64)]


class PolicyRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of ``POST /worlds/{id}/policies``: an explicit policy (object or YAML/JSON text) or a preset."""

    policy: dict[str, Any] | str | None = None
    preset: PresetName | None = None
    preset_mode: str | None = None
    preset_version: str | None = None
    preset_overrides: dict[str, float] | None = None


class SetDefaultRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    version: PositiveVersion


class PolicyVersionRef(msgspec.Struct):
    version: int


class PolicyInfo(msgspec.Struct, kw_only=True):
    """Registry metadata of one stored policy version (``GET /worlds/{id}/policies/{v}/meta``)."""

    version: int
    checksum: str
    status: Literal["DRAFT", "ACTIVE", "DEPRECATED"]
    created_by: str | None
    created_at: str
    preset: str | None = None
    preset_mode: str | None = None
    preset_version: str | None = None
    preset_overrides: dict[str, float] | None = None
