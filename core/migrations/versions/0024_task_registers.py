"""task registers: the register entries inside the warning area handed to a step's task when it is assigned

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-12 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0024'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('department_task') as batch:
        batch.add_column(sa.Column('registers', sa.JSON(), nullable=True))


def downgrade() -> None:
    # Not a batch (which on SQLite copies the table and drops the old one, refused while other tables' rows point
    # at its tasks): both SQLite (3.35+) and PostgreSQL drop a plain column in place.
    op.execute('ALTER TABLE department_task DROP COLUMN registers')
