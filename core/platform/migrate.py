"""Database migrations (Alembic), run from code: `baton db upgrade`, and by every process at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from core.platform.settings import get_settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url or get_settings().resolved_database_url())
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def upgrade_when_reachable(url: str | None = None, *, give_up_after: float | None = None) -> None:
    """Migrate, waiting for a database that is down (a worker restarted during an outage must not exit:
    under a supervisor that does not restart it, it would be gone for good). Retries with a growing pause
    up to 10 s; `give_up_after` seconds bound the wait, `None` waits as long as it takes."""
    import logging
    import time

    from sqlalchemy.exc import OperationalError

    from core.platform.db import outage_reason

    log = logging.getLogger("baton.migrate")
    started = time.monotonic()
    pause = 0.5
    while True:
        try:
            upgrade(url)
            return
        except OperationalError as exc:
            if give_up_after is not None and time.monotonic() - started + pause > give_up_after:
                raise
            reason = outage_reason(exc)
            log.warning("database unreachable (%s); retrying in %.1f s", reason, pause)
            time.sleep(pause)
            pause = min(10.0, pause * 2)


def current_revision(url: str | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from core.platform.db import engine_for

    with engine_for(url or get_settings().resolved_database_url()).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
