"""`baton registers`: import a register file (CSV, XLSX or GeoJSON) and export one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.console import console, report_import
from flows.cli.session import session_call

app = typer.Typer(help="Registers: risk points, shelters, material reserves, rescue teams, experts, vulnerable "
                       "residents (风险隐患点、避难场所、应急物资、救援队伍、专家库、重点人群).", no_args_is_help=True)
CLI_ACTOR = "cli:admin"
KINDS = "risk_point, shelter, reserve, team, expert, vulnerable_resident"


def _as(session: object, username: str | None) -> object:
    """The user the command acts as: a named Baton user, or the emergency office (the CLI's operator)."""
    from sqlmodel import Session, select

    from core.platform.errors import NotFound
    from core.users.models import Role, User

    assert isinstance(session, Session)
    if username is None:
        return User(username="cli", role=Role.office, password_hash="")
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"no user {username}")
    return user


@app.command("import")
def registers_import(
        kind: Annotated[str, typer.Argument(help=f"The register: {KINDS}.")],
        file: Annotated[Path, typer.Argument(help="A .csv, .xlsx or .geojson file.", exists=True, dir_okay=False,
                                             readable=True)],
        datum: Annotated[str, typer.Option(help="The file's datum: wgs84, or gcj02 (高德, 腾讯), converted.")
                         ] = "wgs84",
        as_user: Annotated[str | None, typer.Option("--as", help="Import as this user (a department imports only "
                                                                  "its own entries); default the office.")] = None,
) -> None:
    """Import a register file: bad rows are refused (FILE:ROW:FIELD: code: why, on stderr, exit 1), the good rows
    kept; importing the same file again changes nothing."""
    from sqlmodel import Session

    from core.geo.shapes import Datum
    from core.registers import files, importing, service
    from core.users.models import User

    data = file.read_bytes()

    def run(session: Session) -> importing.ImportResult:
        register = service.register_kind(kind)
        user = _as(session, as_user)
        assert isinstance(user, User)
        rows = files.read_rows(register, file.name, data)
        return importing.import_rows(session, kind=register, rows=rows, source=file.name, data=data, user=user,
                                     datum=Datum(datum if datum in ("wgs84", "gcj02") else "wgs84"),
                                     actor=CLI_ACTOR if as_user is None else None)

    result = session_call(run)
    report_import(file, result)


@app.command("export")
def registers_export(
        kind: Annotated[str, typer.Argument(help=f"The register: {KINDS}.")],
        file: Annotated[Path, typer.Argument(help="Where to write: .csv, .xlsx or .geojson.", dir_okay=False)],
        as_user: Annotated[str | None, typer.Option("--as", help="Export what this user reads; default the "
                                                                  "office.")] = None,
) -> None:
    """Export a register (what the user reads) as a file that imports again unchanged."""
    from sqlmodel import Session

    from core.registers import files, service
    from core.users.models import User

    def run(session: Session) -> bytes:
        register = service.register_kind(kind)
        user = _as(session, as_user)
        assert isinstance(user, User)
        return files.write(register, service.all_entries(session, kind=register, user=user),
                           files.file_format(file.name))

    data = session_call(run)
    file.write_bytes(data)
    console.print(f"{file}: {len(data)} bytes")
