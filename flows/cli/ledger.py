"""`baton ledger`: verify, show and export the accountability ledger; check an export offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlmodel import Session

from flows.cli.console import console, err
from flows.cli.session import session_call

app = typer.Typer(help="The accountability ledger.", no_args_is_help=True)


def _named(session: Session, ref: str | None) -> bool:
    """Whether REF names a chain that belongs to no incident (`desk`, `registers`, `prevention:<run id>`)."""
    from core.ledger.models import LedgerChain

    return ref is not None and session.get(LedgerChain, ref) is not None


@app.command("verify")
def ledger_verify(
    ref: Annotated[str | None, typer.Argument(help="Incident code or id, or a named chain such as desk, registers, "
                                                   "prevention:<run id> (default: all).")] = None,
) -> None:
    """Check the hash chains; name the first bad entry. Exit 1 if any chain is broken."""
    from sqlmodel import select

    from core.incidents.models import Incident
    from core.incidents.service import find_incident
    from core.ledger.chain import named_chains, verify_chain, verify_incident

    def run(session: Any) -> list[tuple[str, Any]]:
        if _named(session, ref):
            return [(str(ref), verify_chain(session, str(ref)))]
        incidents = [find_incident(session, ref)] if ref else list(session.exec(select(Incident)).all())
        names = [] if ref else named_chains(session)
        return [(i.code, verify_incident(session, i.id)) for i in incidents] + [
            (name, verify_chain(session, name)) for name in names]

    bad = 0
    for code, result in session_call(run):
        if result.valid:
            console.print(f"[green]valid[/green] {code}: {result.entries} entries")
        else:
            bad += 1
            console.print(f"[red]BROKEN[/red] {code}: first bad entry {result.first_bad_seq} ({result.reason})")
    if bad:
        raise typer.Exit(1)


@app.command("export")
def ledger_export(
    ref: Annotated[str | None, typer.Argument(help="Incident code or id, or a named chain (default: every "
                                                   "chain).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The export file to write (JSON).")] = Path(
        "ledger-export.json"),
    public_key_out: Annotated[Path | None, typer.Option(help="Where to write Baton's public key "
                                                             "(default: OUTPUT.pub.pem).")] = None,
    actor: Annotated[str, typer.Option(help="Who exports (recorded in the signed seal).")] = "cli:admin",
) -> None:
    """Export ledger chains with a digest signed by Baton (Ed25519), for offline checking by a third party."""
    from core.incidents.service import find_incident
    from core.ledger.export import ExportError, build_export, write_export

    def export_chains(session: Session) -> dict[str, Any]:
        if _named(session, ref):
            return build_export(session, chain=ref, exported_by=actor)
        return build_export(session, incident=find_incident(session, ref) if ref else None, exported_by=actor)

    try:
        export = session_call(export_chains)
    except ExportError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None
    key_path = write_export(export, output, public_key_out)
    entries = sum(len(chain["entries"]) for chain in export["incidents"] + export["chains"])
    console.print(f"exported {len(export['incidents'])} incident(s), {len(export['chains'])} other chain(s), "
                  f"{entries} entries to {output}; "
                  f"public key {export['signature']['key_id']} in {key_path}")
    console.print(f"check it with: baton ledger check-export {output} --public-key {key_path}")


@app.command("check-export")
def ledger_check_export(
    file: Annotated[Path, typer.Argument(help="The export file.")],
    public_key: Annotated[Path, typer.Option(help="Baton's public key (PEM) that you trust.")],
) -> None:
    """Check an export offline (no database): every chain, the seal and the signature. Exit 1 if broken."""
    from core.ledger.export import ExportError, describe, verify_file

    try:
        check = verify_file(file, public_key)
    except (OSError, ExportError) as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(2) from None
    for line in describe(check):
        console.print(line, markup=False)
    if not check.valid:
        raise typer.Exit(1)


@app.command("show")
def ledger_show(ref: Annotated[str, typer.Argument(help="Incident code or id, or a named chain.")]) -> None:
    from core.incidents.service import find_incident
    from core.ledger.chain import read_chain, read_named

    entries = session_call(lambda s: read_named(s, ref) if _named(s, ref) else read_chain(s, find_incident(s, ref).id))
    table = Table("seq", "time (UTC)", "kind", "actor", "from", "to", "step", "hash")
    for e in entries:
        table.add_row(str(e.seq), e.at.strftime("%H:%M:%S.%f")[:-3], e.kind, e.actor, e.from_party, e.to_party,
                      e.step_key or e.subject or "", e.hash[:12])
    console.print(table)

