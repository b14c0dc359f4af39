"""duty desk: event record sheets (事件记录单) and the desk's append-only chain, duty logs, leaders' instructions

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-12 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime

# The desk's chain is append-only, as the incidents' ledger is.
SQLITE = [
    """CREATE TRIGGER desk_ledger_entry_no_update BEFORE UPDATE ON desk_ledger_entry
       BEGIN SELECT RAISE(ABORT, 'desk_ledger_entry is append-only'); END""",
    """CREATE TRIGGER desk_ledger_entry_no_delete BEFORE DELETE ON desk_ledger_entry
       BEGIN SELECT RAISE(ABORT, 'desk_ledger_entry is append-only'); END""",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION desk_ledger_entry_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'desk_ledger_entry is append-only'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER desk_ledger_entry_no_change BEFORE UPDATE OR DELETE ON desk_ledger_entry
       FOR EACH ROW EXECUTE FUNCTION desk_ledger_entry_append_only()""",
    """CREATE TRIGGER desk_ledger_entry_no_truncate BEFORE TRUNCATE ON desk_ledger_entry
       FOR EACH STATEMENT EXECUTE FUNCTION desk_ledger_entry_append_only()""",
]


def upgrade() -> None:
    op.create_table('desk_ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', T(), nullable=False),
    sa.Column('kind', S(length=32), nullable=False),
    sa.Column('actor', S(length=100), nullable=False),
    sa.Column('subject', S(length=80), nullable=False),
    sa.Column('digest', S(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', S(length=200), nullable=False),
    sa.Column('prev_hash', S(length=64), nullable=False),
    sa.Column('hash', S(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('seq')
    )
    with op.batch_alter_table('desk_ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_desk_ledger_entry_subject'), ['subject'], unique=False)
    op.create_table('desk_ledger_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', S(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('event_sheet',
    sa.Column('id', S(length=36), nullable=False),
    sa.Column('number', S(length=32), nullable=False),
    sa.Column('source', S(length=16), nullable=False),
    sa.Column('caller', S(length=100), nullable=False),
    sa.Column('callback', S(length=32), nullable=False),
    sa.Column('place', S(length=200), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('occurred_at', T(), nullable=False),
    sa.Column('what', sa.Text(), nullable=False),
    sa.Column('dead', sa.Integer(), nullable=False),
    sa.Column('injured', sa.Integer(), nullable=False),
    sa.Column('missing', sa.Integer(), nullable=False),
    sa.Column('trapped', sa.Integer(), nullable=False),
    sa.Column('recorded_by', S(length=100), nullable=False),
    sa.Column('recorded_at', T(), nullable=False),
    sa.Column('submitted_at', T(), nullable=False),
    sa.Column('status', S(length=16), nullable=False),
    sa.Column('returned_reason', sa.Text(), nullable=True),
    sa.Column('reviewed_by', S(length=100), nullable=True),
    sa.Column('reviewed_at', T(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('incident_id', S(length=36), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('event_sheet', schema=None) as batch_op:
        batch_op.create_index('ix_event_sheet_status', ['status', 'submitted_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_event_sheet_incident_id'), ['incident_id'], unique=False)
    op.create_table('duty_log',
    sa.Column('id', S(length=36), nullable=False),
    sa.Column('officer', S(length=64), nullable=False),
    sa.Column('started_at', T(), nullable=False),
    sa.Column('started_by', S(length=100), nullable=False),
    sa.Column('ended_at', T(), nullable=True),
    sa.Column('incoming', S(length=64), nullable=True),
    sa.Column('handover_note', sa.Text(), nullable=True),
    sa.Column('next_log_id', S(length=36), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('duty_log_note',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('log_id', S(length=36), nullable=False),
    sa.Column('at', T(), nullable=False),
    sa.Column('author', S(length=100), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['log_id'], ['duty_log.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('duty_log_note', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_duty_log_note_log_id'), ['log_id'], unique=False)
    op.create_table('instruction',
    sa.Column('id', S(length=36), nullable=False),
    sa.Column('incident_id', S(length=36), nullable=False),
    sa.Column('leader', S(length=100), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('recorded_by', S(length=100), nullable=False),
    sa.Column('recorded_at', T(), nullable=False),
    sa.Column('due_at', T(), nullable=True),
    sa.Column('status', S(length=16), nullable=False),
    sa.Column('closed_at', T(), nullable=True),
    sa.Column('closed_by', S(length=100), nullable=True),
    sa.Column('closing_note', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('instruction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instruction_incident_id'), ['incident_id'], unique=False)
    op.create_table('instruction_task',
    sa.Column('id', S(length=36), nullable=False),
    sa.Column('instruction_id', S(length=36), nullable=False),
    sa.Column('incident_id', S(length=36), nullable=False),
    sa.Column('department', S(length=64), nullable=False),
    sa.Column('status', S(length=16), nullable=False),
    sa.Column('created_at', T(), nullable=False),
    sa.Column('due_at', T(), nullable=True),
    sa.Column('done_at', T(), nullable=True),
    sa.Column('done_by', S(length=100), nullable=True),
    sa.Column('reply', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['instruction_id'], ['instruction.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('instruction_id', 'department', name='uq_instruction_department')
    )
    with op.batch_alter_table('instruction_task', schema=None) as batch_op:
        batch_op.create_index('ix_instruction_task_inbox', ['department', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_instruction_task_instruction_id'), ['instruction_id'], unique=False)
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS desk_ledger_entry_no_change ON desk_ledger_entry")
        op.execute("DROP TRIGGER IF EXISTS desk_ledger_entry_no_truncate ON desk_ledger_entry")
        op.execute("DROP FUNCTION IF EXISTS desk_ledger_entry_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS desk_ledger_entry_no_update")
        op.execute("DROP TRIGGER IF EXISTS desk_ledger_entry_no_delete")
    for index, table in (('ix_instruction_task_instruction_id', 'instruction_task'),
                         ('ix_instruction_task_inbox', 'instruction_task'),
                         ('ix_instruction_incident_id', 'instruction'), ('ix_duty_log_note_log_id', 'duty_log_note'),
                         ('ix_event_sheet_incident_id', 'event_sheet'), ('ix_event_sheet_status', 'event_sheet'),
                         ('ix_desk_ledger_entry_subject', 'desk_ledger_entry')):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)
    for table in ('instruction_task', 'instruction', 'duty_log_note', 'duty_log', 'event_sheet', 'desk_ledger_head',
                  'desk_ledger_entry'):
        op.drop_table(table)
