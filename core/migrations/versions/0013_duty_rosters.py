"""duty rosters: who holds a duty position per shift and their stand-in (AB角), people away; declined tasks (退单)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('duty_absence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('starts_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('ends_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('duty_absence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duty_absence_user_id'), ['user_id'], unique=False)

    op.create_table('roster_shift',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('department', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('position', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('holder_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('stand_in_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('starts_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('ends_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('imported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('imported_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.ForeignKeyConstraint(['holder_id'], ['app_user.id'], ),
    sa.ForeignKeyConstraint(['stand_in_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('department', 'position', 'starts_at', name='uq_roster_shift')
    )
    with op.batch_alter_table('roster_shift', schema=None) as batch_op:
        batch_op.create_index('ix_roster_shift_at', ['department', 'position', 'starts_at', 'ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_roster_shift_holder_id'), ['holder_id'], unique=False)

    with op.batch_alter_table('department_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meant', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('assignee', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('decline_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))

    with op.batch_alter_table('office_alert', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason_code', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('escalated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('office_alert', schema=None) as batch_op:
        batch_op.drop_column('escalated_at')
        batch_op.drop_column('reason_code')

    with op.batch_alter_table('department_task', schema=None) as batch_op:
        batch_op.drop_column('decline_code')
        batch_op.drop_column('assignee')
        batch_op.drop_column('meant')

    with op.batch_alter_table('roster_shift', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_roster_shift_holder_id'))
        batch_op.drop_index('ix_roster_shift_at')

    op.drop_table('roster_shift')
    with op.batch_alter_table('duty_absence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_duty_absence_user_id'))

    op.drop_table('duty_absence')
