"""Signed ledger exports (core/ledger/export.py): an export verifies offline with Baton's public key; any edit,
deletion, reordering or truncation of its entries is found and the first bad entry named; an altered seal or a
wrong public key fails the signature. Direct tampering with the database is tested in test_engine_rules.py."""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from typer.testing import CliRunner

from core.incidents.service import find_incident
from core.ledger import chain as ledger
from core.ledger.export import (
    KEY_ENV,
    KEY_FILE,
    ExportError,
    build_export,
    canonical_json,
    entry_hash,
    key_id,
    public_pem,
    sha256_hex,
    signing_key,
    verify_export,
    verify_file,
    write_export,
)
from core.platform.db import session_scope
from core.platform.settings import get_settings
from flows.cli import app
from tests import engine_driver as drive

ROOT = Path(__file__).resolve().parent.parent
FORECAST = {"rainfall_1h": 60, "rainfall_24h": 180, "warning_colour": "orange",
            "valid_until": drive.VALID_UNTIL}


def two_incidents() -> tuple[str, str]:
    """Two flood incidents with a few handoffs each (the first has a completed forecast)."""
    first = drive.open_("flood")
    drive.step(first)
    drive.complete_step(first, "rainstorm_forecast", FORECAST)
    drive.step(first)
    second = drive.open_("typhoon", level="III")
    drive.step(second)
    return first, second


def export_all(incident_ref: str | None = None, **kwargs: Any) -> dict[str, Any]:
    with session_scope() as session:
        incident = find_incident(session, incident_ref) if incident_ref else None
        return build_export(session, incident=incident, **kwargs)


def public_key() -> str:
    return public_pem(signing_key())


def test_an_export_verifies_and_hashes_its_entries_as_the_ledger_does(baton: str) -> None:
    first, second = two_incidents()
    export = export_all()
    check = verify_export(export, public_key())
    assert check.valid, check.problems
    assert check.incidents == 2 and check.first_bad is None
    with session_scope() as session:
        chains = {i: ledger.read_chain(session, i) for i in (first, second)}
    assert check.entries == sum(len(c) for c in chains.values()) and check.entries >= 8
    # Entry by entry, the offline hash is the ledger's own.
    for chain in export["incidents"]:
        rows = chains[chain["incident_id"]]
        assert [e["hash"] for e in chain["entries"]] == [ledger.entry_hash(r) for r in rows]
        assert all(entry_hash(e) == e["hash"] for e in chain["entries"])
    # One incident alone, by code.
    code = export["seal"]["incidents"][0]["code"]
    single = export_all(incident_ref=code)
    assert [s["code"] for s in single["seal"]["incidents"]] == [code]
    assert verify_export(single, public_key()).valid


def test_the_key_file_is_made_once_with_mode_0600_and_reused(baton: str) -> None:
    two_incidents()
    path = get_settings().data_dir / KEY_FILE
    assert not path.exists()
    first = export_all()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = export_all()
    assert first["signature"]["key_id"] == second["signature"]["key_id"] == key_id(signing_key())
    assert first["public_key"] == second["public_key"]
    assert "PRIVATE" not in json.dumps(first)


def test_the_key_can_come_from_the_environment(baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    two_incidents()
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    monkeypatch.setenv(KEY_ENV, pem)
    export = export_all()
    assert export["signature"]["key_id"] == key_id(key)
    assert verify_export(export, public_pem(key)).valid
    assert not (get_settings().data_dir / KEY_FILE).exists()
    monkeypatch.setenv(KEY_ENV, "not a key")
    with pytest.raises(ExportError, match=KEY_ENV):
        export_all()


def _entries(export: dict[str, Any], index: int = 0) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = export["incidents"][index]["entries"]
    return entries


def _edit(export: dict[str, Any]) -> None:
    _entries(export)[3]["actor"] = "someone else"


def _edit_details(export: dict[str, Any]) -> None:
    _entries(export)[3]["details"]["forged"] = True


def _edit_and_rehash(export: dict[str, Any]) -> None:
    entry = _entries(export)[3]
    entry["actor"] = "someone else"
    entry["hash"] = entry_hash(entry)


def _rewrite_chain_from_4(export: dict[str, Any]) -> None:
    """The most careful forger: edits entry 4 and re-links and re-hashes every entry after it."""
    entries = _entries(export)
    entries[3]["actor"] = "someone else"
    for index in range(3, len(entries)):
        entries[index]["prev_hash"] = entries[index - 1]["hash"]
        entries[index]["hash"] = entry_hash(entries[index])


def _delete(export: dict[str, Any]) -> None:
    del _entries(export)[3]


def _reorder(export: dict[str, Any]) -> None:
    entries = _entries(export)
    entries[3], entries[4] = entries[4], entries[3]


def _renumber_after_delete(export: dict[str, Any]) -> None:
    """Delete entry 4 and renumber the rest so the sequence looks unbroken."""
    entries = _entries(export)
    del entries[3]
    for index in range(3, len(entries)):
        entries[index]["seq"] = index + 1


def _truncate(export: dict[str, Any]) -> None:
    _entries(export).pop()


def _truncate_and_fix_count(export: dict[str, Any]) -> None:
    _entries(export).pop()
    export["seal"]["incidents"][0]["entries"] -= 1
    export["seal"]["incidents"][0]["hashes"].pop()


def _append(export: dict[str, Any]) -> None:
    entries = _entries(export)
    forged = dict(copy.deepcopy(entries[-1]), seq=len(entries) + 1, prev_hash=entries[-1]["hash"], actor="forger")
    forged["hash"] = entry_hash(forged)
    entries.append(forged)


def _drop_incident(export: dict[str, Any]) -> None:
    del export["incidents"][0]


LAST = -1  # the expected first bad entry is the chain's last one plus one (computed in the test)

TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], int]] = {
    "edit": (_edit, 4),
    "edit-details": (_edit_details, 4),
    "edit-and-rehash": (_edit_and_rehash, 4),
    "rewrite-chain": (_rewrite_chain_from_4, 4),
    "delete": (_delete, 4),
    "delete-and-renumber": (_renumber_after_delete, 4),
    "reorder": (_reorder, 4),
    "truncate": (_truncate, LAST),
    "truncate-and-fix-count": (_truncate_and_fix_count, LAST),
    "append": (_append, LAST),
    "drop-incident": (_drop_incident, 1),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampering_with_an_export_is_detected_at_the_first_bad_entry(baton: str, tamper: str) -> None:
    two_incidents()
    export = export_all()
    assert len(_entries(export)) >= 6
    count = len(_entries(export))
    code = export["seal"]["incidents"][0]["code"]
    change, expected = TAMPERS[tamper]
    if expected == LAST:
        expected = count if tamper.startswith("truncate") else count + 1
    forged = copy.deepcopy(export)
    change(forged)
    check = verify_export(forged, public_key())
    assert not check.valid
    assert check.first_bad == (code, expected), (check.first_bad, check.problems)
    # The other incident's chain is not blamed.
    other = export["seal"]["incidents"][1]["code"]
    assert not any(p.startswith(other) for p in check.problems), check.problems


def test_an_altered_seal_or_signature_fails(baton: str) -> None:
    two_incidents()
    export = export_all()
    key = public_key()
    for change in ("exported_by", "level", "digest", "signature"):
        forged = copy.deepcopy(export)
        if change == "exported_by":
            forged["seal"]["exported_by"] = "someone else"
        elif change == "level":
            forged["seal"]["incidents"][0]["level"] = "I"
        elif change == "digest":
            forged["digest"] = "0" * 64
        else:
            value = bytearray(forged["signature"]["value"].encode())
            value[5] = ord("A") if value[5] != ord("A") else ord("B")
            forged["signature"]["value"] = value.decode()
        check = verify_export(forged, key)
        assert not check.valid, change
        assert any("signature" in p or "digest" in p for p in check.problems), (change, check.problems)


def test_a_wrong_public_key_fails_even_with_the_signers_key_in_the_file(baton: str) -> None:
    two_incidents()
    export = export_all()
    other = Ed25519PrivateKey.generate()
    check = verify_export(export, public_pem(other))
    assert not check.valid and check.first_bad is None
    assert check.reason is not None and f"public key {key_id(other)}" in check.reason
    assert export["signature"]["key_id"] in check.reason
    # A forger who re-signs a forged export with their own key and ships their public key inside the file
    # still fails against the key the checker trusts.
    forged = copy.deepcopy(export)
    _rewrite_chain_from_4(forged)
    forged["seal"]["incidents"][0]["hashes"] = [e["hash"] for e in _entries(forged)]
    forged["seal"]["incidents"][0]["head_hash"] = _entries(forged)[-1]["hash"]
    forged["digest"] = sha256_hex(canonical_json(forged["seal"]))
    forged["signature"]["value"] = base64.b64encode(other.sign(forged["digest"].encode())).decode()
    forged["public_key"] = public_pem(other)
    assert verify_export(forged, public_pem(other)).valid  # consistent under the forger's own key
    assert not verify_export(forged, public_key()).valid  # but not under Baton's


def test_a_broken_chain_in_the_database_is_not_exported(baton: str) -> None:
    first, _ = two_incidents()
    with session_scope() as session:
        session.execute(text("DROP TRIGGER ledger_entry_no_update"))
        entry = ledger.read_chain(session, first)[2]
        session.execute(text("UPDATE ledger_entry SET actor = 'x' WHERE id = :id"), {"id": entry.id})
    with pytest.raises(ExportError, match="first bad entry 3"):
        export_all()


@pytest.mark.slow  # starts processes of its own
def test_the_documented_commands_export_and_check_offline(baton: str, tmp_path: Path) -> None:
    two_incidents()
    out = tmp_path / "export.json"
    runner = CliRunner()
    result = runner.invoke(app, ["ledger", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    key_path = tmp_path / "export.json.pub.pem"
    assert key_path.exists() and "check-export" in result.output
    result = runner.invoke(app, ["ledger", "check-export", str(out), "--public-key", str(key_path)])
    assert result.exit_code == 0 and result.output.startswith("valid: 2 incident(s)"), result.output
    # The offline check in a clean process with no Baton settings, database or data directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    verify = [sys.executable, "-m", "core.ledger.export", "verify", str(out), "--public-key", str(key_path)]
    done = subprocess.run(verify, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("valid: 2 incident(s)"), done.stdout + done.stderr
    # A forged file: exit 1 and the first bad entry named, by both commands.
    export = json.loads(out.read_text(encoding="utf-8"))
    _edit(export)
    code = export["seal"]["incidents"][0]["code"]
    out.write_text(json.dumps(export, ensure_ascii=False), encoding="utf-8")
    done = subprocess.run(verify, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"{code} first bad entry 4" in done.stdout, done.stdout + done.stderr
    result = runner.invoke(app, ["ledger", "check-export", str(out), "--public-key", str(key_path)])
    assert result.exit_code == 1 and f"{code} first bad entry 4" in result.output, result.output
    # A file that is not an export at all, and a key that is not a key.
    out.write_text("{", encoding="utf-8")
    assert not verify_file(out, key_path).valid
    (tmp_path / "bad.pem").write_text("nope", encoding="utf-8")
    result = runner.invoke(app, ["ledger", "check-export", str(out), "--public-key", str(tmp_path / "bad.pem")])
    assert result.exit_code == 2 and "not a PEM public key" in result.output


def test_write_export_puts_the_public_key_where_asked(baton: str, tmp_path: Path) -> None:
    two_incidents()
    export = export_all()
    key_path = write_export(export, tmp_path / "e.json", tmp_path / "baton.pub")
    assert key_path == tmp_path / "baton.pub"
    assert verify_file(tmp_path / "e.json", key_path).valid
