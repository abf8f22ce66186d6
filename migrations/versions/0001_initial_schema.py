"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('onboardings',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('deal_id', sa.String(length=100), nullable=False),
    sa.Column('deal_title', sa.String(length=300), nullable=True),
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('client_name', sa.String(length=300), nullable=False),
    sa.Column('client_email', sa.String(length=320), nullable=False),
    sa.Column('client_user_id', sa.String(length=36), nullable=True),
    sa.Column('manager_user_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('run_at', sa.DateTime(), nullable=False),
    sa.Column('claim_token', sa.String(length=32), nullable=True),
    sa.Column('claimed_by', sa.String(length=100), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'deal_id', name='uq_onboardings_source_deal')
    )
    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_onboardings_client_id'), ['client_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_onboardings_lease_expires_at'), ['lease_expires_at'], unique=False)
        batch_op.create_index('ix_onboardings_status_run_at', ['status', 'run_at'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('last_received_at', sa.DateTime(), nullable=False),
    sa.Column('deliveries', sa.Integer(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('event_type', sa.String(length=100), nullable=True),
    sa.Column('deal_id', sa.String(length=100), nullable=True),
    sa.Column('errors', sa.JSON(), nullable=True),
    sa.Column('onboarding_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['onboarding_id'], ['onboardings.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'delivery_id', name='uq_events_source_delivery')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_deal_id'), ['deal_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_onboarding_id'), ['onboarding_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_outcome'), ['outcome'], unique=False)

    op.create_table('onboarding_steps',
    sa.Column('onboarding_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=400), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['onboarding_id'], ['onboardings.id'], ),
    sa.PrimaryKeyConstraint('onboarding_id', 'name')
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table('onboarding_steps')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_outcome'))
        batch_op.drop_index(batch_op.f('ix_events_onboarding_id'))
        batch_op.drop_index(batch_op.f('ix_events_deal_id'))

    op.drop_table('events')
    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        batch_op.drop_index('ix_onboardings_status_run_at')
        batch_op.drop_index(batch_op.f('ix_onboardings_lease_expires_at'))
        batch_op.drop_index(batch_op.f('ix_onboardings_client_id'))

    op.drop_table('onboardings')
