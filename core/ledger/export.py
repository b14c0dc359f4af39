"""Signed ledger exports: a file that a third party checks offline, without Baton's database.

An export holds ledger chains (one incident's, one named chain's such as `desk`, or all of them) and a **seal**: per
chain, the number of entries, the head and the hash of every entry, with the time and who exported. Baton signs the
SHA-256 digest of the seal's canonical JSON with its Ed25519 key; the public key goes out beside the file.

Checking a file (`python -m core.ledger.export verify FILE --public-key KEY`, or
`baton ledger check-export FILE --public-key KEY`) needs only this module, the standard library and the
`cryptography` package. It recomputes every entry's hash from its content exactly as `core.ledger.chain` does,
follows the chain links, compares each entry with the hash Baton sealed, and verifies the signature with
the public key the checker trusts (never the copy inside the file). Editing, deleting, reordering or
truncating entries names the first bad entry; a wrong key or an altered seal fails the signature.

The private key comes from `BATON_LEDGER_SIGNING_KEY` (a PEM text), from the file that
`BATON_LEDGER_SIGNING_KEY_FILE` names, or else from `<BATON_DATA_DIR>/ledger_signing_key.pem`, made with
mode 0600 on first use. docs/ledger-verification.md is the guide for the checking party.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

if TYPE_CHECKING:
    from sqlmodel import Session

    from core.incidents.models import Incident
    from core.ledger.models import LedgerEntry

FORMAT = "baton-ledger-export/1"
GENESIS = "0" * 64
KEY_FILE = "ledger_signing_key.pem"
KEY_ENV = "BATON_LEDGER_SIGNING_KEY"
KEY_FILE_ENV = "BATON_LEDGER_SIGNING_KEY_FILE"


class ExportError(Exception):
    """The export cannot be made (e.g. a chain in the database is already broken) or the key is unusable."""


# -- hashing, as core.ledger.chain does it, over plain JSON ---------------------------------------------------------


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# The fields of an exported entry, in the order they are written; all but `hash` go into the entry's hash.
ENTRY_FIELDS = ("incident_id", "seq", "at", "kind", "actor", "from", "to", "step", "digest", "details",
                "idempotency_key", "prev_hash", "hash")


# A named chain's entry (no incident) also hashes its chain and subject.
NAMED_FIELDS = ("chain", "subject")


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the entry without its own hash (the body `core.ledger.chain` hashes)."""
    body = {k: entry.get(k) for k in ENTRY_FIELDS if k != "hash"}
    if entry.get("incident_id") is None:
        body |= {k: entry.get(k) for k in NAMED_FIELDS}
    return sha256_hex(canonical_json(body))


def _time(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def entry_to_dict(entry: LedgerEntry) -> dict[str, Any]:
    named = {"chain": entry.chain, "subject": entry.subject} if entry.incident_id is None else {}
    return {**named, "incident_id": entry.incident_id, "seq": entry.seq, "at": _time(entry.at), "kind": entry.kind,
            "actor": entry.actor, "from": entry.from_party, "to": entry.to_party, "step": entry.step_key,
            "digest": entry.digest, "details": entry.details, "idempotency_key": entry.idempotency_key,
            "prev_hash": entry.prev_hash, "hash": entry.hash}


# -- keys ------------------------------------------------------------------------------------------------------


def _load_private(pem: bytes, where: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ExportError(f"{where} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ExportError(f"{where} is not an Ed25519 key")
    return key


def _key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


def signing_key(data_dir: Path | None = None) -> Ed25519PrivateKey:
    """Baton's ledger signing key: from the environment, or the key file (made once, mode 0600)."""
    if os.environ.get(KEY_ENV, "").strip():
        return _load_private(os.environ[KEY_ENV].strip().encode(), KEY_ENV)
    if os.environ.get(KEY_FILE_ENV, "").strip():
        path = Path(os.environ[KEY_FILE_ENV])
        if not path.is_file():
            raise ExportError(f"{KEY_FILE_ENV} names {path}, which does not exist")
        return _load_private(path.read_bytes(), str(path))
    if data_dir is None:
        from core.platform.settings import get_settings

        data_dir = get_settings().data_dir
    path = _key_file(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    for _ in range(50):
        pem = path.read_bytes()
        if pem.strip():
            return _load_private(pem, str(path))
        time.sleep(0.05)
    raise ExportError(f"{path} is empty")


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A short fingerprint of the public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes | str) -> Ed25519PublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ExportError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ExportError("the public key is not an Ed25519 key")
    return key


# -- export ----------------------------------------------------------------------------------------------------


def build_export(session: Session, *, incident: Incident | None = None, chain: str | None = None,
                 exported_by: str = "baton", key: Ed25519PrivateKey | None = None) -> dict[str, Any]:
    """The export of one incident's chain, of one named chain (`desk`, `registers`, `prevention:<run id>`), or of
    every chain, sealed and signed.

    Refuses (ExportError) when a chain does not verify in the database: Baton signs only what holds."""
    from sqlmodel import col, select

    from core.incidents.models import Incident
    from core.ledger.chain import named_chains, read_chain, read_named, verify_entries
    from core.ledger.models import LedgerChain

    if incident is not None:
        incidents, names = [incident], []
    elif chain is not None:
        incidents, names = [], [chain]
    else:
        incidents = list(session.exec(select(Incident).order_by(col(Incident.created_at), col(Incident.id))).all())
        names = named_chains(session)
    signing = key or signing_key()
    sealed: list[dict[str, Any]] = []
    chains: list[dict[str, Any]] = []
    for incident in incidents:
        # The incident's head first, then the entries: every entry up to the head committed with or before it;
        # entries a concurrent writer appended since belong to the next export.
        head_seq, head_hash = incident.ledger_head_seq, incident.ledger_head_hash
        entries = [e for e in read_chain(session, incident.id) if e.seq <= head_seq]
        result = verify_entries(entries, head_seq, head_hash)
        if not result.valid:
            raise ExportError(f"the ledger of {incident.code} does not verify in the database: first bad entry "
                              f"{result.first_bad_seq} ({result.reason}); it is not exported")
        rows = [entry_to_dict(e) for e in entries]
        sealed.append({"incident_id": incident.id, "code": incident.code, "type": incident.type,
                       "level": incident.level, "status": incident.status, "entries": len(rows),
                       "head_hash": head_hash or GENESIS, "hashes": [row["hash"] for row in rows]})
        chains.append({"incident_id": incident.id, "code": incident.code, "entries": rows})
    sealed_named: list[dict[str, Any]] = []
    named: list[dict[str, Any]] = []
    for name in names:
        head = session.get(LedgerChain, name)
        if head is None:
            if read_named(session, name):
                raise ExportError(f"the ledger chain {name} does not verify in the database: its head is missing; "
                                  "it is not exported")
            raise ExportError(f"no ledger chain '{name}'")
        head_seq, head_hash = head.seq, head.hash
        entries = [e for e in read_named(session, name) if e.seq <= head_seq]
        result = verify_entries(entries, head_seq, head_hash or None)
        if not result.valid:
            raise ExportError(f"the ledger chain {name} does not verify in the database: first bad entry "
                              f"{result.first_bad_seq} ({result.reason}); it is not exported")
        rows = [entry_to_dict(e) for e in entries]
        sealed_named.append({"chain": name, "entries": len(rows), "head_hash": head_hash or GENESIS,
                             "hashes": [row["hash"] for row in rows]})
        named.append({"chain": name, "entries": rows})
    scope = incident.code if incident is not None else chain if chain is not None else "all"
    seal = {"format": FORMAT, "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "exported_by": exported_by, "scope": scope, "incidents": sealed, "chains": sealed_named}
    digest = sha256_hex(canonical_json(seal))
    signature = signing.sign(digest.encode("ascii"))
    return {"format": FORMAT, "seal": seal, "digest": digest,
            "signature": {"algorithm": "Ed25519", "key_id": key_id(signing),
                          "value": base64.b64encode(signature).decode("ascii")},
            "public_key": public_pem(signing), "incidents": chains, "chains": named}


def write_export(export: dict[str, Any], path: Path, public_key_path: Path | None = None) -> Path:
    """Write the export and the public key beside it (FILE.pub.pem unless named); returns the key's path."""
    path.write_text(json.dumps(export, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    key_path = public_key_path or path.with_name(path.name + ".pub.pem")
    key_path.write_text(export["public_key"], encoding="utf-8")
    return key_path


# -- offline verification --------------------------------------------------------------------------------------


@dataclass
class ExportCheck:
    valid: bool = True
    incidents: int = 0
    chains: int = 0  # named chains (desk, registers, prevention runs)
    entries: int = 0
    key_id: str | None = None
    # The first bad entry: (incident code, seq) and why; problems lists everything found.
    first_bad: tuple[str, int] | None = None
    reason: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, message: str, code: str | None = None, seq: int | None = None) -> None:
        self.valid = False
        self.problems.append(message)
        if self.reason is None:
            self.reason = message
        if self.first_bad is None and code is not None and seq is not None:
            self.first_bad = (code, seq)


def _check_chain(check: ExportCheck, code: str, incident_id: str | None, entries: list[Any],
                 sealed: dict[str, Any] | None, chain: str | None = None) -> None:
    """Check one chain: an incident's (`incident_id`) or a named one (`chain`, entries without an incident)."""
    hashes = list(sealed.get("hashes") or []) if sealed else []
    previous = GENESIS
    for index, entry in enumerate(entries):
        expected_seq = index + 1
        if not isinstance(entry, dict):
            check.fail(f"{code}: entry {expected_seq} is not an object", code, expected_seq)
            return
        seq = entry.get("seq")
        if seq != expected_seq:
            found = seq if isinstance(seq, int) else expected_seq
            check.fail(f"{code}: entry {min(expected_seq, found)}: expected entry {expected_seq} here, found {seq} "
                       "(deleted or reordered)", code, min(expected_seq, found))
            return
        if entry.get("incident_id") != incident_id or (chain is not None and entry.get("chain") != chain):
            check.fail(f"{code}: entry {seq}: belongs to another chain", code, seq)
            return
        if entry.get("prev_hash") != previous:
            check.fail(f"{code}: entry {seq}: does not link to the entry before it", code, seq)
            return
        if entry_hash(entry) != entry.get("hash"):
            check.fail(f"{code}: entry {seq}: its content does not match its hash (edited)", code, seq)
            return
        if sealed is not None and (index >= len(hashes) or hashes[index] != entry["hash"]):
            what = "is not in what Baton signed (added)" if index >= len(hashes) else \
                "is not the entry Baton signed (edited and re-hashed)"
            check.fail(f"{code}: entry {seq}: {what}", code, seq)
            return
        previous = entry["hash"]
    if sealed is not None:
        count = sealed.get("entries")
        if len(entries) < len(hashes) or count != len(entries):
            check.fail(f"{code}: entry {len(entries) + 1}: Baton signed {count} entries but {len(entries)} are "
                       "here (truncated)", code, len(entries) + 1)
            return
        if entries and sealed.get("head_hash") != previous:
            check.fail(f"{code}: entry {len(entries) + 1}: the chain ends before the head Baton signed "
                       "(truncated)", code, len(entries) + 1)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def verify_export(export: Any, public_key: Ed25519PublicKey | bytes | str) -> ExportCheck:
    """Check an export (parsed JSON) against the public key the checker trusts."""
    check = ExportCheck()
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    check.key_id = key_id(key)
    if not isinstance(export, dict) or export.get("format") != FORMAT or not isinstance(export.get("seal"), dict):
        check.fail(f"not a Baton ledger export ({FORMAT})")
        return check
    seal = export["seal"]
    sealed_by_id: dict[str, dict[str, Any]] = {str(s.get("incident_id")): s for s in _list(seal.get("incidents"))
                                               if isinstance(s, dict)}
    chains = _list(export.get("incidents"))
    seen: set[str] = set()
    for chain in chains:
        if not isinstance(chain, dict):
            check.fail("an incident in the file is not an object")
            continue
        incident_id = str(chain.get("incident_id"))
        sealed = sealed_by_id.get(incident_id)
        code = str(sealed.get("code") if sealed else chain.get("code"))
        entries = _list(chain.get("entries"))
        if incident_id in seen:
            check.fail(f"{code}: its chain appears twice")
            continue
        seen.add(incident_id)
        check.incidents += 1
        check.entries += len(entries)
        if sealed is None:
            check.fail(f"{code}: not in what Baton signed")
        _check_chain(check, code, incident_id, entries, sealed)
    for incident_id, sealed in sealed_by_id.items():
        if incident_id not in seen:
            check.fail(f"{sealed.get('code')}: signed by Baton but its chain is missing from the file",
                       str(sealed.get("code")), 1)
    _check_named(check, export, seal)
    digest = sha256_hex(canonical_json(seal))
    if export.get("digest") != digest:
        check.fail("the seal does not match its digest (the seal was altered)")
    signature = _dict(export.get("signature"))
    try:
        raw = base64.b64decode(str(signature.get("value", "")), validate=True)
        key.verify(raw, digest.encode("ascii"))
    except (InvalidSignature, ValueError):
        signer = signature.get("key_id")
        check.fail(f"the signature does not verify with public key {check.key_id}"
                   + (f" (the file names key {signer})" if signer and signer != check.key_id else "")
                   + ": signed by another key, or the seal was altered")
    return check


def _check_named(check: ExportCheck, export: dict[str, Any], seal: dict[str, Any]) -> None:
    """The named chains (no incident) in the file against the seal's."""
    sealed_by_name = {str(s.get("chain")): s for s in _list(seal.get("chains")) if isinstance(s, dict)}
    seen: set[str] = set()
    for chain in _list(export.get("chains")):
        if not isinstance(chain, dict):
            check.fail("a chain in the file is not an object")
            continue
        name = str(chain.get("chain"))
        if name in seen:
            check.fail(f"{name}: its chain appears twice")
            continue
        seen.add(name)
        entries = _list(chain.get("entries"))
        check.chains += 1
        check.entries += len(entries)
        sealed = sealed_by_name.get(name)
        if sealed is None:
            check.fail(f"{name}: not in what Baton signed")
        _check_chain(check, name, None, entries, sealed, chain=name)
    for name in sealed_by_name:
        if name not in seen:
            check.fail(f"{name}: signed by Baton but its chain is missing from the file", name, 1)


def verify_file(path: Path, public_key_path: Path) -> ExportCheck:
    key = load_public_key(public_key_path.read_bytes())
    try:
        export = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        check = ExportCheck()
        check.fail(f"cannot read {path}: {exc}")
        return check
    return verify_export(export, key)


def describe(check: ExportCheck) -> list[str]:
    """The lines a checker prints: the verdict, then each problem."""
    if check.valid:
        named = f"{check.chains} other chain(s), " if check.chains else ""
        return [f"valid: {check.incidents} incident(s), {named}{check.entries} entries, signed by Baton key "
                f"{check.key_id}"]
    head = "BROKEN"
    if check.first_bad is not None:
        head += f": {check.first_bad[0]} first bad entry {check.first_bad[1]}"
    return [head, *(f"  - {problem}" for problem in check.problems)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.ledger.export",
                                     description="Check a signed Baton ledger export offline.")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="Check an export file against Baton's public key.")
    verify.add_argument("file", type=Path)
    verify.add_argument("--public-key", type=Path, required=True, help="Baton's public key (PEM) you trust.")
    args = parser.parse_args(argv)
    try:
        check = verify_file(args.file, args.public_key)
    except (OSError, ExportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in describe(check):
        print(line)
    return 0 if check.valid else 1


if __name__ == "__main__":
    sys.exit(main())
