"""sealed channel secrets: the notification channels' tokens and secrets sealed at rest (core/platform/sealing.py)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-03 01:45:00
"""
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0028'
down_revision: str | None = '0027'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rewrite(transform: Callable[[str], str]) -> None:
    """Each channel's token and secret passed through `transform` (seal on the way up, unseal on the way down)."""
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, token, secret FROM notify_channel")).all()
    for channel_id, token, secret in rows:
        bind.execute(sa.text("UPDATE notify_channel SET token = :token, secret = :secret WHERE id = :id"),
                     {"token": transform(token or ""), "secret": transform(secret or ""), "id": channel_id})


def upgrade() -> None:
    from core.platform.sealing import seal

    _rewrite(seal)


def downgrade() -> None:
    from core.platform.sealing import unseal

    _rewrite(unseal)
