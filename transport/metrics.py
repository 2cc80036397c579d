"""Prometheus metrics of the HTTP edge, with bounded labels (command kind and status class only)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class EdgeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.commands = Counter("worldservice_commands_total", "Commands answered, by kind and status class",
                                ["kind", "status"], registry=self.registry)
        self.latency = Histogram("worldservice_command_seconds", "Command latency at the edge, by kind",
                                 ["kind"], registry=self.registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
        # The runbook's decide latency (its p95 is ``histogram_quantile(0.95, …)`` over this), in milliseconds.
        self.decide_latency = Histogram("world_decide_latency_ms", "GET /decide answered at the edge",
                                        registry=self.registry,
                                        buckets=(0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 5000))
        self.resident_worlds = Gauge("worldservice_resident_world_actors", "World actors currently resident",
                                     registry=self.registry)
        self.outbox_pending = Gauge("worldservice_outbox_pending", "Outbox rows not yet relayed",
                                    registry=self.registry)
        self.projection_dirty = Gauge("worldservice_activation_projection_dirty_worlds",
                                      "Worlds whose activation projection write failed and awaits repair",
                                      registry=self.registry)
        self.projection_degraded = Gauge("worldservice_projection_degraded",
                                         "1 while the activation projection (Redis) cannot be written or read; "
                                         "commands are served from SQL and it is rebuilt when Redis returns",
                                         registry=self.registry)
        self.mailbox_depth = Gauge("worldservice_actor_mailbox_depth",
                                   "Messages waiting in the daemon-wide actors' mailboxes (worlds: summed)",
                                   ["actor"], registry=self.registry)

        self.snapshots = Counter("world_allocation_snapshot_total", "Allocation snapshots served",
                                 registry=self.registry)
        self.stale_snapshots = Counter("world_allocation_snapshot_stale_total", "Stale allocation snapshots served",
                                       registry=self.registry)
        # Domain isolation (spec: ``cross_context_cache_hit_total``, target 0): a validation-cache hit whose
        # entry was made under another EvalKey than the lookup's context. The actor evicts on a mismatch, so
        # this stays 0 unless that rule breaks; it is counted here, where the answer leaves the daemon.
        self.cache_lookups = Counter("world_validation_cache_lookups_total", "Validation cache lookups by result",
                                     ["result"], registry=self.registry)
        for result in ("hit", "miss"):
            self.cache_lookups.labels(result)
        self.cross_context_hits = Counter("cross_context_cache_hit_total",
                                          "Validation cache hits made under another context than the lookup's",
                                          registry=self.registry)
        self._served = self._stale = 0  # the counters' totals, for the ratio
        self.stale_ratio = Gauge("world_allocation_snapshot_stale_ratio", "Stale share of the snapshots served",
                                 registry=self.registry)

    def observe_snapshots(self, served: int, stale: int) -> None:
        self.snapshots.inc(served)
        self.stale_snapshots.inc(stale)
        self._served += served
        self._stale += stale
        self.stale_ratio.set(self._stale / self._served if self._served else 0.0)

    def observe_cache_lookup(self, hit_key: str | None, expected_key: str) -> None:
        self.cache_lookups.labels("hit" if hit_key else "miss").inc()
        if hit_key and hit_key != expected_key:
            self.cross_context_hits.inc()

    def observe(self, kind: str, status: int, seconds: float) -> None:
        self.commands.labels(kind, f"{status // 100}xx").inc()
        self.latency.labels(kind).observe(seconds)
        if kind == "Decide":
            self.decide_latency.observe(seconds * 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
