"""Prometheus metrics the actors own: apply runs and Gateway ACKs (labels bounded: no run or world ids)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from messages.apply import ApplyRun


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

    def observe_run(self, before: ApplyRun | None, after: ApplyRun) -> None:
        """Count what changed between two committed versions of a run."""
        if before is None:
            self.apply_runs.labels("started").inc()
            before = after if after.is_open else None
        if before is None:
            return
        if after.phase == "completed" and before.phase != "completed":
            self.apply_runs.labels("success").inc()
        if after.phase == "rolled_back" and before.phase != "rolled_back":
            self.apply_runs.labels("failure").inc()
            self.apply_failures.labels(before.phase).inc()
        if after.held and not before.held:
            self.apply_runs.labels("held").inc()
            self.gap_timeouts.inc()
        self._observe_events(before, after)

    def _observe_events(self, before: ApplyRun, after: ApplyRun) -> None:
        if after.resends > before.resends:
            self.resends.inc(sum(not e.acked for e in after.events))
