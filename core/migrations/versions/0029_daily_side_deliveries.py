"""deliveries of the daily side: a message to a department system may belong to no incident (prevention tasks)

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-03 06:20:00
"""
from collections.abc import Sequence

import sqlmodel
from alembic import op


revision: str = '0029'
down_revision: str | None = '0028'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbound_delivery') as batch:
        batch.alter_column('incident_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True)


def downgrade() -> None:
    # The daily side's messages have no incident to keep them: they go with the column's NOT NULL.
    op.execute("DELETE FROM delivery_attempt WHERE delivery_id IN "
               "(SELECT id FROM outbound_delivery WHERE incident_id IS NULL)")
    op.execute("DELETE FROM outbound_delivery WHERE incident_id IS NULL")
    with op.batch_alter_table('outbound_delivery') as batch:
        batch.alter_column('incident_id', existing_type=sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False)
