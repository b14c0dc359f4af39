"""Migrations upgrade an empty database to head, and back down, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from core.platform.db import engine_for
from core.platform.migrate import alembic_config, current_revision, upgrade

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)
TABLES = {"app_user", "access_token", "audit_event", "login_throttle", "incident", "department_task", "level_change",
          "outbound_delivery", "delivery_attempt", "ledger_entry", "plan_version", "incident_counter", "cap_alert"}


@BOTH
def test_upgrade_from_empty_then_downgrade_and_again(database_url: str) -> None:
    from alembic import command

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert current_revision(database_url) is None
    upgrade(database_url)
    assert current_revision(database_url) == head
    assert set(inspect(engine_for(database_url)).get_table_names()) >= TABLES
    command.downgrade(alembic_config(database_url), "base")
    assert not TABLES & set(inspect(engine_for(database_url)).get_table_names())
    upgrade(database_url)
    assert current_revision(database_url) == head


@BOTH
def test_the_migrations_build_exactly_the_tables_the_models_describe(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import core.all_models  # noqa: F401  (the tables' metadata)

    upgrade(database_url)
    with engine_for(database_url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == [], "\n".join(map(str, differences))
