"""The relational schema: one dialect-neutral SQLAlchemy Core metadata for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# BIGINT autoincrement on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Fencing and never-reused counters. Kept when a world is deleted, so etags of a re-created world
# continue instead of repeating.
world_versions = sa.Table(
    "world_versions", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("row_version", sa.BigInteger, nullable=False),
    sa.Column("activation_counter", sa.BigInteger, nullable=False),
)

worlds = sa.Table(
    "worlds", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("allow_live", sa.Boolean, nullable=False),
    sa.Column("default_policy_version", sa.Integer, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

policies = sa.Table(
    "policies", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("document", sa.JSON, nullable=False),
    sa.Column("checksum", sa.String(80), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(256), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("preset", sa.JSON, nullable=True),
)

bindings = sa.Table(
    "bindings", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("strategy_id", sa.String(256), primary_key=True),
)

decisions = sa.Table(
    "decisions", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("strategies", sa.JSON, nullable=False),
)

activations = sa.Table(
    "activations", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("strategy_id", sa.String(256), primary_key=True),
    sa.Column("side", sa.String(8), primary_key=True),
    sa.Column("entry", sa.JSON, nullable=False),
)

history = sa.Table(
    "history_metadata", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("strategy_id", sa.String(256), primary_key=True),
    sa.Column("entry", sa.JSON, nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("world_id", sa.String(128), nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(256), nullable=True),
    sa.Column("correlation_id", sa.String(256), nullable=True),
    sa.Column("request", sa.JSON, nullable=True),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_audit_log_world_id_id", "world_id", "id"),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("world_id", sa.String(128), nullable=False),
    sa.Column("topic", sa.String(128), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("sent_at", sa.String(32), nullable=True),
    sa.Index("ix_outbox_pending", "sent_at", "id"),
)

# Every apply run, kept forever: a run id is idempotent at any age, across restarts and re-creation.
apply_runs = sa.Table(
    "apply_runs", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(256), primary_key=True),
    sa.Column("plan_hash", sa.String(80), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Index("ix_apply_runs_phase", "phase"),
)

# Gateway ACKs, one row each: recording an ACK never rewrites the (large) run record.
apply_acks = sa.Table(
    "apply_acks", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("run_id", sa.String(256), primary_key=True),
    sa.Column("sequence", sa.Integer, primary_key=True),
    sa.Column("phase", sa.String(16), primary_key=True),
    sa.Column("acked_at", sa.String(40), nullable=False),
)

edge_overrides = sa.Table(
    "edge_overrides", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("src", sa.String(256), primary_key=True),  # node ids, as world_nodes.node_id (0004)
    sa.Column("dst", sa.String(256), primary_key=True),
    sa.Column("record", sa.JSON, nullable=False),
)

# Command ids already applied (Kafka redelivery, client retries), with the reply that was given and a hash
# of the command's content (NULL on rows from before 0005), so a reused id with other content is refused.
# ``outcome`` names what happened (storage.remembered); rows from before 0007 hold an HTTP ``status`` instead.
processed_commands = sa.Table(
    "processed_commands", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("command_id", sa.String(256), primary_key=True),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("reply", sa.JSON, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("content_hash", sa.String(80), nullable=True),
    sa.Column("outcome", sa.String(32), nullable=True),
)

# Allocation runs (POST /allocations), idempotent by run_id; and each world's latest allocation.
allocation_runs = sa.Table(
    "allocation_runs", metadata,
    sa.Column("run_id", sa.String(256), primary_key=True),
    sa.Column("etag", sa.String(80), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Column("executed", sa.Boolean, nullable=False),
    sa.Column("execution_response", sa.JSON, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
)

world_allocations = sa.Table(
    "world_allocations", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("record", sa.JSON, nullable=False),
)

# The decision engine's persisted state per world (hysteresis streaks, current mode, transitions), so a
# restart or another instance continues where the last evaluation left off; and every evaluation, kept.
world_decisions = sa.Table(
    "world_decisions", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("record", sa.JSON, nullable=False),
)

decision_history = sa.Table(
    "decision_history", metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("world_id", sa.String(128), nullable=False),
    sa.Column("evaluated_at", sa.String(40), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Index("ix_decision_history_world_id_id", "world_id", "id"),
)

# World View Graph: per-world node references, scoped by execution domain.
world_nodes = sa.Table(
    "world_nodes", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("node_id", sa.String(256), primary_key=True),
    sa.Column("execution_domain", sa.String(16), primary_key=True),
    sa.Column("record", sa.JSON, nullable=False),
)

# Validation cache: one entry per (world, node, domain); its eval_key names the context it was made in,
# and a lookup under another context evicts it.
validation_cache = sa.Table(
    "validation_cache", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("node_id", sa.String(256), primary_key=True),
    sa.Column("execution_domain", sa.String(16), primary_key=True),
    sa.Column("eval_key", sa.String(80), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Index("ix_validation_cache_eval_key", "eval_key"),
)

# Evaluation runs, one row per revision (append-only): the newest revision is the run, all of them its
# history. Generated run ids embed the strategy id, hence the wider column.
evaluation_runs = sa.Table(
    "evaluation_runs", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("strategy_id", sa.String(256), primary_key=True),
    sa.Column("run_id", sa.String(512), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
)

# Risk Hub snapshots, one row per accepted (world, version), never rewritten. ``order_key`` sorts by
# (as_of, created_at) in UTC: what "latest" means. Large parts live in ``risk_blobs`` by content address.
risk_snapshots = sa.Table(
    "risk_snapshots", metadata,
    sa.Column("world_id", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(256), primary_key=True),
    sa.Column("order_key", sa.String(80), nullable=False),
    sa.Column("hash", sa.String(80), nullable=False),
    sa.Column("stage", sa.String(64), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("record", sa.JSON, nullable=False),
    sa.Index("ix_risk_snapshots_world_order", "world_id", "order_key"),
)

risk_blobs = sa.Table(
    "risk_blobs", metadata,
    sa.Column("ref", sa.String(128), primary_key=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

# Cluster mode: the owner epoch of each partition of the commands topic. Taking a partition bumps its
# epoch (and names the taker's advertise URL); a world's writes commit only under its partition's current
# epoch, so a paused or partitioned former owner is refused by the database. Never cleared.
partition_epochs = sa.Table(
    "partition_epochs", metadata,
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("taken_at", sa.String(40), nullable=False),
)

# Every epoch ever taken, appended in the taking transaction: who owned which partition from when (what
# shows that no world had two owners at once).
partition_epoch_history = sa.Table(
    "partition_epoch_history", metadata,
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("epoch", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("taken_at", sa.String(40), nullable=False),
)

# Tables holding a world's current state: cleared when the world is deleted (audit and counters stay).
WORLD_STATE_TABLES = {
    worlds: worlds.c.id, policies: policies.c.world_id, bindings: bindings.c.world_id,
    decisions: decisions.c.world_id, activations: activations.c.world_id, history: history.c.world_id,
    edge_overrides: edge_overrides.c.world_id, world_decisions: world_decisions.c.world_id,
    world_nodes: world_nodes.c.world_id, validation_cache: validation_cache.c.world_id,
    evaluation_runs: evaluation_runs.c.world_id, risk_snapshots: risk_snapshots.c.world_id,
}
