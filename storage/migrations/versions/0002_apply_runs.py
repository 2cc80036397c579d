"""apply runs and their ACKs, edge overrides, processed command ids

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apply_runs",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=256), nullable=False),
        sa.Column("plan_hash", sa.String(length=80), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.String(length=40), nullable=False),
        sa.Column("updated_at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("world_id", "run_id"),
    )
    op.create_index("ix_apply_runs_phase", "apply_runs", ["phase"], unique=False)
    op.create_table(
        "apply_acks",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("run_id", sa.String(length=256), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("acked_at", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("world_id", "run_id", "sequence", "phase"),
    )
    op.create_table(
        "edge_overrides",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("src", sa.String(length=64), nullable=False),
        sa.Column("dst", sa.String(length=64), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("world_id", "src", "dst"),
    )
    op.create_table(
        "processed_commands",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("command_id", sa.String(length=256), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("world_id", "command_id"),
    )


def downgrade() -> None:
    op.drop_table("processed_commands")
    op.drop_table("edge_overrides")
    op.drop_table("apply_acks")
    op.drop_index("ix_apply_runs_phase", table_name="apply_runs")
    op.drop_table("apply_runs")
