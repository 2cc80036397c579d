"""risk hub snapshots and blobs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_snapshots",
        sa.Column("world_id", sa.String(length=128), primary_key=True),
        sa.Column("version", sa.String(length=256), primary_key=True),
        sa.Column("order_key", sa.String(length=80), nullable=False),
        sa.Column("hash", sa.String(length=80), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
    )
    op.create_index("ix_risk_snapshots_world_order", "risk_snapshots", ["world_id", "order_key"])
    op.create_table(
        "risk_blobs",
        sa.Column("ref", sa.String(length=128), primary_key=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("risk_blobs")
    op.drop_index("ix_risk_snapshots_world_order", table_name="risk_snapshots")
    op.drop_table("risk_snapshots")
