"""abuse limits: signal sources' rate buckets, held signals, login locks per (account, address)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('signal_source', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tokens', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('tokens_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('limited_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('observed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('handled_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('handled_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True))
        batch_op.create_index('ix_signal_source_received', ['source', 'received_at'], unique=False)
    op.create_table(
        'login_lock',
        sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('locked_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('last_failed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
        sa.PrimaryKeyConstraint('user_id', 'source'),
    )


def downgrade() -> None:
    op.drop_table('login_lock')
    with op.batch_alter_table('signal', schema=None) as batch_op:
        batch_op.drop_index('ix_signal_source_received')
        batch_op.drop_column('reason')
        batch_op.drop_column('handled_at')
        batch_op.drop_column('handled_by')
        batch_op.drop_column('observed_at')
    with op.batch_alter_table('signal_source', schema=None) as batch_op:
        batch_op.drop_column('limited_since')
        batch_op.drop_column('tokens_at')
        batch_op.drop_column('tokens')
