"""Prometheus metrics of the Risk Signal Hub, its consumer and the extended-validation worker (reference
§8.1), in the actors' registry. Labels are bounded: the reference's ``world_id`` label is dropped (one
series per world is unbounded) and ``stage`` is folded onto a closed set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGES = ("backtest", "paper", "live", "shadow", "other")
OUTCOMES = ("dedupe", "expired", "processed", "failed", "retry", "dlq")
RUN_STATUSES = ("success", "failure", "scheduled", "enqueue_failed")
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def stage_label(stage: str | None) -> str:
    value = (stage or "").strip().lower()
    return value if value in STAGES else "other"


class RiskHubMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.snapshots = {outcome: Counter(f"risk_hub_snapshot_{outcome}_total",
                                           f"Risk Hub snapshots {outcome} (HTTP push and ControlBus consumer)",
                                           ["stage"], registry=r) for outcome in OUTCOMES}
        self.processing = Histogram("risk_hub_snapshot_processing_latency_seconds",
                                    "Consumer: one risk_snapshot_updated event, received to done",
                                    ["stage"], registry=r, buckets=_LATENCY)
        self.events = {outcome: Counter(f"validation_event_{outcome}_total",
                                        f"Validation events {outcome} by the extended-validation worker "
                                        "(event_type: the event that scheduled the run)",
                                        ["event_type", "stage"], registry=r) for outcome in OUTCOMES}
        self.event_latency = Histogram("validation_event_processing_latency_seconds",
                                       "Extended-validation worker: one event, received to done",
                                       ["event_type", "stage"], registry=r, buckets=_LATENCY)
        self.runs = Counter("extended_validation_run_total", "Extended validation of a world's runs, by outcome",
                            ["stage", "status"], registry=r)
        self.run_latency = Histogram("extended_validation_run_latency_seconds",
                                     "Extended validation of one world: snapshot read to runs recorded",
                                     ["stage"], registry=r, buckets=_LATENCY)
        self.lag = Gauge("risk_hub_snapshot_lag_seconds",
                         "Age (now - as_of) of the latest snapshot the worker validated against", registry=r)
        self.missing = Counter("risk_hub_snapshot_missing_total",
                               "Extended validations that found no fresh snapshot for their world", registry=r)
        for stage in STAGES:
            for counter in self.snapshots.values():
                counter.labels(stage)
            for status in RUN_STATUSES:
                self.runs.labels(stage, status)

    def snapshot(self, outcome: str, stage: str | None) -> None:
        self.snapshots[outcome].labels(stage_label(stage)).inc()

    def event(self, outcome: str, event_type: str, stage: str | None) -> None:
        self.events[outcome].labels(event_type, stage_label(stage)).inc()

    def run(self, status: str, stage: str | None) -> None:
        self.runs.labels(stage_label(stage), status).inc()
