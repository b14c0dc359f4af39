"""The accountability ledger: one hash-chained entry per handoff, per incident.

Each entry's hash is SHA-256 over the canonical JSON of the entry including the previous entry's hash, so
editing, deleting or reordering any entry breaks the chain from that point on. The incident row keeps the
head (sequence and hash) so a truncated tail is detected too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from core.incidents.models import Incident
from core.ledger.kinds import LedgerKind
from core.ledger.models import DeskLedgerEntry, DeskLedgerHead, LedgerEntry
from core.platform.clock import utcnow
from core.platform.db import is_postgres
from core.platform.failpoints import failpoint

GENESIS = "0" * 64


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
    row this transaction created (a task just inserted), so no entry can hold it yet and it is not looked up.

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
                            f"the incident records {head_seq} entries but {len(entries)} remain (truncated)")
    if head_hash is not None and entries and head_hash != previous_hash:
        return Verification(False, len(entries), len(entries), "the last entry is not the recorded head")
    return Verification(True, len(entries), None)


def read_chain(session: Session, incident_id: str) -> list[LedgerEntry]:
    # Storage order, not seq order: a reordered chain must show up as out of order.
    return list(session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id)
                             .order_by(col(LedgerEntry.id))).all())


def verify_incident(session: Session, incident_id: str) -> Verification:
    incident = session.get(Incident, incident_id)
    entries = read_chain(session, incident_id)
    if incident is None:
        return verify_entries(entries)
    return verify_entries(entries, incident.ledger_head_seq, incident.ledger_head_hash)


# -- the duty desk's chain: what the desk records before (or without) an incident ---------------------------------
def desk_entry_hash(entry: DeskLedgerEntry) -> str:
    body = {"chain": "desk", "seq": entry.seq, "at": _time(entry.at), "kind": entry.kind, "actor": entry.actor,
            "subject": entry.subject, "digest": entry.digest, "details": entry.details,
            "idempotency_key": entry.idempotency_key, "prev_hash": entry.prev_hash}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _desk_head(session: Session) -> DeskLedgerHead:
    query = select(DeskLedgerHead).where(DeskLedgerHead.id == 1)
    if is_postgres(session):
        query = query.with_for_update()
    head = session.exec(query.execution_options(populate_existing=True)).first()
    if head is None:
        head = DeskLedgerHead(id=1, seq=0, hash="")
        session.add(head)
        session.flush()
    return head


def append_desk(session: Session, *, kind: LedgerKind, actor: str, subject: str, idempotency_key: str,
                handed_over: Any = None, details: dict[str, Any] | None = None,
                at: datetime | None = None) -> DeskLedgerEntry:
    """Append one entry to the duty desk's chain (the head row is locked for it); a repeated idempotency key
    returns the entry already written."""
    existing = session.exec(select(DeskLedgerEntry).where(DeskLedgerEntry.idempotency_key == idempotency_key)).first()
    if existing is not None:
        return existing
    head = _desk_head(session)
    entry = DeskLedgerEntry(seq=head.seq + 1, at=at or utcnow(), kind=kind, actor=actor, subject=subject,
                            digest=digest_of(handed_over if handed_over is not None else {}), details=details or {},
                            idempotency_key=idempotency_key, prev_hash=head.hash or GENESIS, hash="")
    entry.hash = desk_entry_hash(entry)
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    session.add(head)
    session.flush()
    return entry


def read_desk(session: Session, subject: str | None = None) -> list[DeskLedgerEntry]:
    """The desk's entries in storage order (of one subject, when given)."""
    query = select(DeskLedgerEntry)
    if subject is not None:
        query = query.where(DeskLedgerEntry.subject == subject)
    return list(session.exec(query.order_by(col(DeskLedgerEntry.id))).all())


def verify_desk(session: Session) -> Verification:
    """Check the desk's whole chain against its head, naming the first entry that does not fit."""
    head = session.get(DeskLedgerHead, 1)
    previous, expected = GENESIS, 1
    entries = read_desk(session)
    for entry in entries:
        if entry.seq != expected:
            return Verification(False, len(entries), min(expected, entry.seq),
                                f"expected entry {expected}, found {entry.seq} (deleted or reordered)")
        if entry.prev_hash != previous:
            return Verification(False, len(entries), entry.seq, "does not link to the entry before it")
        if desk_entry_hash(entry) != entry.hash:
            return Verification(False, len(entries), entry.seq, "its content does not match its hash (edited)")
        previous, expected = entry.hash, expected + 1
    if head is not None and (head.seq != len(entries) or (entries and head.hash != previous)):
        return Verification(False, len(entries), len(entries) + 1, "the desk's head does not match its entries")
    return Verification(True, len(entries), None)
