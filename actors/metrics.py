"""Prometheus metrics the actors own: apply runs, Gateway ACKs and live promotions (labels bounded: no run
ids; only ``promotion_fail_total`` names the world, as the operations runbook asks, and its reasons are a
closed set: the promotion gates, the default-safe rule's tokens and ``apply_failed``)."""

from __future__ import annotations

from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram

from domain.acks import ACK_ANOMALIES, AckAnomaly
from domain.timefmt import parse_iso
from messages.apply import ApplyRun

log = structlog.get_logger("worldservice.acks")
promotion_log = structlog.get_logger("worldservice.promotions")


class ActorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.apply_runs = Counter("world_apply_run_total", "Apply runs by outcome: started, success, failure, held",
                                  ["status"], registry=self.registry)
        self.apply_failures = Counter("world_apply_failure_total", "Apply runs rolled back, by the phase they were in",
                                      ["stage"], registry=self.registry)
        self.acks = Counter("world_activation_acks_total", "Sequenced activation events acknowledged by Gateways",
                            registry=self.registry)
        self.ack_wait = Histogram("world_activation_ack_wait_seconds",
                                  "From the start of a run's ACK wait to each ACK it receives", registry=self.registry,
                                  buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.gap_timeouts = Counter("world_activation_ack_gap_timeouts_total",
                                    "ACK waits that passed activation_gap_timeout_ms", registry=self.registry)
        self.resends = Counter("world_activation_resent_total", "Unacknowledged activation events sent again",
                               registry=self.registry)
        self.ack_anomalies = Counter("world_activation_ack_anomalies_total",
                                     "Gateway ACKs refused (invalid, duplicate, unknown_run, run_finished, "
                                     "unknown_sequence) or taken out of order (out_of_order)",
                                     ["reason"], registry=self.registry)
        # The runbook's name: freeze to a terminal phase, in milliseconds, by outcome (completed, rolled_back).
        self.apply_duration = Histogram("world_apply_duration_ms", "Apply runs from start to completion or rollback",
                                        ["outcome"], registry=self.registry,
                                        buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000))
        for reason in ACK_ANOMALIES:
            self.ack_anomalies.labels(reason)  # every reason shows from the start, at 0
        self.promotion_failures = Counter("promotion_fail_total",
                                          "Live promotions refused by a gate or the default-safe rule, or whose "
                                          "apply rolled back, by world and reason", ["world_id", "reason"],
                                          registry=self.registry)
        # The reference's live monitoring counters, without its world_id label (bounded labels).
        self.live_monitoring_runs = Counter("live_monitoring_run_total",
                                            "Live monitoring runs of a world by outcome: success, failure",
                                            ["status"], registry=self.registry)
        self.live_monitoring_updated = Counter("live_monitoring_run_updated_strategies_total",
                                               "Live runs given a new revision by live monitoring",
                                               registry=self.registry)
        for status in ("success", "failure"):
            self.live_monitoring_runs.labels(status)

    def ack_anomaly(self, reason: AckAnomaly, **where: Any) -> None:
        """One count and one warning line per irregular ACK, so the two never disagree. ``where`` names the
        ACK (world_id, run_id, sequence, phase) or, for an undecodable one, the error."""
        self.ack_anomalies.labels(reason).inc()
        log.warning("activation_ack_anomaly", reason=reason, **where)

    def promotion_failed(self, world_id: str, reason: str) -> None:
        self.promotion_failures.labels(world_id, reason).inc()
        promotion_log.warning("live_promotion_failed", world_id=world_id, reason=reason)

    def observe_run(self, before: ApplyRun | None, after: ApplyRun) -> None:
        """Count what changed between two committed versions of a run."""
        if before is None:
            self.apply_runs.labels("started").inc()
            before = after if after.is_open else None
        if before is None:
            return
        if after.phase == "completed" and before.phase != "completed":
            self.apply_runs.labels("success").inc()
            self._observe_duration(after)
        if after.phase == "rolled_back" and before.phase != "rolled_back":
            self.apply_runs.labels("failure").inc()
            self.apply_failures.labels(before.phase).inc()
            self._observe_duration(after)
        if after.held and not before.held:
            self.apply_runs.labels("held").inc()
            self.gap_timeouts.inc()
        self._observe_events(before, after)

    def _observe_duration(self, run: ApplyRun) -> None:
        elapsed = parse_iso(run.updated_at) - parse_iso(run.started_at)
        self.apply_duration.labels(run.phase).observe(elapsed.total_seconds() * 1000)

    def _observe_events(self, before: ApplyRun, after: ApplyRun) -> None:
        if after.resends > before.resends:
            self.resends.inc(sum(not e.acked for e in after.events))

    def observe_live_monitoring(self, status: int, updated: int) -> None:
        """One world's monitoring run as answered: a 2xx succeeded (``updated`` runs revised), a 5xx failed;
        a refused request (an unknown world, a missing role) ran nothing and is not counted."""
        if status < 300:
            self.live_monitoring_runs.labels("success").inc()
            self.live_monitoring_updated.inc(updated)
        elif status >= 500:
            self.live_monitoring_runs.labels("failure").inc()
