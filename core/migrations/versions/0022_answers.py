"""answers: notification channels and their contacts, warnings that must be answered (叫应), position stand-ins

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-11 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notify_channel',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('for_drills', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('channel_contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('added_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('added_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['notify_channel.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel_id', 'user_id', name='uq_channel_contact')
    )
    with op.batch_alter_table('channel_contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_channel_contact_channel_id'), ['channel_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_channel_contact_user_id'), ['user_id'], unique=False)

    op.create_table('answer_call',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('incident_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('source_key', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('alert_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('step_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('colour', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('title', sa.JSON(), nullable=False),
    sa.Column('text', sa.JSON(), nullable=False),
    sa.Column('drill', sa.Boolean(), nullable=False),
    sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('limit_seconds', sa.Float(), nullable=False),
    sa.Column('response_due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('command_prompted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_key')
    )
    with op.batch_alter_table('answer_call', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_answer_call_incident_id'), ['incident_id'], unique=False)

    op.create_table('answer_request',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('call_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('incident_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('official_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('rung', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('position', sqlmodel.sql.sqltypes.AutoString(length=130), nullable=False),
    sa.Column('user_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('link_expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('channels', sa.Integer(), nullable=False),
    sa.Column('answered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('escalated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['call_id'], ['answer_call.id'], ),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['app_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('answer_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_answer_request_call_id'), ['call_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_answer_request_due_at'), ['due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_answer_request_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_answer_request_official_id'), ['official_id'], unique=False)

    with op.batch_alter_table('user_position', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stand_in_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
        batch_op.create_foreign_key('fk_user_position_stand_in_id', 'app_user', ['stand_in_id'], ['id'])



def downgrade() -> None:
    with op.batch_alter_table('user_position', schema=None) as batch_op:
        batch_op.drop_constraint('fk_user_position_stand_in_id', type_='foreignkey')
        batch_op.drop_column('stand_in_id')

    with op.batch_alter_table('answer_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_answer_request_official_id'))
        batch_op.drop_index(batch_op.f('ix_answer_request_incident_id'))
        batch_op.drop_index(batch_op.f('ix_answer_request_due_at'))
        batch_op.drop_index(batch_op.f('ix_answer_request_call_id'))

    op.drop_table('answer_request')
    with op.batch_alter_table('answer_call', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_answer_call_incident_id'))

    op.drop_table('answer_call')
    with op.batch_alter_table('channel_contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_channel_contact_user_id'))
        batch_op.drop_index(batch_op.f('ix_channel_contact_channel_id'))

    op.drop_table('channel_contact')
    op.drop_table('notify_channel')
