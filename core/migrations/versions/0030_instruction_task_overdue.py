"""instruction tasks flagged overdue: when the periodic sweep found a department's part of a leader's instruction
past its time limit and told the office (once)

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-03 13:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0030'
down_revision: str | None = '0029'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('instruction_task') as batch:
        batch.add_column(sa.Column('overdue_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('instruction_task') as batch:
        batch.drop_column('overdue_at')
