"""The worker registry: live workers, their heartbeats, and what a new worker on the same host takes over

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('workers',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('host', sa.String(length=100), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
    sa.Column('running', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workers_host'), ['host'], unique=False)
    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_onboardings_claimed_by'), ['claimed_by'], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_onboardings_claimed_by'))
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workers_host'))
    op.drop_table('workers')
