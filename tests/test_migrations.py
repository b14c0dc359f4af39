"""Migrations upgrade an empty database to head, and back down, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

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


def _named_entries(session: Any) -> dict[str, list[tuple[Any, ...]]]:
    from core.ledger.chain import named_chains, read_named

    return {name: [(e.seq, e.at, e.kind, e.actor, e.subject, e.from_party, e.to_party, e.digest, e.details)
                   for e in read_named(session, name)] for name in named_chains(session)}


@BOTH
def test_0023_moves_the_side_chains_out_of_the_ledger_and_back_with_their_rows(baton: str) -> None:
    """Downgrade 0023 with entries in the named chains (they go back to 0022's three tables, chained as 0022 did),
    then upgrade again (they come back into the one ledger, re-chained, verifying, with the same content)."""
    from alembic import command
    from sqlalchemy import text
    from sqlmodel import select

    from core.ledger import chain as ledger
    from core.ledger.kinds import LedgerKind
    from core.platform.clock import utcnow
    from core.platform.db import session_scope
    from core.prevention import service as prevention
    from core.prevention.models import PreventionRun
    from tests import engine_driver as drive

    incident_id = drive.open_("flood")
    drive.step(incident_id)
    with session_scope() as session:
        for n in range(3):
            ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_recorded, actor="user:office",
                             idempotency_key=f"s{n}:recorded", subject=f"sheet:s{n}", handed_over={"n": n},
                             details={"number": f"2026-{n}"})
        run = PreventionRun(campaign="flood_precheck", slot=utcnow(), started_by="test")
        session.add(run)
        session.flush()
        prevention.record(session, run=run, kind=LedgerKind.prevention_run_started, actor="system", from_party="cmd",
                          to_party="cmd", key=f"{run.id}:started", at=utcnow(), details={"entries": 1})
        prevention.record(session, run=run, kind=LedgerKind.inspection_assigned, actor="system", from_party="cmd",
                          to_party="water_affairs", key="t1:assigned", at=utcnow(), task_id="t1",
                          handed_over={"entry": "e1"})
        ledger.append_to(session, chain=ledger.REGISTERS, kind=LedgerKind.register_imported, actor="user:office",
                         idempotency_key="import:1", subject="register:risk_point", from_party="water_affairs",
                         handed_over={"file_sha256": "ab" * 32},
                         details={"register": "risk_point", "organisation": "water_affairs", "source": "a.csv",
                                  "file_sha256": "ab" * 32, "rows": 3, "added": 2, "updated": 0, "unchanged": 0,
                                  "refused": 1, "problems": [{"row": 3, "field": "lon", "code": "out_of_range"}]})
        run_id = run.id
    with session_scope() as session:
        before = _named_entries(session)
        incident_hashes = [e.hash for e in ledger.read_chain(session, incident_id)]
        hashes = {name: [e.hash for e in ledger.read_named(session, name)] for name in before}
    assert set(before) == {ledger.DESK, ledger.REGISTERS, prevention.run_chain(run_id)}

    command.downgrade(alembic_config(baton), "0022")
    engine = engine_for(baton)
    engine.dispose()
    with engine.connect() as connection:
        def one(sql: str) -> Any:
            return connection.execute(text(sql)).all()
        assert [tuple(r) for r in one("SELECT seq, subject FROM desk_ledger_entry ORDER BY id")] == [
            (1, "sheet:s0"), (2, "sheet:s1"), (3, "sheet:s2")]
        assert [tuple(r) for r in one("SELECT seq FROM desk_ledger_head")] == [(3,)]
        assert [tuple(r) for r in one("SELECT seq, task_id, idempotency_key FROM prevention_record ORDER BY id")] == [
            (1, None, f"{run_id}:started"), (2, "t1", "t1:assigned")]
        assert [tuple(r) for r in one("SELECT ledger_head_seq FROM prevention_run")] == [(2,)]
        assert [tuple(r) for r in one("SELECT source, rows, added, refused, file_sha256 FROM register_import")] == [
            ("a.csv", 3, 2, 1, "ab" * 32)]
        assert len(one("SELECT id FROM ledger_entry")) == len(incident_hashes)

    upgrade(baton)
    engine.dispose()
    with session_scope() as session:
        assert _named_entries(session) == before
        for name in before:
            assert ledger.verify_chain(session, name).valid
        # The incident's chain is untouched; the desk's and the run's come back hash for hash.
        assert [e.hash for e in ledger.read_chain(session, incident_id)] == incident_hashes
        assert ledger.verify_incident(session, incident_id).valid
        for name in (ledger.DESK, prevention.run_chain(run_id)):
            assert [e.hash for e in ledger.read_named(session, name)] == hashes[name]
        assert session.exec(select(PreventionRun)).one().id == run_id


@BOTH
def test_0023_does_not_rechain_a_side_chain_that_does_not_verify(baton: str) -> None:
    """Re-chaining a broken side chain would launder the break: the upgrade stops and names it."""
    from alembic import command
    from sqlalchemy import text

    from core.ledger import chain as ledger
    from core.ledger.kinds import LedgerKind
    from core.platform.db import session_scope

    with session_scope() as session:
        for n in range(2):
            ledger.append_to(session, chain=ledger.DESK, kind=LedgerKind.sheet_recorded, actor="user:office",
                             idempotency_key=f"s{n}:recorded", subject=f"sheet:s{n}")
    command.downgrade(alembic_config(baton), "0022")
    engine = engine_for(baton)
    engine.dispose()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE desk_ledger_entry DISABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER desk_ledger_entry_no_update"))
        connection.execute(text("UPDATE desk_ledger_entry SET actor = 'someone else' WHERE seq = 1"))
    with pytest.raises(RuntimeError, match="desk_ledger_entry does not verify at its entry 1"):
        upgrade(baton)
    engine.dispose()
    assert current_revision(baton) == "0022"
