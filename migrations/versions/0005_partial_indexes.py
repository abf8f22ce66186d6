"""Indexes of columns a new onboarding leaves empty (claimed_by, lease_expires_at, room_id) hold only filled rows

Every accepted deal inserts an onboarding with these three columns NULL; as full indexes, each insert also wrote
an entry to each of them, which nothing ever looks up (every query on them compares a value). As partial indexes
(WHERE column IS NOT NULL) they stay as useful and the accept path's commit writes three index pages fewer.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COLUMNS = ('claimed_by', 'lease_expires_at', 'room_id')


def upgrade() -> None:
    """Apply this revision."""
    for column in COLUMNS:
        name = f'ix_onboardings_{column}'
        op.drop_index(name, table_name='onboardings')
        filled = sa.text(f'{column} IS NOT NULL')
        op.create_index(name, 'onboardings', [column], unique=False, sqlite_where=filled, postgresql_where=filled)


def downgrade() -> None:
    """Revert this revision."""
    for column in COLUMNS:
        name = f'ix_onboardings_{column}'
        op.drop_index(name, table_name='onboardings')
        op.create_index(name, 'onboardings', [column], unique=False)
