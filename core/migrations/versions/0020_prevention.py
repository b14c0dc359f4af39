"""prevention: campaign runs, inspection and rectification tasks, evidence, records (append-only, hash-chained)

Revision ID: 0020
Revises: 0015
Create Date: 2026-12-02 14:40:31.463553
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0020'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A prevention run's records are append-only, as the ledger is.
SQLITE = [
    """CREATE TRIGGER prevention_record_no_update BEFORE UPDATE ON prevention_record
       BEGIN SELECT RAISE(ABORT, 'prevention_record is append-only'); END""",
    """CREATE TRIGGER prevention_record_no_delete BEFORE DELETE ON prevention_record
       BEGIN SELECT RAISE(ABORT, 'prevention_record is append-only'); END""",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION prevention_record_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'prevention_record is append-only'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER prevention_record_no_change BEFORE UPDATE OR DELETE ON prevention_record
       FOR EACH ROW EXECUTE FUNCTION prevention_record_append_only()""",
    """CREATE TRIGGER prevention_record_no_truncate BEFORE TRUNCATE ON prevention_record
       FOR EACH STATEMENT EXECUTE FUNCTION prevention_record_append_only()""",
]


def upgrade() -> None:
    op.create_table('prevention_run',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('campaign', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('slot', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('started_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('flow_run_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('tasks_created', sa.Integer(), nullable=False),
    sa.Column('ledger_head_seq', sa.Integer(), nullable=False),
    sa.Column('ledger_head_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign', 'slot', name='uq_prevention_run_slot')
    )
    with op.batch_alter_table('prevention_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prevention_run_campaign'), ['campaign'], unique=False)

    op.create_table('prevention_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('from_party', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('to_party', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['prevention_run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('run_id', 'seq', name='uq_prevention_record_seq')
    )
    with op.batch_alter_table('prevention_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prevention_record_run_id'), ['run_id'], unique=False)

    op.create_table('prevention_task',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('campaign', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('register_kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('entry_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('entry_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('entry_name_zh', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('entry_name_en', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('department', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('parent_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('assigned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reminded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('escalated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('escalated_to', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('completed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('completed_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('hazard_found', sa.Boolean(), nullable=True),
    sa.Column('finding', sa.Text(), nullable=True),
    sa.Column('measures', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['prevention_run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'kind', 'entry_id', name='uq_prevention_task')
    )
    with op.batch_alter_table('prevention_task', schema=None) as batch_op:
        batch_op.create_index('ix_prevention_task_due', ['status', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_prevention_task_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index('ix_prevention_task_inbox', ['department', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_prevention_task_run_id'), ['run_id'], unique=False)

    op.create_table('prevention_evidence',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('task_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('uploaded_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['prevention_task.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('prevention_evidence', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prevention_evidence_task_id'), ['task_id'], unique=False)
    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS prevention_record_no_change ON prevention_record")
        op.execute("DROP TRIGGER IF EXISTS prevention_record_no_truncate ON prevention_record")
        op.execute("DROP FUNCTION IF EXISTS prevention_record_append_only()")
    with op.batch_alter_table('prevention_evidence', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prevention_evidence_task_id'))

    op.drop_table('prevention_evidence')
    with op.batch_alter_table('prevention_task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prevention_task_run_id'))
        batch_op.drop_index('ix_prevention_task_inbox')
        batch_op.drop_index(batch_op.f('ix_prevention_task_entry_id'))
        batch_op.drop_index('ix_prevention_task_due')

    op.drop_table('prevention_task')
    with op.batch_alter_table('prevention_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prevention_record_run_id'))

    op.drop_table('prevention_record')
    with op.batch_alter_table('prevention_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prevention_run_campaign'))

    op.drop_table('prevention_run')
