"""evaluation runs, one row per revision

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_runs",
        sa.Column("world_id", sa.String(length=128), primary_key=True),
        sa.Column("strategy_id", sa.String(length=256), primary_key=True),
        sa.Column("run_id", sa.String(length=512), primary_key=True),
        sa.Column("revision", sa.Integer(), primary_key=True),
        sa.Column("recorded_at", sa.String(length=40), nullable=False),
        sa.Column("record", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("evaluation_runs")
