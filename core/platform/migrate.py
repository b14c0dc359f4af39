"""Database migrations (Alembic), run from code: `baton db upgrade`, and by the commands that start Baton's
processes; the other commands only check the schema (`schema_state`)."""

from __future__ import annotations

from dataclasses import dataclass
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


def head_revision() -> str | None:
    """The latest revision of Baton's migrations (read from the scripts, not the database)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the database's revision; None when it has no Baton schema
    head: str | None  # the latest revision this Baton knows
    known: bool  # whether `current` is one of this Baton's revisions (or None)
    where: str  # the database's URL, without its password

    @property
    def at_head(self) -> bool:
        return self.current == self.head


def schema_state(url: str | None = None) -> SchemaState:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from sqlalchemy.engine import make_url

    url = url or get_settings().resolved_database_url()
    parsed = make_url(url)
    script = ScriptDirectory.from_config(alembic_config(url))
    # A SQLite file that is not there has no schema; looking would leave an empty file behind.
    missing = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
        and not Path(str(parsed.database)).exists()
    current = None if missing else current_revision(url)
    known = True
    if current is not None:
        try:
            known = script.get_revision(current) is not None
        except CommandError:
            known = False
    return SchemaState(current=current, head=script.get_current_head(), known=known,
                       where=parsed.render_as_string(hide_password=True))


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
            log.info("database schema at the latest revision, %s (migrated if it was behind)", head_revision())
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
