"""shelter counted occupancy: the occupancy a shelter's last imported file gave, so that importing the same file
again leaves the count reported live since then (人数上报) in place

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-03 13:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0031'
down_revision: str | None = '0030'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('register_shelter') as batch:
        batch.add_column(sa.Column('counted_occupancy', sa.Integer(), nullable=True))
    # A shelter never reported live holds its file's figure. One reported live keeps no trace of the figure its file
    # gave: it stays unknown, and the next import keeps the live report (core/registers/importing.py).
    op.execute("UPDATE register_shelter SET counted_occupancy = occupancy WHERE occupancy_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('register_shelter') as batch:
        batch.drop_column('counted_occupancy')
