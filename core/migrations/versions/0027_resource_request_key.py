"""resource request idempotency key: a request retried with the same Idempotency-Key is answered with the first

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-03 01:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0027'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('resource_request') as batch:
        batch.add_column(sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch.create_unique_constraint('uq_resource_request_idempotency_key', ['idempotency_key'])


def downgrade() -> None:
    with op.batch_alter_table('resource_request') as batch:
        batch.drop_constraint('uq_resource_request_idempotency_key', type_='unique')
        batch.drop_column('idempotency_key')
