"""allocation runs and world allocations

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "allocation_runs",
        sa.Column("run_id", sa.String(length=256), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("executed", sa.Boolean(), nullable=False),
        sa.Column("execution_response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "world_allocations",
        sa.Column("world_id", sa.String(length=128), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("world_id"),
    )


def downgrade() -> None:
    op.drop_table("world_allocations")
    op.drop_table("allocation_runs")
