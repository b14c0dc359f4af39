"""warning release: a public warning is drafted, reviewed and signed off before it is published (审核签发)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Alerts issued before this revision were released at once: they stay `issued`.
    with op.batch_alter_table('cap_alert', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='issued'))
        batch_op.add_column(sa.Column('department', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('step_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('colour', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('content', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.add_column(sa.Column('signers', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('drafted_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('drafted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('returned_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('signed_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('signed_position', sqlmodel.sql.sqltypes.AutoString(length=130),
                                      nullable=True))
        batch_op.add_column(sa.Column('signed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_cap_alert_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cap_alert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cap_alert_state'))
        for name in ('signed_at', 'signed_position', 'signed_by', 'returned_reason', 'reviewed_at', 'reviewed_by',
                     'drafted_at', 'drafted_by', 'revision', 'signers', 'content', 'expires_at', 'colour',
                     'step_key', 'department', 'state'):
            batch_op.drop_column(name)
