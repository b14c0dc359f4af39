"""one ledger: the duty desk's, prevention's and registers' side chains become named chains of `ledger_entry`

Every entry of `ledger_entry` belongs to a chain: an incident's (`incident:<id>`, as before) or a named one (`desk`,
`prevention:<run id>`, `registers`), whose head is a row of `ledger_chain`. The rows of `desk_ledger_entry`,
`prevention_record` and `register_import` move into it, re-chained with the ledger's hashing, and those tables (with
`desk_ledger_head` and `prevention_run`'s head columns) are dropped; downgrade moves them back. A side chain that does
not verify is not re-chained (that would launder the break): the migration stops and names it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-13 09:00:00
"""
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime
GENESIS = "0" * 64
DESK, REGISTERS = "desk", "registers"


# -- append-only triggers, as 0001, 0015, 0020 and 0021 made them ---------------------------------------------------
def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _append_only(table: str, function: bool = True) -> None:
    if _postgres():
        if function:
            op.execute(f"""CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
                BEGIN RAISE EXCEPTION '{table} is append-only'; END; $$ LANGUAGE plpgsql""")
        op.execute(f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""")
        op.execute(f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""")
    else:
        op.execute(f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""")
        op.execute(f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END""")


def _drop_append_only(table: str, function: bool = True) -> None:
    if _postgres():
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        if function:
            op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


# -- the tables as this migration reads and writes them ----------------------------------------------------------
ledger = sa.table('ledger_entry', sa.column('id', sa.Integer), sa.column('chain', S), sa.column('incident_id', S),
                  sa.column('subject', S), sa.column('seq', sa.Integer), sa.column('at', T()), sa.column('kind', S),
                  sa.column('actor', S), sa.column('from_party', S), sa.column('to_party', S),
                  sa.column('step_key', S), sa.column('digest', S), sa.column('details', sa.JSON),
                  sa.column('idempotency_key', S), sa.column('prev_hash', S), sa.column('hash', S))
chains = sa.table('ledger_chain', sa.column('name', S), sa.column('seq', sa.Integer), sa.column('hash', S))
desk = sa.table('desk_ledger_entry', sa.column('id', sa.Integer), sa.column('seq', sa.Integer), sa.column('at', T()),
                sa.column('kind', S), sa.column('actor', S), sa.column('subject', S), sa.column('digest', S),
                sa.column('details', sa.JSON), sa.column('idempotency_key', S), sa.column('prev_hash', S),
                sa.column('hash', S))
desk_head = sa.table('desk_ledger_head', sa.column('id', sa.Integer), sa.column('seq', sa.Integer),
                     sa.column('hash', S))
records = sa.table('prevention_record', sa.column('id', sa.Integer), sa.column('run_id', S),
                   sa.column('seq', sa.Integer), sa.column('at', T()), sa.column('kind', S), sa.column('actor', S),
                   sa.column('from_party', S), sa.column('to_party', S), sa.column('task_id', S),
                   sa.column('digest', S), sa.column('details', sa.JSON), sa.column('idempotency_key', S),
                   sa.column('prev_hash', S), sa.column('hash', S))
runs = sa.table('prevention_run', sa.column('id', S), sa.column('ledger_head_seq', sa.Integer),
                sa.column('ledger_head_hash', S))
imports = sa.table('register_import', sa.column('id', sa.Integer), sa.column('at', T()), sa.column('kind', S),
                   sa.column('register_kind', S), sa.column('actor', S), sa.column('organisation', S),
                   sa.column('source', S), sa.column('file_sha256', S), sa.column('rows', sa.Integer),
                   sa.column('added', sa.Integer), sa.column('updated', sa.Integer),
                   sa.column('unchanged', sa.Integer), sa.column('refused', sa.Integer),
                   sa.column('problems', sa.JSON), sa.column('prev_hash', S), sa.column('hash', S))


# -- hashing, frozen here as each chain did it ---------------------------------------------------------------------
def _sha(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _time(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def _ledger_hash(e: dict[str, Any]) -> str:  # core.ledger.chain.entry_hash of a named chain's entry
    return _sha({"incident_id": None, "seq": e["seq"], "at": _time(e["at"]), "kind": e["kind"], "actor": e["actor"],
                 "from": e["from_party"], "to": e["to_party"], "step": None, "digest": e["digest"],
                 "details": e["details"], "idempotency_key": e["idempotency_key"], "prev_hash": e["prev_hash"],
                 "chain": e["chain"], "subject": e["subject"]})


def _desk_hash(e: dict[str, Any]) -> str:
    return _sha({"chain": "desk", "seq": e["seq"], "at": _time(e["at"]), "kind": e["kind"], "actor": e["actor"],
                 "subject": e["subject"], "digest": e["digest"], "details": e["details"],
                 "idempotency_key": e["idempotency_key"], "prev_hash": e["prev_hash"]})


def _record_hash(e: dict[str, Any]) -> str:
    return _sha({"run_id": e["run_id"], "seq": e["seq"], "at": _time(e["at"]), "kind": e["kind"],
                 "actor": e["actor"], "from": e["from_party"], "to": e["to_party"], "task": e["task_id"],
                 "digest": e["digest"], "details": e["details"], "idempotency_key": e["idempotency_key"],
                 "prev_hash": e["prev_hash"]})


def _import_hash(e: dict[str, Any]) -> str:
    return _sha({"at": _time(e["at"]), "kind": e["kind"], "register": e["register_kind"], "actor": e["actor"],
                 "organisation": e["organisation"], "source": e["source"], "file_sha256": e["file_sha256"],
                 "counts": [e["rows"], e["added"], e["updated"], e["unchanged"], e["refused"]],
                 "problems": e["problems"], "prev_hash": e["prev_hash"]})


def _check(name: str, rows: list[dict[str, Any]], hash_of: Any, head: tuple[int, str] | None,
           numbered: bool = True) -> None:
    """Stop the migration when a side chain does not verify: re-chaining it would hide the break."""
    previous = GENESIS
    for index, row in enumerate(rows, start=1):
        if (numbered and row["seq"] != index) or row["prev_hash"] != previous or hash_of(row) != row["hash"]:
            raise RuntimeError(f"{name} does not verify at its entry {index}; it is not moved into the ledger. "
                               "Investigate it (and restore it from a backup) before upgrading.")
        previous = row["hash"]
    if head is not None and (head[0] != len(rows) or (rows and head[1] != previous)):
        raise RuntimeError(f"{name} does not match its head (truncated); it is not moved into the ledger")


def _rechain(name: str, entries: list[dict[str, Any]]) -> None:
    """Append the entries (in order) as the named chain NAME, and write its head."""
    previous = GENESIS
    for seq, entry in enumerate(entries, start=1):
        entry.update(chain=name, incident_id=None, step_key=None, seq=seq, prev_hash=previous)
        entry["hash"] = previous = _ledger_hash(entry)
    if entries:
        op.get_bind().execute(ledger.insert(), entries)
        op.get_bind().execute(chains.insert(), [{"name": name, "seq": len(entries), "hash": previous}])


def _rows(query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in op.get_bind().execute(query)]


def upgrade() -> None:
    # ledger_entry: every entry in a chain; an entry without an incident has a named chain (and maybe a subject)
    _drop_append_only('ledger_entry', function=False)
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain', S(length=80), nullable=True))
        batch_op.add_column(sa.Column('subject', S(length=80), nullable=True))
    op.execute("UPDATE ledger_entry SET chain = 'incident:' || incident_id")
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.alter_column('chain', existing_type=S(length=80), nullable=False)
        batch_op.alter_column('incident_id', existing_type=S(length=36), nullable=True)
        batch_op.drop_constraint('uq_ledger_seq', type_='unique')
        batch_op.create_unique_constraint('uq_ledger_chain_seq', ['chain', 'seq'])
        batch_op.create_index(batch_op.f('ix_ledger_entry_subject'), ['subject'], unique=False)
    _append_only('ledger_entry', function=False)
    op.create_table('ledger_chain',
    sa.Column('name', S(length=80), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', S(length=64), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )

    # the duty desk's chain
    rows = _rows(sa.select(desk).order_by(desk.c.id))
    head = op.get_bind().execute(sa.select(desk_head.c.seq, desk_head.c.hash).where(desk_head.c.id == 1)).first()
    _check("desk_ledger_entry", rows, _desk_hash, (head[0], head[1]) if head is not None else None)
    _rechain(DESK, [{"subject": r["subject"], "at": r["at"], "kind": r["kind"], "actor": r["actor"],
                     "from_party": "", "to_party": "", "digest": r["digest"], "details": r["details"],
                     "idempotency_key": f"{DESK}:{r['idempotency_key']}"} for r in rows])

    # a chain per prevention run
    for run in _rows(sa.select(runs).order_by(runs.c.id)):
        rows = _rows(sa.select(records).where(records.c.run_id == run["id"]).order_by(records.c.id))
        _check(f"prevention_record of run {run['id']}", rows, _record_hash,
               (run["ledger_head_seq"], run["ledger_head_hash"]))
        name = f"prevention:{run['id']}"
        _rechain(name, [{"subject": f"task:{r['task_id']}" if r["task_id"] else None, "at": r["at"],
                         "kind": r["kind"], "actor": r["actor"], "from_party": r["from_party"],
                         "to_party": r["to_party"], "digest": r["digest"], "details": r["details"],
                         "idempotency_key": f"{name}:{r['idempotency_key']}"} for r in rows])

    # the register imports
    rows = _rows(sa.select(imports).order_by(imports.c.id))
    _check("register_import", rows, _import_hash, None, numbered=False)
    _rechain(REGISTERS, [{"subject": f"register:{r['register_kind']}", "at": r["at"], "kind": r["kind"],
                          "actor": r["actor"], "from_party": r["organisation"] or "", "to_party": "",
                          "digest": _sha({"file_sha256": r["file_sha256"]}),
                          "details": {"register": r["register_kind"], "organisation": r["organisation"],
                                      "source": r["source"], "file_sha256": r["file_sha256"], "rows": r["rows"],
                                      "added": r["added"], "updated": r["updated"], "unchanged": r["unchanged"],
                                      "refused": r["refused"], "problems": r["problems"]},
                          "idempotency_key": f"{REGISTERS}:import:{r['id']}"} for r in rows])

    # the side chains go
    for table in ('desk_ledger_entry', 'prevention_record', 'register_import'):
        _drop_append_only(table)
    with op.batch_alter_table('desk_ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_desk_ledger_entry_subject'))
    with op.batch_alter_table('prevention_record', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prevention_record_run_id'))
    with op.batch_alter_table('register_import', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_register_import_at'))
    for table in ('desk_ledger_entry', 'desk_ledger_head', 'prevention_record', 'register_import'):
        op.drop_table(table)
    with op.batch_alter_table('prevention_run', schema=None) as batch_op:
        batch_op.drop_column('ledger_head_hash')
        batch_op.drop_column('ledger_head_seq')


def _rehash(rows: list[dict[str, Any]], hash_of: Any) -> str:
    previous = GENESIS
    for row in rows:
        row["prev_hash"] = previous
        row["hash"] = previous = hash_of(row)
    return previous


def downgrade() -> None:
    named = _rows(sa.select(ledger).where(ledger.c.incident_id.is_(None)).order_by(ledger.c.id))
    unknown = sorted({e["chain"] for e in named} - {DESK, REGISTERS}
                     - {e["chain"] for e in named if e["chain"].startswith("prevention:")})
    if unknown:
        raise RuntimeError(f"the ledger has chains revision 0022 has no table for: {', '.join(unknown)}")

    op.create_table('desk_ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', T(), nullable=False),
    sa.Column('kind', S(length=32), nullable=False),
    sa.Column('actor', S(length=100), nullable=False),
    sa.Column('subject', S(length=80), nullable=False),
    sa.Column('digest', S(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', S(length=200), nullable=False),
    sa.Column('prev_hash', S(length=64), nullable=False),
    sa.Column('hash', S(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('seq')
    )
    with op.batch_alter_table('desk_ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_desk_ledger_entry_subject'), ['subject'], unique=False)
    op.create_table('desk_ledger_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('hash', S(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('prevention_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', S(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at', T(), nullable=False),
    sa.Column('kind', S(length=32), nullable=False),
    sa.Column('actor', S(length=100), nullable=False),
    sa.Column('from_party', S(length=100), nullable=False),
    sa.Column('to_party', S(length=100), nullable=False),
    sa.Column('task_id', S(length=36), nullable=True),
    sa.Column('digest', S(length=64), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('idempotency_key', S(length=200), nullable=False),
    sa.Column('prev_hash', S(length=64), nullable=False),
    sa.Column('hash', S(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['prevention_run.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key'),
    sa.UniqueConstraint('run_id', 'seq', name='uq_prevention_record_seq')
    )
    with op.batch_alter_table('prevention_record', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prevention_record_run_id'), ['run_id'], unique=False)
    op.create_table('register_import',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', T(), nullable=False),
    sa.Column('kind', S(length=32), nullable=False),
    sa.Column('register_kind', S(length=32), nullable=False),
    sa.Column('actor', S(length=100), nullable=False),
    sa.Column('organisation', S(length=64), nullable=True),
    sa.Column('source', S(length=200), nullable=False),
    sa.Column('file_sha256', S(length=64), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('added', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('unchanged', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('problems', sa.JSON(), nullable=False),
    sa.Column('prev_hash', S(length=64), nullable=False),
    sa.Column('hash', S(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('hash')
    )
    with op.batch_alter_table('register_import', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_register_import_at'), ['at'], unique=False)
    with op.batch_alter_table('prevention_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ledger_head_seq', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('ledger_head_hash', S(length=64), nullable=False, server_default=''))

    bind = op.get_bind()
    # the desk's entries, re-chained as 0021 hashed them
    rows = [{"seq": i, "at": e["at"], "kind": e["kind"], "actor": e["actor"], "subject": e["subject"] or "",
             "digest": e["digest"], "details": e["details"],
             "idempotency_key": e["idempotency_key"].removeprefix(f"{DESK}:")}
            for i, e in enumerate((e for e in named if e["chain"] == DESK), start=1)]
    head = _rehash(rows, _desk_hash)
    if rows:
        bind.execute(desk.insert(), rows)
        bind.execute(desk_head.insert(), [{"id": 1, "seq": len(rows), "hash": head}])
    # each run's records, as 0020 hashed them; the run keeps its head again
    for name in sorted({e["chain"] for e in named if e["chain"].startswith("prevention:")}):
        run_id = name.partition(":")[2]
        rows = [{"run_id": run_id, "seq": i, "at": e["at"], "kind": e["kind"], "actor": e["actor"],
                 "from_party": e["from_party"], "to_party": e["to_party"],
                 "task_id": (e["subject"] or "").removeprefix("task:") or None, "digest": e["digest"],
                 "details": e["details"], "idempotency_key": e["idempotency_key"].removeprefix(f"{name}:")}
                for i, e in enumerate((e for e in named if e["chain"] == name), start=1)]
        head = _rehash(rows, _record_hash)
        bind.execute(records.insert(), rows)
        bind.execute(runs.update().where(runs.c.id == run_id).values(ledger_head_seq=len(rows), ledger_head_hash=head))
    # the register imports, as 0015 hashed them
    rows = []
    for e in (e for e in named if e["chain"] == REGISTERS):
        d = e["details"]
        rows.append({"at": e["at"], "kind": e["kind"], "register_kind": d["register"], "actor": e["actor"],
                     "organisation": d.get("organisation"), "source": d["source"], "file_sha256": d["file_sha256"],
                     "rows": d["rows"], "added": d["added"], "updated": d["updated"], "unchanged": d["unchanged"],
                     "refused": d["refused"], "problems": d["problems"]})
    _rehash(rows, _import_hash)
    if rows:
        bind.execute(imports.insert(), rows)
    for table in ('desk_ledger_entry', 'prevention_record', 'register_import'):
        _append_only(table)

    # ledger_entry: incidents' entries only, as before
    _drop_append_only('ledger_entry', function=False)
    op.execute("DELETE FROM ledger_entry WHERE incident_id IS NULL")
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entry_subject'))
        batch_op.drop_constraint('uq_ledger_chain_seq', type_='unique')
        batch_op.create_unique_constraint('uq_ledger_seq', ['incident_id', 'seq'])
        batch_op.alter_column('incident_id', existing_type=S(length=36), nullable=False)
        batch_op.drop_column('subject')
        batch_op.drop_column('chain')
    _append_only('ledger_entry', function=False)
    op.drop_table('ledger_chain')
