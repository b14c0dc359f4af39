"""reserve counted quantity: the stock count (盘点) a reserve's last import gave, so that importing the same file
again leaves the draw-downs since then in place

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 01:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0026'
down_revision: str | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('register_reserve') as batch:
        batch.add_column(sa.Column('counted_quantity', sa.Integer(), nullable=True))
    # What is in stock now is the best count there is for reserves imported before this column.
    op.execute("UPDATE register_reserve SET counted_quantity = quantity")


def downgrade() -> None:
    with op.batch_alter_table('register_reserve') as batch:
        batch.drop_column('counted_quantity')
