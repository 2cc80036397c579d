"""remembered commands store what happened (a Result/Refusal name), not an HTTP status

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from storage.remembered import LEGACY_STATUS

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Older rows keep their status (read through LEGACY_STATUS); new rows leave it NULL and name the outcome.
    with op.batch_alter_table("processed_commands") as batch:
        batch.add_column(sa.Column("outcome", sa.String(length=32), nullable=True))
        batch.alter_column("status", existing_type=sa.Integer, nullable=True)


def downgrade() -> None:
    table = sa.table("processed_commands", sa.column("status", sa.Integer), sa.column("outcome", sa.String))
    numbers = sa.case({answer.value: status for status, answer in LEGACY_STATUS.items()}, value=table.c.outcome)
    op.execute(table.update().where(table.c.status.is_(None)).values(status=numbers))
    with op.batch_alter_table("processed_commands") as batch:  # SQLite rebuilds the table; PostgreSQL alters it
        batch.alter_column("status", existing_type=sa.Integer, nullable=False)
        batch.drop_column("outcome")
