"""incident claim index on (status, created_at): a lease renewal then changes no indexed column, so that PostgreSQL
rewrites each renewed row in place (a heap-only update) instead of adding an entry to every index of the table

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-04 19:10:00
"""
from collections.abc import Sequence

from alembic import op


revision: str = '0032'
down_revision: str | None = '0031'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incident') as batch:
        batch.drop_index('ix_incident_claim')
        batch.create_index('ix_incident_claim', ['status', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('incident') as batch:
        batch.drop_index('ix_incident_claim')
        batch.create_index('ix_incident_claim', ['status', 'lease_expires_at'], unique=False)
