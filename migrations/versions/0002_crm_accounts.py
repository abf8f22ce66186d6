"""CRM deals: the account a deal belongs to, and clients that enrichment finds after the deal is recorded

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# A HubSpot or Pipedrive deal arrives as ids: its client and manager are known only once the worker has asked
# the CRM, so these columns may be empty until then.
FOUND_LATER = (('client_id', sa.String(length=100)), ('client_name', sa.String(length=300)),
               ('client_email', sa.String(length=320)), ('manager_user_id', sa.String(length=36)))


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        # '' for the generic webhook, which has no account: NULLs would never be equal in the unique key.
        batch_op.add_column(sa.Column('account_id', sa.String(length=100), nullable=False, server_default=''))
        batch_op.drop_constraint('uq_onboardings_source_deal', type_='unique')
        batch_op.create_unique_constraint('uq_onboardings_source_account_deal', ['source', 'account_id', 'deal_id'])
        for name, kind in FOUND_LATER:
            batch_op.alter_column(name, existing_type=kind, nullable=True)


def downgrade() -> None:
    """Revert this revision (fails while CRM deals without a client are stored)."""
    with op.batch_alter_table('onboardings', schema=None) as batch_op:
        for name, kind in FOUND_LATER:
            batch_op.alter_column(name, existing_type=kind, nullable=False)
        batch_op.drop_constraint('uq_onboardings_source_account_deal', type_='unique')
        batch_op.create_unique_constraint('uq_onboardings_source_deal', ['source', 'deal_id'])
        batch_op.drop_column('account_id')
