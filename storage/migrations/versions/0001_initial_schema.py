"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('activations',
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('strategy_id', sa.String(length=256), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('entry', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('world_id', 'strategy_id', 'side')
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('event', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=256), nullable=True),
    sa.Column('correlation_id', sa.String(length=256), nullable=True),
    sa.Column('request', sa.JSON(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_world_id_id', ['world_id', 'id'], unique=False)

    op.create_table('bindings',
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('strategy_id', sa.String(length=256), nullable=False),
    sa.PrimaryKeyConstraint('world_id', 'strategy_id')
    )
    op.create_table('decisions',
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('strategies', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('world_id')
    )
    op.create_table('history_metadata',
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('strategy_id', sa.String(length=256), nullable=False),
    sa.Column('entry', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('world_id', 'strategy_id')
    )
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('topic', sa.String(length=128), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('sent_at', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_pending', ['sent_at', 'id'], unique=False)

    op.create_table('policies',
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('checksum', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=256), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('preset', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('world_id', 'version')
    )
    op.create_table('world_versions',
    sa.Column('world_id', sa.String(length=128), nullable=False),
    sa.Column('row_version', sa.BigInteger(), nullable=False),
    sa.Column('activation_counter', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('world_id')
    )
    op.create_table('worlds',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('record', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('allow_live', sa.Boolean(), nullable=False),
    sa.Column('default_policy_version', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.String(length=32), nullable=False),
    sa.Column('updated_at', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('worlds')
    op.drop_table('world_versions')
    op.drop_table('policies')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')

    op.drop_table('outbox')
    op.drop_table('history_metadata')
    op.drop_table('decisions')
    op.drop_table('bindings')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_world_id_id')

    op.drop_table('audit_log')
    op.drop_table('activations')
