"""content hash of each remembered command, so a reused command id with other content is refused

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows remembered before this revision have no hash and keep answering with their reply.
    with op.batch_alter_table("processed_commands") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_commands") as batch:  # SQLite rebuilds the table; PostgreSQL alters it
        batch.drop_column("content_hash")
