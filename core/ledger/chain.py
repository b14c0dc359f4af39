"""The accountability ledger: one table of hash-chained entries, in chains.

An incident's handoffs are the chain `incident:<id>`; records that belong to no incident are in named chains: the
duty desk's (`desk`), a prevention campaign run's (`prevention:<run id>`), the register imports' (`registers`).
Each entry's hash is SHA-256 over the canonical JSON of the entry including the previous entry's hash, so editing,
deleting or reordering any entry breaks the chain from that point on. Each chain's head (sequence and hash) is kept
apart, on the incident's row or in `ledger_chain`, so a truncated tail is detected too; a writer holds the head's
lock (the incident's, or the `ledger_chain` row's) while it appends, so concurrent appends serialise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text as sql_text
from sqlmodel import Session, col, select

from core.incidents.models import Incident
from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerChain, LedgerEntry
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.failpoints import failpoint

GENESIS = "0" * 64
DESK = "desk"  # the duty desk's chain: what it records before (or without) an incident
REGISTERS = "registers"  # register imports


def incident_chain(incident_id: str) -> str:
    return f"incident:{incident_id}"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest_of(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def _time(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(entry: LedgerEntry) -> str:
    body = {
        "incident_id": entry.incident_id,
        "seq": entry.seq,
        "at": _time(entry.at),
        "kind": entry.kind,
        "actor": entry.actor,
        "from": entry.from_party,
        "to": entry.to_party,
        "step": entry.step_key,
        "digest": entry.digest,
        "details": entry.details,
        "idempotency_key": entry.idempotency_key,
        "prev_hash": entry.prev_hash,
    }
    if entry.incident_id is None:  # a named chain's entry (an incident's body is unchanged since the first entry)
        body |= {"chain": entry.chain, "subject": entry.subject}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def append(
    session: Session,
    *,
    incident: Incident,
    kind: LedgerKind,
    actor: str,
    from_party: str,
    to_party: str,
    idempotency_key: str,
    step_key: str | None = None,
    handed_over: Any = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
    fresh: bool = False,
) -> LedgerEntry:
    """Append one entry; a repeated idempotency key returns the entry already written. `fresh`: the key names a
    row this transaction created (a task just inserted), or a step the caller's state check under the incident's
    lock proves not taken yet (a task completed once), so no entry can hold it yet and it is not looked up (the
    key's unique constraint still refuses a second one).

    The caller holds the incident's write lock (see `core.incidents.service.lock_incident`), so the head read
    here is the head the entry links to. The entry and the incident's new head are written with the
    transaction's next flush (at the latest its commit), so a handoff's entries go in one batch and its incident
    row is updated once.
    """
    if not fresh:
        existing = _pending(session, idempotency_key)
        if existing is None:
            with session.no_autoflush:
                existing = session.exec(select(LedgerEntry)
                                        .where(LedgerEntry.idempotency_key == idempotency_key)).first()
        if existing is not None:
            return existing
    entry = LedgerEntry(
        chain=incident_chain(incident.id),
        incident_id=incident.id,
        seq=incident.ledger_head_seq + 1,
        at=at or utcnow(),
        kind=kind,
        actor=actor,
        from_party=from_party,
        to_party=to_party,
        step_key=step_key,
        digest=digest_of(handed_over if handed_over is not None else {}),
        details=details or {},
        idempotency_key=idempotency_key,
        prev_hash=incident.ledger_head_hash or GENESIS,
        hash="",
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    incident.ledger_head_seq = entry.seq
    incident.ledger_head_hash = entry.hash
    session.add(incident)
    failpoint("ledger.appended")
    return entry


def _pending(session: Session, idempotency_key: str) -> LedgerEntry | None:
    """An entry appended in this transaction and not yet flushed, by its key."""
    for item in session.new:
        if isinstance(item, LedgerEntry) and item.idempotency_key == idempotency_key:
            return item
    return None


@dataclass(frozen=True)
class Verification:
    valid: bool
    entries: int
    first_bad_seq: int | None
    reason: str | None = None


def verify_entries(
    entries: list[LedgerEntry], head_seq: int | None = None, head_hash: str | None = None
) -> Verification:
    """Check a chain read in storage order (by row id), naming the first entry that does not fit."""
    previous_hash = GENESIS
    expected_seq = 1
    for entry in entries:
        if entry.seq != expected_seq:
            return Verification(False, len(entries), min(expected_seq, entry.seq),
                                f"expected entry {expected_seq}, found {entry.seq} (deleted or reordered)")
        if entry.prev_hash != previous_hash:
            return Verification(False, len(entries), entry.seq, "does not link to the entry before it")
        if entry_hash(entry) != entry.hash:
            return Verification(False, len(entries), entry.seq, "its content does not match its hash (edited)")
        previous_hash = entry.hash
        expected_seq += 1
    if head_seq is not None and head_seq != len(entries):
        return Verification(False, len(entries), len(entries) + 1,
                            f"the head records {head_seq} entries but {len(entries)} remain (truncated)")
    if head_hash is not None and entries and head_hash != previous_hash:
        return Verification(False, len(entries), len(entries), "the last entry is not the recorded head")
    return Verification(True, len(entries), None)


def read_chain(session: Session, incident_id: str) -> list[LedgerEntry]:
    # Storage order, not seq order: a reordered chain must show up as out of order.
    return list(session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id)
                             .order_by(col(LedgerEntry.id))).all())


def _head_for_reading(session: Session, query: Any) -> Any:
    """A chain's head row, read so that the entries read next are those it records. A writer holds the head locked
    from its append to its commit; on PostgreSQL (READ COMMITTED) a share lock waits for that commit and keeps the
    next append out until this transaction ends; otherwise an append committed between the two reads shows a live
    chain as truncated. SQLite's transactions are serialised already (BEGIN IMMEDIATE)."""
    query = query.execution_options(populate_existing=True)
    if is_postgres(session):
        query = query.with_for_update(read=True)
    return session.exec(query).first()


def verify_incident(session: Session, incident_id: str) -> Verification:
    incident = _head_for_reading(session, select(Incident).where(Incident.id == incident_id))
    entries = read_chain(session, incident_id)
    if incident is None:
        return verify_entries(entries)
    return verify_entries(entries, incident.ledger_head_seq, incident.ledger_head_hash)


# -- named chains: records that belong to no incident -------------------------------------------------------------
def lock_head(session: Session, chain: str) -> LedgerChain:
    """The named chain's head, made on first use and locked for writing (a row lock on PostgreSQL; SQLite's write
    transactions are serialised already, BEGIN IMMEDIATE)."""
    if chain.startswith("incident:"):
        raise ValueError("an incident's chain is appended to with append(), under the incident's lock")
    session.execute(sql_text("INSERT INTO ledger_chain (name, seq, hash) VALUES (:name, 0, '') "
                             "ON CONFLICT (name) DO NOTHING"), {"name": chain})
    query = select(LedgerChain).where(LedgerChain.name == chain)
    if is_postgres(session):
        query = query.with_for_update()
    return session.exec(query.execution_options(populate_existing=True)).one()


def append_to(session: Session, *, chain: str, kind: LedgerKind, actor: str, idempotency_key: str,
              subject: str | None = None, from_party: str = "", to_party: str = "", handed_over: Any = None,
              details: dict[str, Any] | None = None, at: datetime | None = None) -> LedgerEntry:
    """Append one entry to a named chain (its head row is locked for it); a repeated idempotency key returns the
    entry already written. A named chain's keys are its own: they are stored as `<chain>:<key>`."""
    idempotency_key = f"{chain}:{idempotency_key}"
    existing = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == idempotency_key)).first()
    if existing is not None:
        return existing
    head = lock_head(session, chain)
    entry = LedgerEntry(chain=chain, incident_id=None, subject=subject, seq=head.seq + 1, at=at or utcnow(),
                        kind=kind, actor=actor, from_party=from_party, to_party=to_party, step_key=None,
                        digest=digest_of(handed_over if handed_over is not None else {}), details=details or {},
                        idempotency_key=idempotency_key, prev_hash=head.hash or GENESIS, hash="")
    entry.hash = entry_hash(entry)
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    session.add(head)
    session.flush()
    failpoint("ledger.appended")
    return entry


def read_named(session: Session, chain: str, subject: str | None = None) -> list[LedgerEntry]:
    """A chain's entries in storage order (of one subject, when given)."""
    query = select(LedgerEntry).where(LedgerEntry.chain == chain)
    if subject is not None:
        query = query.where(LedgerEntry.subject == subject)
    return list(session.exec(query.order_by(col(LedgerEntry.id))).all())


def verify_chain(session: Session, chain: str) -> Verification:
    """Check any chain against its head (an incident's: `incident:<id>`), naming the first entry that does not fit."""
    if chain.startswith("incident:"):
        return verify_incident(session, chain.partition(":")[2])
    head = _head_for_reading(session, select(LedgerChain).where(LedgerChain.name == chain))
    entries = read_named(session, chain)
    if head is None and entries and is_postgres(session):
        # The chain's first append committed between the two reads: its head row did not exist yet to be locked.
        # It does now (a head is never removed but by tampering): read both again under its lock.
        head = _head_for_reading(session, select(LedgerChain).where(LedgerChain.name == chain))
        entries = read_named(session, chain)
    # No head at all while entries remain is a truncation too (the head row was removed).
    return verify_entries(entries, head.seq if head else 0, head.hash if head else None)


def named_chains(session: Session) -> list[str]:
    """Every named chain, by name: those with a head, and those with entries (whose head may have been removed)."""
    heads = set(session.exec(select(LedgerChain.name)).all())
    written = set(session.exec(select(LedgerEntry.chain).where(col(LedgerEntry.incident_id).is_(None))
                               .distinct()).all())
    return sorted(heads | written)
