"""One ledger, many chains: an incident's chain (`incident:<id>`) and named chains for what belongs to no incident
(`desk`, `prevention:<run id>`, `registers`). A named chain's appends serialise on its head row, even when two
chains are written at once; tampering with a named chain is found by verify, refused by export, and named by
`baton ledger verify`."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlmodel import Session
from typer.testing import CliRunner

from core.ledger.chain import DESK, REGISTERS, append_to, named_chains, read_named, verify_chain
from core.ledger.export import ExportError, build_export, public_pem, signing_key, verify_export
from core.ledger.kinds import LedgerKind
from core.platform.db import session_scope
from flows import maintenance
from flows.cli import app
from tests import engine_driver as drive

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)
RUN = "prevention:0f6f2b1e-0000-4000-8000-000000000001"


def note(session: Session, chain: str, key: str, **details: Any) -> None:
    append_to(session, chain=chain, kind=LedgerKind.duty_log_noted, actor="test:writer", idempotency_key=key,
              subject="log:test", details=details)


@BOTH
def test_appending_to_two_chains_at_once_keeps_both_verifiable(baton: str) -> None:
    chains, writers, appends = [DESK, RUN], 3, 10
    start = threading.Barrier(len(chains) * writers)
    failures: list[BaseException] = []

    def write(chain: str, writer: int) -> None:
        start.wait()
        try:
            for n in range(appends):
                with session_scope() as session:  # one transaction per append, all racing for the same heads
                    note(session, chain, f"{writer}:{n}", writer=writer, n=n)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(chain, w)) for chain in chains for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    with session_scope() as session:
        assert named_chains(session) == sorted(chains)
        for chain in chains:
            entries = read_named(session, chain)
            assert [e.seq for e in entries] == list(range(1, writers * appends + 1))
            assert all(e.chain == chain and e.incident_id is None for e in entries)
            result = verify_chain(session, chain)
            assert result.valid and result.entries == writers * appends, result
        # A repeated key returns the entry already written and moves no head.
        note(session, DESK, "0:0", writer=0, n=0)
        keys = [e.idempotency_key for e in read_named(session, DESK)]
        assert len(keys) == writers * appends and keys.count(f"{DESK}:0:0") == 1
        export = build_export(session)
    check = verify_export(export, public_pem(signing_key()))
    assert check.valid and check.chains == 2 and check.entries == 2 * writers * appends, check.problems


@BOTH
def test_a_chain_verified_while_it_is_written_is_never_reported_broken(baton: str) -> None:
    """The nightly audit and the verify endpoint read live chains: an append that commits between reading the head
    and reading the entries must not show a healthy chain as truncated (PostgreSQL reads each statement at its own
    moment)."""
    from core.incidents.service import lock_incident
    from core.ledger.chain import append

    incident_id = drive.open_("flood")
    writing = threading.Event()
    writing.set()
    failures: list[BaseException] = []
    reports: list[str] = []
    verified = [0]

    # Named chains begin with their first append (which makes the head row): many of them, to catch that moment.
    chains = [DESK] + [f"prevention:0f6f2b1e-0000-4000-8000-{n:012d}" for n in range(12)]

    def write(writer: int) -> None:
        try:
            for n in range(48):
                with session_scope() as session:
                    note(session, chains[(n + writer) % len(chains)], f"live:{writer}:{n}", n=n)
                with session_scope() as session:
                    append(session, incident=lock_incident(session, incident_id), kind=LedgerKind.duty_log_noted,
                           actor="test:writer", from_party="", to_party="", idempotency_key=f"live:{writer}:{n}")
        except BaseException as exc:  # reported below
            failures.append(exc)

    def read() -> None:
        try:
            while writing.is_set():
                for chain in [f"incident:{incident_id}", *chains]:
                    with session_scope() as session:  # one chain a transaction, as the nightly audit reads them
                        result = verify_chain(session, chain)
                    verified[0] += 1
                    if not result.valid:
                        reports.append(f"{chain} {result.first_bad_seq}: {result.reason}")
                time.sleep(0.001)
        except BaseException as exc:  # reported below
            failures.append(exc)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    writing.clear()
    for thread in readers:
        thread.join(timeout=30)
    assert not failures, failures
    # At least one full round of every chain while they were written (a loaded SQLite runs few: its readers queue).
    assert verified[0] > len(chains), verified
    assert not reports, f"{len(reports)} of {verified[0]} verifications of a live chain failed: {reports[:3]}"


def _drop_guard(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER USER"))
    else:
        session.execute(text("DROP TRIGGER ledger_entry_no_update"))
        session.execute(text("DROP TRIGGER ledger_entry_no_delete"))


@BOTH
@pytest.mark.parametrize(("tamper", "expected"), [("edit", 2), ("delete", 2), ("truncate", 4), ("head", 5)])
def test_tampering_with_a_named_chain_is_detected(baton: str, tamper: str, expected: int) -> None:
    incident_id = drive.open_("flood")
    with session_scope() as session:
        for n in range(4):
            note(session, DESK, f"n{n}", n=n)
        note(session, REGISTERS, "other")
    with session_scope() as session:
        entries = read_named(session, DESK)
    # The database refuses the change itself; only its owner, dropping the guard, can make it.
    with pytest.raises(Exception, match="append-only"), session_scope() as session:
        session.execute(text("UPDATE ledger_entry SET actor = 'x' WHERE id = :id"), {"id": entries[1].id})
    with session_scope() as session:
        _drop_guard(session)
        if tamper == "edit":
            session.execute(text("UPDATE ledger_entry SET actor = 'someone else' WHERE id = :id"),
                            {"id": entries[1].id})
        elif tamper == "delete":
            session.execute(text("DELETE FROM ledger_entry WHERE id = :id"), {"id": entries[1].id})
        elif tamper == "truncate":
            session.execute(text("DELETE FROM ledger_entry WHERE id = :id"), {"id": entries[-1].id})
        else:  # the head row removed (it is not append-only: it moves with each entry): the entries outlive it
            session.execute(text("DELETE FROM ledger_chain WHERE name = 'desk'"))
    with session_scope() as session:
        result = verify_chain(session, DESK)
        assert not result.valid and result.first_bad_seq == expected, result
        # The other chains are untouched.
        assert verify_chain(session, REGISTERS).valid and verify_chain(session, f"incident:{incident_id}").valid
        with pytest.raises(ExportError, match="ledger chain desk does not verify"):
            build_export(session)
    # The scheduled audit names it too.
    checked, broken = maintenance.audit_ledgers()
    assert checked == 3 and [(b.code, b.first_bad_seq) for b in broken] == [(DESK, expected)]
    runner = CliRunner()
    every = runner.invoke(app, ["ledger", "verify"])
    assert every.exit_code == 1 and f"BROKEN desk: first bad entry {expected}" in every.output, every.output
    assert "valid registers: 1 entries" in every.output
    one = runner.invoke(app, ["ledger", "verify", REGISTERS])
    assert one.exit_code == 0 and "valid registers" in one.output, one.output
