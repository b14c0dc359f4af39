"""resources in incidents: requests for reserves, their stock movements, replenishments under safety stock

Revision ID: 0019
Revises: 0015
Create Date: 2026-12-12 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0019'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('resource_request',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('incident_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('requester', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('supplier', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
    sa.Column('reserve_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('destination', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('needed_by', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('requested_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('drawn_reserve_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('quantity_approved', sa.Integer(), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('refusal_reason', sa.Text(), nullable=True),
    sa.Column('dispatched_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('dispatched_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('dispatch_note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('quantity_received', sa.Integer(), nullable=True),
    sa.Column('received_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('quantity_returned', sa.Integer(), nullable=True),
    sa.Column('returned_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('returned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.CheckConstraint('quantity > 0', name='ck_resource_request_quantity'),
    sa.CheckConstraint('quantity_approved IS NULL OR (quantity_approved > 0 AND quantity_approved <= quantity)', name='ck_resource_request_approved'),
    sa.CheckConstraint('quantity_received IS NULL OR quantity_received >= 0', name='ck_resource_request_received'),
    sa.CheckConstraint('quantity_returned IS NULL OR quantity_returned >= 0', name='ck_resource_request_returned'),
    sa.ForeignKeyConstraint(['drawn_reserve_id'], ['register_reserve.id'], ),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['reserve_id'], ['register_reserve.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('resource_request', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resource_request_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index('ix_resource_request_parties', ['requester', 'supplier'], unique=False)
        batch_op.create_index(batch_op.f('ix_resource_request_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_resource_request_supplier'), ['supplier'], unique=False)

    op.create_table('reserve_replenishment',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('reserve_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('open_key', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('organisation', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('incident_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('quantity_at_open', sa.Integer(), nullable=False),
    sa.Column('safety_stock', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('done_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('done_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('quantity_added', sa.Integer(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.ForeignKeyConstraint(['incident_id'], ['incident.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['resource_request.id'], ),
    sa.ForeignKeyConstraint(['reserve_id'], ['register_reserve.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('open_key')
    )
    with op.batch_alter_table('reserve_replenishment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reserve_replenishment_incident_id'), ['incident_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reserve_replenishment_organisation'), ['organisation'], unique=False)
        batch_op.create_index(batch_op.f('ix_reserve_replenishment_reserve_id'), ['reserve_id'], unique=False)

    op.create_table('reserve_movement',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reserve_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
    sa.Column('request_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('replenishment_id', sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('quantity_after', sa.Integer(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.CheckConstraint('quantity > 0', name='ck_reserve_movement_quantity'),
    sa.ForeignKeyConstraint(['replenishment_id'], ['reserve_replenishment.id'], ),
    sa.ForeignKeyConstraint(['request_id'], ['resource_request.id'], ),
    sa.ForeignKeyConstraint(['reserve_id'], ['register_reserve.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('replenishment_id', 'kind', name='uq_reserve_movement_replenishment'),
    sa.UniqueConstraint('request_id', 'kind', name='uq_reserve_movement_request')
    )
    with op.batch_alter_table('reserve_movement', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reserve_movement_reserve_id'), ['reserve_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('reserve_movement', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reserve_movement_reserve_id'))

    op.drop_table('reserve_movement')
    with op.batch_alter_table('reserve_replenishment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reserve_replenishment_reserve_id'))
        batch_op.drop_index(batch_op.f('ix_reserve_replenishment_organisation'))
        batch_op.drop_index(batch_op.f('ix_reserve_replenishment_incident_id'))

    op.drop_table('reserve_replenishment')
    with op.batch_alter_table('resource_request', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resource_request_supplier'))
        batch_op.drop_index(batch_op.f('ix_resource_request_status'))
        batch_op.drop_index('ix_resource_request_parties')
        batch_op.drop_index(batch_op.f('ix_resource_request_incident_id'))

    op.drop_table('resource_request')
