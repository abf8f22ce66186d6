"""The operator console: an audit of operators' actions, purgeable payloads, the room id on the onboarding

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table('audit_entries',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=50), nullable=False),
    sa.Column('onboarding_id', sa.String(length=32), nullable=True),
    sa.Column('event_id', sa.String(length=32), nullable=True),
    sa.Column('outcome', sa.String(length=50), nullable=False),
    sa.Column('details', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entries_onboarding_id'), ['onboarding_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entries_event_id'), ['event_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entries_at'), ['at'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('body', existing_type=sa.LargeBinary(), nullable=True)
        batch_op.add_column(sa.Column('body_purged_at', sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_events_received_at'), ['received_at'], unique=False)

    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('room_id', sa.String(length=20), nullable=True))
        batch_op.create_index(batch_op.f('ix_onboardings_room_id'), ['room_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_onboardings_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_onboardings_deal_id'), ['deal_id'], unique=False)


def downgrade() -> None:
    """Revert this revision (purged payloads stay empty)."""
    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_onboardings_deal_id'))
        batch_op.drop_index(batch_op.f('ix_onboardings_created_at'))
        batch_op.drop_index(batch_op.f('ix_onboardings_room_id'))
        batch_op.drop_column('room_id')

    op.execute("UPDATE events SET body = '' WHERE body IS NULL")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_received_at'))
        batch_op.drop_column('body_purged_at')
        batch_op.alter_column('body', existing_type=sa.LargeBinary(), nullable=False)

    with op.batch_alter_table('audit_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entries_at'))
        batch_op.drop_index(batch_op.f('ix_audit_entries_event_id'))
        batch_op.drop_index(batch_op.f('ix_audit_entries_onboarding_id'))
    op.drop_table('audit_entries')
