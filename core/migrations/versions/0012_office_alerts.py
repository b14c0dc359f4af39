"""hand-backs: the office's alerts, and tasks referred to a position

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('office_alert',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('incident_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('step_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('department', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raised_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('raised_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('resolved_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('target', sqlmodel.sql.sqltypes.AutoString(length=130), nullable=True),
    sa.Column('resolution_reason', sa.Text(), nullable=True),
    sa.Column('routed_task_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['task_id'], ['department_task.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('task_id')
    )
    with op.batch_alter_table('office_alert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_office_alert_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index('ix_office_alert_open', ['resolved_at', 'incident_id'], unique=False)
    with op.batch_alter_table('department_task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('position', sqlmodel.sql.sqltypes.AutoString(length=130), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('department_task', schema=None) as batch_op:
        batch_op.drop_column('position')
    with op.batch_alter_table('office_alert', schema=None) as batch_op:
        batch_op.drop_index('ix_office_alert_open')
        batch_op.drop_index(batch_op.f('ix_office_alert_incident_id'))
    op.drop_table('office_alert')
