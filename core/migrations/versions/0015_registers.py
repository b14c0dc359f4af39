"""registers: risk points, shelters, material reserves, rescue teams, experts, vulnerable residents; register imports

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-11 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A register import's record is append-only, as the ledger and the audit trail are.
SQLITE = [
    """CREATE TRIGGER register_import_no_update BEFORE UPDATE ON register_import
       BEGIN SELECT RAISE(ABORT, 'register_import is append-only'); END""",
    """CREATE TRIGGER register_import_no_delete BEFORE DELETE ON register_import
       BEGIN SELECT RAISE(ABORT, 'register_import is append-only'); END""",
]
POSTGRES = [
    """CREATE OR REPLACE FUNCTION register_import_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'register_import is append-only'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER register_import_no_change BEFORE UPDATE OR DELETE ON register_import
       FOR EACH ROW EXECUTE FUNCTION register_import_append_only()""",
    """CREATE TRIGGER register_import_no_truncate BEFORE TRUNCATE ON register_import
       FOR EACH STATEMENT EXECUTE FUNCTION register_import_append_only()""",
]


def upgrade() -> None:
    op.create_table('register_expert',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('min_lon', sa.Float(), nullable=True),
    sa.Column('min_lat', sa.Float(), nullable=True),
    sa.Column('max_lon', sa.Float(), nullable=True),
    sa.Column('max_lat', sa.Float(), nullable=True),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('contact_phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('speciality', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('employer', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code', name='uq_register_expert')
    )
    with op.batch_alter_table('register_expert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_register_expert_organisation'), ['organisation'], unique=False)

    op.create_table('register_import',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('register_kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('file_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('added', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('problems', sa.JSON(), nullable=False),
    sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash')
    )
    with op.batch_alter_table('register_import', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_register_import_at'), ['at'], unique=False)

    op.create_table('register_reserve',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('min_lon', sa.Float(), nullable=True),
    sa.Column('min_lat', sa.Float(), nullable=True),
    sa.Column('max_lon', sa.Float(), nullable=True),
    sa.Column('max_lat', sa.Float(), nullable=True),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('contact_phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
    sa.Column('specification', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('safety_stock', sa.Integer(), nullable=False),
    sa.Column('warehouse', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('expires_on', sa.Date(), nullable=True),
    sa.CheckConstraint('quantity >= 0 AND safety_stock >= 0', name='ck_register_reserve_quantity'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code', name='uq_register_reserve')
    )
    with op.batch_alter_table('register_reserve', schema=None) as batch_op:
        batch_op.create_index('ix_register_reserve_box', ['min_lon', 'max_lon', 'min_lat', 'max_lat'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_reserve_category'), ['category'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_reserve_organisation'), ['organisation'], unique=False)

    op.create_table('register_risk_point',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('min_lon', sa.Float(), nullable=True),
    sa.Column('min_lat', sa.Float(), nullable=True),
    sa.Column('max_lon', sa.Float(), nullable=True),
    sa.Column('max_lat', sa.Float(), nullable=True),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('contact_phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('people_at_risk', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'code', name='uq_register_risk_point')
    )
    with op.batch_alter_table('register_risk_point', schema=None) as batch_op:
        batch_op.create_index('ix_register_risk_point_box', ['min_lon', 'max_lon', 'min_lat', 'max_lat'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_risk_point_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_risk_point_organisation'), ['organisation'], unique=False)

    op.create_table('register_shelter',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('min_lon', sa.Float(), nullable=True),
    sa.Column('min_lat', sa.Float(), nullable=True),
    sa.Column('max_lon', sa.Float(), nullable=True),
    sa.Column('max_lat', sa.Float(), nullable=True),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('contact_phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('occupancy', sa.Integer(), nullable=False),
    sa.Column('area_m2', sa.Integer(), nullable=True),
    sa.Column('is_open', sa.Boolean(), nullable=False),
    sa.Column('occupancy_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.CheckConstraint('capacity >= 0 AND occupancy >= 0', name='ck_register_shelter_counts'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code', name='uq_register_shelter')
    )
    with op.batch_alter_table('register_shelter', schema=None) as batch_op:
        batch_op.create_index('ix_register_shelter_box', ['min_lon', 'max_lon', 'min_lat', 'max_lat'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_shelter_organisation'), ['organisation'], unique=False)

    op.create_table('register_team',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('min_lon', sa.Float(), nullable=True),
    sa.Column('min_lat', sa.Float(), nullable=True),
    sa.Column('max_lon', sa.Float(), nullable=True),
    sa.Column('max_lat', sa.Float(), nullable=True),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('contact_phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('speciality', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('headcount', sa.Integer(), nullable=False),
    sa.Column('equipment', sa.Text(), nullable=False),
    sa.Column('on_call', sa.Boolean(), nullable=False),
    sa.CheckConstraint('headcount >= 0', name='ck_register_team_headcount'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('code', name='uq_register_team')
    )
    with op.batch_alter_table('register_team', schema=None) as batch_op:
        batch_op.create_index('ix_register_team_box', ['min_lon', 'max_lon', 'min_lat', 'max_lat'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_team_organisation'), ['organisation'], unique=False)

    op.create_table('register_vulnerable_resident',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('name_zh', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('name_en', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('min_lon', sa.Float(), nullable=True),
    sa.Column('min_lat', sa.Float(), nullable=True),
    sa.Column('max_lon', sa.Float(), nullable=True),
    sa.Column('max_lat', sa.Float(), nullable=True),
    sa.Column('district', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('address', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('contact_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('contact_phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('keeper_name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('keeper_phone', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organisation', 'code', name='uq_register_vulnerable_resident')
    )
    with op.batch_alter_table('register_vulnerable_resident', schema=None) as batch_op:
        batch_op.create_index('ix_register_vulnerable_resident_box', ['min_lon', 'max_lon', 'min_lat', 'max_lat'], unique=False)
        batch_op.create_index(batch_op.f('ix_register_vulnerable_resident_organisation'), ['organisation'], unique=False)

    for statement in POSTGRES if op.get_bind().dialect.name == "postgresql" else SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS register_import_no_change ON register_import")
        op.execute("DROP TRIGGER IF EXISTS register_import_no_truncate ON register_import")
        op.execute("DROP FUNCTION IF EXISTS register_import_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS register_import_no_update")
        op.execute("DROP TRIGGER IF EXISTS register_import_no_delete")
    with op.batch_alter_table('register_vulnerable_resident', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_vulnerable_resident_organisation'))
        batch_op.drop_index('ix_register_vulnerable_resident_box')

    op.drop_table('register_vulnerable_resident')
    with op.batch_alter_table('register_team', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_team_organisation'))
        batch_op.drop_index('ix_register_team_box')

    op.drop_table('register_team')
    with op.batch_alter_table('register_shelter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_shelter_organisation'))
        batch_op.drop_index('ix_register_shelter_box')

    op.drop_table('register_shelter')
    with op.batch_alter_table('register_risk_point', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_risk_point_organisation'))
        batch_op.drop_index(batch_op.f('ix_register_risk_point_kind'))
        batch_op.drop_index('ix_register_risk_point_box')

    op.drop_table('register_risk_point')
    with op.batch_alter_table('register_reserve', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_reserve_organisation'))
        batch_op.drop_index(batch_op.f('ix_register_reserve_category'))
        batch_op.drop_index('ix_register_reserve_box')

    op.drop_table('register_reserve')
    with op.batch_alter_table('register_import', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_import_at'))

    op.drop_table('register_import')
    with op.batch_alter_table('register_expert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_expert_organisation'))

    op.drop_table('register_expert')
