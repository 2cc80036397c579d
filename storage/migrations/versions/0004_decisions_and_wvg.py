"""decision state and history; World View Graph nodes and the validation cache

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "world_decisions",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("world_id"),
    )
    op.create_table(
        "decision_history",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("evaluated_at", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_decision_history_world_id_id", "decision_history", ["world_id", "id"])
    op.create_table(
        "world_nodes",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=256), nullable=False),
        sa.Column("execution_domain", sa.String(length=16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("world_id", "node_id", "execution_domain"),
    )
    op.create_table(
        "validation_cache",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=256), nullable=False),
        sa.Column("execution_domain", sa.String(length=16), nullable=False),
        sa.Column("eval_key", sa.String(length=80), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("world_id", "node_id", "execution_domain"),
    )
    op.create_index("ix_validation_cache_eval_key", "validation_cache", ["eval_key"])
    # Edge overrides name GSG nodes too (``blake3:<64 hex>`` is 71 characters), not only ``domain:<d>``.
    _edge_id_length(256)


def _edge_id_length(length: int) -> None:
    with op.batch_alter_table("edge_overrides") as batch:  # SQLite rebuilds the table; PostgreSQL alters it
        for column in ("src", "dst"):
            batch.alter_column(column, type_=sa.String(length=length), existing_nullable=False)


def downgrade() -> None:
    _edge_id_length(64)
    op.drop_index("ix_validation_cache_eval_key", table_name="validation_cache")
    op.drop_table("validation_cache")
    op.drop_table("world_nodes")
    op.drop_index("ix_decision_history_world_id_id", table_name="decision_history")
    op.drop_table("decision_history")
    op.drop_table("world_decisions")
