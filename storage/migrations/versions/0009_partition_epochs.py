"""partition owner epochs (cluster mode fencing) and their history

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "partition_epochs",
        sa.Column("partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("taken_at", sa.String(length=40), nullable=False),
    )
    op.create_table(
        "partition_epoch_history",
        sa.Column("partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("epoch", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("taken_at", sa.String(length=40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("partition_epoch_history")
    op.drop_table("partition_epochs")
