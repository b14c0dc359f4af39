"""The `baton` command: plans, the database, workers, the embedded system, and the office's and
departments' actions from a terminal."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.platform.errors import BatonError
from core.platform.settings import get_settings
from process_defs.cli import app as defs_app

app = typer.Typer(help="Baton: multi-department emergency response, every handoff accounted for.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(defs_app, name="defs")
db_app = typer.Typer(help="The application database.", no_args_is_help=True)
incident_app = typer.Typer(help="Open, list, show incidents; change their level.", no_args_is_help=True)
task_app = typer.Typer(help="Department tasks: list, acknowledge, complete, hand back.", no_args_is_help=True)
ledger_app = typer.Typer(help="The accountability ledger.", no_args_is_help=True)
users_app = typer.Typer(help="Users of the API and pages.", no_args_is_help=True)
signals_app = typer.Typer(help="Monitoring sources that post signals.", no_args_is_help=True)
stack_app = typer.Typer(help="Server mode on one machine: PostgreSQL, Prefect, workers, API.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(incident_app, name="incident")
app.add_typer(task_app, name="task")
app.add_typer(ledger_app, name="ledger")
app.add_typer(users_app, name="users")
app.add_typer(stack_app, name="stack")
app.add_typer(signals_app, name="signals")

# Tables stay readable when piped (to grep, to a log): no terminal means a wide page, not 80 columns.
WIDTH = max(shutil.get_terminal_size((160, 40)).columns, 100)
console = Console(highlight=False, width=WIDTH)
err = Console(stderr=True, highlight=False, width=WIDTH)
T = TypeVar("T")


def _session_call(fn: Callable[..., T], **kwargs: Any) -> T:
    """Run a service in one transaction; domain errors become a clear message and exit code 1."""
    from core.platform.db import session_scope
    from core.platform.migrate import upgrade

    upgrade()
    try:
        with session_scope() as session:
            return fn(session, **kwargs)
    except BatonError as exc:
        # Escaped: the code in brackets and the message are text, not rich markup.
        err.print(f"[red]error[/red] {escape(f'[{exc.code}]')} {escape(exc.message)}")
        details = exc.details
        if isinstance(details, dict):  # {"reason": code} is for programs and pages; the message says it here
            details = [f"{k}: {v}" for k, v in details.items() if k != "reason"]
        if details:
            for item in details if isinstance(details, list) else [details]:
                err.print(f"  - {escape(str(item))}")
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the latest schema."""
    from core.platform.migrate import current_revision, upgrade

    upgrade()
    console.print(f"database at revision {current_revision()}: {get_settings().resolved_database_url()}")


@app.command("worker")
def worker() -> None:
    """Run a Baton worker (needs PREFECT_API_URL pointing at a Prefect server)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from flows.worker import run_worker

    run_worker()


# -- incidents ---------------------------------------------------------------------------------------
@incident_app.command("open")
def incident_open(
    type_key: Annotated[str, typer.Argument(metavar="TYPE", help="Incident type, e.g. flood.")],
    title: Annotated[str, typer.Option(help="Short title.")],
    level: Annotated[str | None, typer.Option(help="IV, III, II or I (default: the plan's).")] = None,
    location: Annotated[str | None, typer.Option(help="Place name.")] = None,
    drill: Annotated[bool, typer.Option(help="Open as a drill.")] = False,
    actor: Annotated[str, typer.Option(help="Who opens it.")] = "cli:office",
) -> None:
    """Open an incident; a running worker starts its flow."""
    from core.incidents.service import open_incident

    opened = _session_call(open_incident, type_key=type_key, title=title, level=level, location_name=location,
                           drill=drill, actor=actor)
    console.print(f"opened {opened.incident.code} ({opened.incident.id}) at level {opened.incident.level}")


@incident_app.command("list")
def incident_list() -> None:
    from sqlmodel import col, select

    from core.incidents.models import Incident

    rows = _session_call(lambda s: list(s.exec(select(Incident).order_by(col(Incident.created_at).desc())
                                               .limit(200)).all()))
    table = Table("code", "type", "level", "stage", "status", "drill", "flow run", "title")
    for row in rows:
        table.add_row(row.code, row.type, row.level, row.stage, row.status, "yes" if row.drill else "",
                      row.flow_run_id or "-", row.title)
    console.print(table)


@incident_app.command("show")
def incident_show(ref: Annotated[str, typer.Argument(help="Incident code or id.")]) -> None:
    from core.incidents.engine import latest_tasks
    from core.incidents.service import find_incident

    def load(session: Any) -> tuple[Any, list[Any]]:
        incident = find_incident(session, ref)
        tasks = sorted(latest_tasks(session, incident.id).values(), key=lambda t: t.created_at)
        return incident, tasks

    incident, tasks = _session_call(load)
    console.print(f"[bold]{incident.code}[/bold] {incident.title} type={incident.type} level={incident.level} "
                  f"stage={incident.stage} status={incident.status} flow_run={incident.flow_run_id}")
    table = Table("task id", "stage", "step", "department", "kind", "status", "due (UTC)")
    for task in tasks:
        table.add_row(task.id, task.stage, task.step_key, task.department, task.kind, task.status,
                      task.due_at.strftime("%m-%d %H:%M") if task.due_at else "")
    console.print(table)


@incident_app.command("level")
def incident_level(
    ref: Annotated[str, typer.Argument(help="Incident code or id.")],
    level: Annotated[str, typer.Argument(help="New level: IV, III, II or I.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    actor: Annotated[str, typer.Option()] = "cli:office",
) -> None:
    from core.incidents.service import change_level, find_incident

    incident = _session_call(lambda s: change_level(s, incident_id=find_incident(s, ref).id, level=level,
                                                    actor=actor, reason=reason))
    console.print(f"{incident.code} is now at level {incident.level}")


# -- tasks -------------------------------------------------------------------------------------------
@task_app.command("list")
def task_list(
    department: Annotated[str | None, typer.Option(help="Only this department's inbox.")] = None,
    incident: Annotated[str | None, typer.Option(help="Only this incident (code or id).")] = None,
    open_only: Annotated[bool, typer.Option("--open/--all", help="Only open tasks.")] = True,
) -> None:
    from sqlmodel import col, select

    from core.incidents.models import OPEN_STATUSES, DepartmentTask, Incident
    from core.incidents.service import find_incident

    def load(session: Any) -> list[Any]:
        query = select(DepartmentTask, Incident.code).join(Incident, col(Incident.id) == DepartmentTask.incident_id)
        if department:
            query = query.where(DepartmentTask.department == department)
        if incident:
            query = query.where(DepartmentTask.incident_id == find_incident(session, incident).id)
        if open_only:
            query = query.where(col(DepartmentTask.status).in_(OPEN_STATUSES), DepartmentTask.kind == "human")
        return list(session.exec(query.order_by(col(DepartmentTask.created_at))).all())

    table = Table("task id", "incident", "step", "department", "status", "due (UTC)")
    for task, code in _session_call(load):
        table.add_row(task.id, code, task.step_key, task.department, task.status,
                      task.due_at.strftime("%m-%d %H:%M") if task.due_at else "")
    console.print(table)


@task_app.command("ack")
def task_ack(task_id: str, actor: Annotated[str, typer.Option()] = "cli:department") -> None:
    from core.incidents.handoffs import acknowledge

    task = _session_call(acknowledge, task_id=task_id, actor=actor)
    console.print(f"acknowledged {task.step_key} ({task.department})")


@task_app.command("complete")
def task_complete(
    task_id: str,
    outputs: Annotated[str, typer.Option(help="Form values as JSON, or @file.json.")] = "{}",
    note: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str, typer.Option()] = "cli:department",
) -> None:
    from core.incidents.handoffs import complete

    text = Path(outputs[1:]).read_text(encoding="utf-8") if outputs.startswith("@") else outputs
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        err.print(f"[red]error[/red] --outputs is not JSON: {exc}")
        raise typer.Exit(1) from None
    task = _session_call(complete, task_id=task_id, actor=actor, outputs=values, note=note)
    console.print(f"completed {task.step_key} ({task.department})")


@task_app.command("hand-back")
def task_hand_back(task_id: str, reason: Annotated[str, typer.Option()],
                   actor: Annotated[str, typer.Option()] = "cli:department") -> None:
    from core.incidents.handoffs import hand_back

    task = _session_call(hand_back, task_id=task_id, actor=actor, reason=reason)
    console.print(f"handed back {task.step_key} ({task.department})")


# -- ledger ------------------------------------------------------------------------------------------
@ledger_app.command("verify")
def ledger_verify(
    ref: Annotated[str | None, typer.Argument(help="Incident code or id (default: all).")] = None,
) -> None:
    """Check the hash chain; name the first bad entry. Exit 1 if any chain is broken."""
    from sqlmodel import select

    from core.incidents.models import Incident
    from core.incidents.service import find_incident
    from core.ledger.chain import verify_incident

    def run(session: Any) -> list[tuple[str, Any]]:
        incidents = [find_incident(session, ref)] if ref else list(session.exec(select(Incident)).all())
        return [(i.code, verify_incident(session, i.id)) for i in incidents]

    bad = 0
    for code, result in _session_call(run):
        if result.valid:
            console.print(f"[green]valid[/green] {code}: {result.entries} entries")
        else:
            bad += 1
            console.print(f"[red]BROKEN[/red] {code}: first bad entry {result.first_bad_seq} ({result.reason})")
    if bad:
        raise typer.Exit(1)


@ledger_app.command("export")
def ledger_export(
    ref: Annotated[str | None, typer.Argument(help="Incident code or id (default: all incidents).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The export file to write (JSON).")] = Path(
        "ledger-export.json"),
    public_key_out: Annotated[Path | None, typer.Option(help="Where to write Baton's public key "
                                                             "(default: OUTPUT.pub.pem).")] = None,
    actor: Annotated[str, typer.Option(help="Who exports (recorded in the signed seal).")] = "cli:admin",
) -> None:
    """Export ledger chains with a digest signed by Baton (Ed25519), for offline checking by a third party."""
    from core.ledger.export import ExportError, build_export, write_export

    try:
        export = _session_call(build_export, incident_ref=ref, exported_by=actor)
    except ExportError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None
    key_path = write_export(export, output, public_key_out)
    entries = sum(len(chain["entries"]) for chain in export["incidents"])
    console.print(f"exported {len(export['incidents'])} incident(s), {entries} entries to {output}; "
                  f"public key {export['signature']['key_id']} in {key_path}")
    console.print(f"check it with: baton ledger check-export {output} --public-key {key_path}")


@ledger_app.command("check-export")
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


@ledger_app.command("show")
def ledger_show(ref: Annotated[str, typer.Argument(help="Incident code or id.")]) -> None:
    from core.incidents.service import find_incident
    from core.ledger.chain import read_chain

    entries = _session_call(lambda s: read_chain(s, find_incident(s, ref).id))
    table = Table("seq", "time (UTC)", "kind", "actor", "from", "to", "step", "hash")
    for e in entries:
        table.add_row(str(e.seq), e.at.strftime("%H:%M:%S.%f")[:-3], e.kind, e.actor, e.from_party, e.to_party,
                      e.step_key or "", e.hash[:12])
    console.print(table)


# -- users -------------------------------------------------------------------------------------------
@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="office, department, manager or admin.")],
    department: Annotated[str | None, typer.Option(help="Department key (department users only).")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    display_name: Annotated[str, typer.Option()] = "",
) -> None:
    """Add a user. The password comes from stdin (never from the command line, where `ps` would show it)."""
    from core.users.service import add_user

    if not password_stdin:
        err.print("[red]error[/red] give the password on stdin with --password-stdin")
        raise typer.Exit(2)
    password = sys.stdin.readline().rstrip("\n")
    user = _session_call(add_user, username=name, role=role, department=department, password=password,
                         display_name=display_name)
    console.print(f"added {user.username} ({user.role}{', ' + user.department if user.department else ''})")


@users_app.command("list")
def users_list() -> None:
    from core.users.service import list_users, lockouts

    running = _session_call(lockouts)
    table = Table("user", "name", "role", "department", "active", "locked out")
    for user in _session_call(list_users):
        table.add_row(user.username, user.display_name, user.role, user.department or "",
                      "yes" if user.active else "no",
                      ", ".join(x.source or "every address" for x in running.get(user.id, [])))
    console.print(table)


CLI_ADMIN = "cli:admin"


def _for_user(username: str, action: Callable[..., T], **kwargs: Any) -> T:
    """Run an administration service on the user named `username` (the services take ids)."""
    from core.users.service import user_named

    def run(session: Any, **given: Any) -> T:
        return action(session, user_id=user_named(session, username=username).id, **given)

    return _session_call(run, **kwargs)


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="User name.")],
                  reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None) -> None:
    """Refuse the user's logins and end every token and page session they hold."""
    from core.users.service import disable_user

    revoked = _for_user(name, disable_user, actor=CLI_ADMIN, reason=reason)
    console.print(f"disabled {name}; {revoked} token(s) and session(s) ended")


@users_app.command("enable")
def users_enable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    from core.users.service import enable_user

    _for_user(name, enable_user, actor=CLI_ADMIN)
    console.print(f"enabled {name}")


@users_app.command("unlock")
def users_unlock(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Lift a lockout after failed logins before it runs out."""
    from core.users.service import unlock_user

    _for_user(name, unlock_user, actor=CLI_ADMIN)
    console.print(f"unlocked {name}")


@users_app.command("revoke-tokens")
def users_revoke_tokens(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """End every token and page session of the user (a lost phone, a laptop left logged in)."""
    from core.users.service import revoke_all

    revoked = _for_user(name, revoke_all, actor=CLI_ADMIN)
    console.print(f"{revoked} token(s) and session(s) of {name} ended")


@users_app.command("password")
def users_password(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Set a new password (from stdin); the old one's tokens and sessions end and any lockout is lifted."""
    from core.users.service import set_password

    if not password_stdin:
        err.print("[red]error[/red] give the password on stdin with --password-stdin")
        raise typer.Exit(2)
    password = sys.stdin.readline().rstrip("\n")
    revoked = _for_user(name, set_password, password=password, actor=CLI_ADMIN)
    console.print(f"password of {name} set; {revoked} token(s) and session(s) ended")


@users_app.command("audit")
def users_audit(
    action: Annotated[str | None, typer.Option(help="An action or its family: login, user, plan, token…")] = None,
    actor: Annotated[str | None, typer.Option(help="Who: user:NAME, anonymous:ADDRESS, cli:admin.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """The audit trail of logins and administrative changes, newest first."""
    from zoneinfo import ZoneInfo

    from core.users.service import list_audit

    page = _session_call(list_audit, action=action, actor=actor, limit=limit)
    zone = ZoneInfo(get_settings().timezone)
    table = Table("at", "actor", "action", "detail", title=f"{len(page.items)} of {page.total} audit events")
    for event in page.items:
        table.add_row(event.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), event.actor, event.action,
                      json.dumps(event.detail, ensure_ascii=False, default=str))
    console.print(table)


@signals_app.command("add-source")
def signals_add_source(name: Annotated[str, typer.Argument(help="Source name, e.g. hydrology_network.")]) -> None:
    """Register a monitoring source and print its API key (shown once; only a digest is stored)."""
    from core.signals.intake import add_source

    key = _session_call(add_source, name=name, actor="cli:admin")
    console.print(f"source {name} added; its API key (send as X-Api-Key): {key}")


# -- the embedded system -----------------------------------------------------------------------------
@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and pages.")] = 8000,
    workers: Annotated[int, typer.Option(help="Baton worker processes.")] = 1,
    api_workers: Annotated[int, typer.Option(help="uvicorn worker processes for the API.")] = 1,
    prefect_port: Annotated[int, typer.Option(help="Port of the local Prefect server (when Baton starts one).")] = 4200,
) -> None:
    """Run the whole system: a Prefect server (unless BATON_PREFECT_API_URL names one), Baton workers and the
    API with the pages, until Ctrl-C. Settings come from BATON_* environment variables."""
    import time

    from core.platform.migrate import upgrade
    from flows.stack import embedded_stack

    settings = get_settings()
    upgrade()
    try:
        with embedded_stack(settings, workers=workers, prefect_port=prefect_port, api_host=host, api_port=port,
                            api_workers=api_workers) as stack:
            console.print(f"Baton: http://{host}:{port}/  (API docs /docs)   Prefect: "
                          f"{stack.api_url.removesuffix('/api')}   workers: {workers}   "
                          f"database: {settings.resolved_database_url()}")
            try:
                while True:
                    for name, code in stack.revive():
                        err.print(f"[yellow]{name} stopped (exit code {code}); started again[/yellow] "
                                  f"(logs under {settings.data_dir / 'logs'})")
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    except RuntimeError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None


@stack_app.command("up")
def stack_up_command(
    workers: Annotated[int, typer.Option(help="Baton worker processes.")] = 2,
    api_workers: Annotated[int, typer.Option(help="uvicorn worker processes for the API.")] = 2,
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    prefect_port: Annotated[int, typer.Option()] = 4200,
    pg_port: Annotated[int, typer.Option(help="PostgreSQL port.")] = 5433,
    foreground: Annotated[bool, typer.Option(help="Stay attached; SIGTERM or Ctrl-C stops it all.")] = False,
) -> None:
    """Start server mode in the background (PostgreSQL in BATON_DATA_DIR/postgres, Prefect on it, workers, API),
    or with --foreground under a process supervisor."""
    from flows.stack import stack_foreground, stack_up

    data_dir = get_settings().data_dir
    if foreground:
        try:
            stack_foreground(data_dir, workers=workers, api_workers=api_workers, api_port=port,
                             prefect_port=prefect_port, pg_port=pg_port)
        except RuntimeError as exc:
            err.print(f"[red]error[/red] {exc}")
            raise typer.Exit(1) from None
        return
    with console.status("starting PostgreSQL, Prefect, workers and the API"):
        try:
            state = stack_up(data_dir, workers=workers, api_workers=api_workers, api_port=port,
                             prefect_port=prefect_port, pg_port=pg_port)
        except RuntimeError as exc:
            err.print(f"[red]error[/red] {exc}")
            raise typer.Exit(1) from None
    console.print(f"up: API {state['api_url']}  Prefect {state['prefect_api_url']}  workers {workers}")
    console.print(f"export BATON_DATABASE_URL={state['database_url']}  (for baton users add, ledger verify …)")


@stack_app.command("down")
def stack_down_command() -> None:
    """Stop the processes `baton stack up` started; the data stays for the next `up`."""
    from flows.stack import stack_down

    try:
        stopped = stack_down(get_settings().data_dir)
    except RuntimeError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None
    console.print("stopped: " + ", ".join(stopped))


@stack_app.command("status")
def stack_status_command() -> None:
    from flows.stack import alive, read_stack

    try:
        state = read_stack(get_settings().data_dir)
    except RuntimeError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None
    table = Table("process", "pid", "alive")
    for name, pid in state["processes"].items():
        table.add_row(name, str(pid), "yes" if alive(pid) else "[red]no[/red]")
    console.print(table)


@app.command("demo")
def demo(
    simulate: Annotated[bool, typer.Option(help="Let simulated departments work the demo incident.")] = False,
    keep_running: Annotated[bool, typer.Option("--keep-running/--exit", help="Stay up after the demo.")] = True,
    port: Annotated[int, typer.Option(help="Port of the API and pages.")] = 8000,
    prefect_port: Annotated[int, typer.Option()] = 4200,
    level: Annotated[str, typer.Option()] = "II",
) -> None:
    """`make run`: the whole system with demo users (passwords printed) and a demo flood incident."""
    from flows.demo import run_demo

    try:
        code = run_demo(simulate=simulate, keep_running=keep_running, port=port, prefect_port=prefect_port,
                        level=level)
    except RuntimeError as exc:
        err.print(f"[red]error[/red] {exc}")
        code = 1
    raise typer.Exit(code)


# -- learning: lessons, follow-ups, plan changes -----------------------------------------------------------
learning_app = typer.Typer(help="Lessons from incidents and the follow-ups they turn into.", no_args_is_help=True)
plans_app = typer.Typer(help="Plan versions and proposed changes to plans.", no_args_is_help=True)
drill_app = typer.Typer(help="Drills: rehearse a plan with simulated departments on a compressed clock.",
                        no_args_is_help=True)
app.add_typer(learning_app, name="learning")
app.add_typer(plans_app, name="plans")
app.add_typer(drill_app, name="drill")


def _due(text: str) -> Any:
    """An ISO date (due at the end of that day, Baton's time zone) or date and time."""
    from datetime import datetime, time

    try:
        if len(text) == 10:
            return datetime.combine(datetime.fromisoformat(text).date(), time(23, 59, 59))
        return datetime.fromisoformat(text)
    except ValueError:
        err.print(f"[red]error[/red] --due must be a date (2026-12-31) or date and time, not '{text}'")
        raise typer.Exit(2) from None


@learning_app.command("lesson")
def learning_lesson(
    ref: Annotated[str, typer.Argument(help="Incident code or id.")],
    text: Annotated[str, typer.Option(help="The lesson (or @file.txt).")],
    actor: Annotated[str, typer.Option()] = "cli:office",
) -> None:
    """Record a lesson on an incident (ledgered on it)."""
    from core.incidents.service import find_incident
    from core.learning.service import record_lesson

    body = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    lesson = _session_call(lambda s: record_lesson(s, incident_id=find_incident(s, ref).id, text=body, actor=actor))
    console.print(f"lesson {lesson.id} recorded")


@learning_app.command("lessons")
def learning_lessons(ref: Annotated[str, typer.Argument(help="Incident code or id.")]) -> None:
    from core.incidents.service import find_incident
    from core.learning.service import list_follow_ups, list_lessons

    def load(session: Any) -> list[tuple[Any, list[Any]]]:
        lessons = list_lessons(session, find_incident(session, ref).id)
        return [(x, list_follow_ups(session, department=None, lesson_id=x.id, limit=500).items) for x in lessons]

    table = Table("lesson id", "recorded (UTC)", "by", "lesson", "follow-ups")
    for lesson, follow_ups in _session_call(load):
        table.add_row(lesson.id, lesson.created_at.strftime("%Y-%m-%d %H:%M"), lesson.author, lesson.text,
                      "\n".join(f"{f.department}: {f.title} ({f.status})" for f in follow_ups))
    console.print(table)


@learning_app.command("follow-up")
def learning_follow_up(
    lesson_id: Annotated[str, typer.Argument(help="The lesson it comes from.")],
    department: Annotated[str, typer.Option(help="Department key it is assigned to.")],
    title: Annotated[str, typer.Option(help="What is to be done.")],
    due: Annotated[str, typer.Option(help="Due date (2026-12-31) or date and time.")],
    note: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str, typer.Option()] = "cli:office",
) -> None:
    """Assign a follow-up of a lesson to a department (ledgered on the lesson's incident)."""
    from core.learning.service import assign_follow_up

    follow_up = _session_call(assign_follow_up, lesson_id=lesson_id, department=department, title=title,
                              due_at=_due(due), actor=actor, note=note)
    console.print(f"follow-up {follow_up.id} assigned to {follow_up.department}, due {follow_up.due_at:%Y-%m-%d %H:%M}")


@learning_app.command("follow-ups")
def learning_follow_ups(
    department: Annotated[str | None, typer.Option(help="Only this department's.")] = None,
    open_only: Annotated[bool, typer.Option("--open/--all", help="Only open follow-ups.")] = True,
    overdue: Annotated[bool, typer.Option(help="Only overdue ones.")] = False,
) -> None:
    from core.learning.service import is_overdue, list_follow_ups

    page = _session_call(lambda s: list_follow_ups(s, department=department, status="open" if open_only else None,
                                                   overdue=overdue, limit=500))
    table = Table("follow-up id", "department", "title", "due (UTC)", "status")
    for row in page.items:
        late = is_overdue(row)
        table.add_row(row.id, row.department, row.title, row.due_at.strftime("%Y-%m-%d %H:%M"),
                      f"[red]{row.status}, overdue[/red]" if late and row.status == "open" else row.status)
    console.print(table)


@learning_app.command("complete")
def learning_complete(
    follow_up_id: str,
    note: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str, typer.Option()] = "cli:department",
) -> None:
    """Report a follow-up done (ledgered on its incident)."""
    from core.learning.service import complete_follow_up

    row = _session_call(complete_follow_up, follow_up_id=follow_up_id, actor=actor, note=note)
    console.print(f"follow-up {row.id} done ({row.department})")


def _print_diff(diff: str) -> None:
    for line in diff.splitlines():
        style = "green" if line.startswith("+") and not line.startswith("+++") else \
            "red" if line.startswith("-") and not line.startswith("---") else "cyan" if line.startswith("@@") else None
        console.print(line, style=style, markup=False, highlight=False)


@plans_app.command("propose")
def plans_propose(
    type_key: Annotated[str, typer.Argument(metavar="TYPE", help="Incident type, e.g. flood.")],
    file: Annotated[Path, typer.Argument(help="The whole proposed plan file; its version is set for you.")],
    lesson: Annotated[str | None, typer.Option("--lesson", help="The lesson that calls for the change.")] = None,
    actor: Annotated[str, typer.Option()] = "cli:office",
) -> None:
    """Propose a new version of a plan: checked like `baton defs check`, kept with its diff for a planner."""
    from core.learning.service import propose

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error[/red] cannot read {file}: {exc}")
        raise typer.Exit(1) from None
    proposal = _session_call(propose, type_key=type_key, text=text, actor=actor, lesson_id=lesson)
    _print_diff(proposal.diff)
    console.print(f"proposal {proposal.id}: {type_key} v{proposal.base_version} → v{proposal.base_version + 1}; "
                  f"accept with: baton plans accept {proposal.id}")


@plans_app.command("diff")
def plans_diff(proposal_id: str) -> None:
    """Show a proposal's unified diff against the version it changes."""
    from core.learning.service import get_proposal

    proposal = _session_call(get_proposal, proposal_id=proposal_id)
    console.print(f"{proposal.type} v{proposal.base_version} → v{proposal.base_version + 1} ({proposal.status})")
    _print_diff(proposal.diff)


@plans_app.command("accept")
def plans_accept(proposal_id: str, actor: Annotated[str, typer.Option()] = "cli:office") -> None:
    """Accept a proposal: new incidents of the type use the new version; open incidents keep theirs."""
    from core.learning.service import accept

    proposal, row = _session_call(accept, proposal_id=proposal_id, actor=actor)
    console.print(f"{proposal.type} is now at version {row.version} (new incidents use it)")


@plans_app.command("reject")
def plans_reject(proposal_id: str, reason: Annotated[str, typer.Option()],
                 actor: Annotated[str, typer.Option()] = "cli:office") -> None:
    """Reject a proposal, with the reason (audited, and ledgered on the lesson's incident)."""
    from core.learning.service import reject

    proposal = _session_call(reject, proposal_id=proposal_id, actor=actor, reason=reason)
    console.print(f"proposal {proposal.id} rejected")


@plans_app.command("list")
def plans_list(type_key: Annotated[str | None, typer.Argument(metavar="[TYPE]")] = None) -> None:
    """Each plan's current version (shipped file or accepted), and the proposals."""
    from core.learning.service import current_plan, list_proposals
    from core.plans.store import list_types

    def load(session: Any) -> tuple[list[Any], list[Any]]:
        types = [type_key] if type_key else list_types()
        return [current_plan(session, t) for t in types], list_proposals(session, type_key=type_key, limit=200).items

    currents, proposals = _session_call(load)
    table = Table("plan", "current version", "from")
    for item in currents:
        table.add_row(item.type, str(item.version), "shipped file" if item.source == "file" else "accepted proposal")
    console.print(table)
    listing = Table("proposal id", "plan", "version", "status", "by", "proposed (UTC)", "lesson")
    for p in proposals:
        listing.add_row(p.id, p.type, f"{p.base_version} → {p.base_version + 1}", p.status, p.proposed_by,
                        p.created_at.strftime("%Y-%m-%d %H:%M"), p.lesson_id or "")
    console.print(listing)


# -- drills ------------------------------------------------------------------------------------------------
@drill_app.command("run")
def drill_run(
    type_key: Annotated[str, typer.Argument(metavar="TYPE", help="Incident type, or 'all' for every plan at once.")],
    level: Annotated[str, typer.Option(help="IV, III, II or I.")] = "II",
    speed: Annotated[float, typer.Option(help="Clock speed: at 3600 an hour of the plan passes in a second.")] = 3600,
    profile: Annotated[str, typer.Option(help="normal, stress or history (the departments' past answers).")] = "normal",
    seed: Annotated[int | None, typer.Option(help="Seed of the simulated answers (default: random).")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the report (JSON); default "
                                                  "BATON_DATA_DIR/drills/CODE.json.")] = None,
    delay_scale: Annotated[float, typer.Option(help="Multiply the simulated delays (e.g. 0.1 for a smoke run).")] = 1.0,
    timeout: Annotated[float, typer.Option(help="Give up after this many real seconds.")] = 1800,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")] = False,
    quiet: Annotated[bool, typer.Option(help="No line per simulated answer.")] = False,
    claim_wait: Annotated[float, typer.Option(help="With BATON_PREFECT_API_URL: seconds to wait for a running "
                                                   "worker to take the drill before starting one.")] = 5.0,
) -> None:
    """Rehearse a plan: a drill incident on the embedded system (or the running one named by
    BATON_PREFECT_API_URL), simulated departments answering every task, then the readiness report."""
    from flows.drill import DrillSpec, render, run_drills, write_report

    types = _all_types() if type_key == "all" else [type_key]
    specs = [DrillSpec(type=t, level=level, speed=speed, profile=profile,
                       seed=None if seed is None else seed + i, delay_scale=delay_scale) for i, t in enumerate(types)]
    try:
        reports = run_drills(specs, timeout=timeout, claim_wait=claim_wait, console=err if as_json else console,
                             show_answers=not quiet)
    except (ValueError, RuntimeError) as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None
    failed = False
    for report in reports:
        target = out if out is not None and len(reports) == 1 else \
            (out.parent / f"{out.stem}-{report['incident']['code']}{out.suffix}" if out is not None else
             get_settings().data_dir / "drills" / f"{report['incident']['code']}.json")
        write_report(report, target)
        if as_json:
            console.print_json(json.dumps(report, ensure_ascii=False, default=str))
        else:
            render(report, console)
            console.print(f"report: {target}")
        failed |= report["incident"]["status"] != "closed" or not report["safety"]["ok"]
    raise typer.Exit(1 if failed else 0)


def _all_types() -> list[str]:
    from core.plans.store import list_types

    return list_types()


@drill_app.command("list")
def drill_list(type_key: Annotated[str | None, typer.Argument(metavar="[TYPE]")] = None) -> None:
    """Earlier drills and their readiness scores."""
    from sqlmodel import col, select

    from core.incidents.models import Incident
    from core.learning.models import DrillRun

    def load(session: Any) -> list[tuple[Any, Any]]:
        query = select(DrillRun, Incident.code).join(Incident, col(Incident.id) == DrillRun.incident_id, isouter=True)
        if type_key:
            query = query.where(DrillRun.type == type_key)
        return list(session.exec(query.order_by(col(DrillRun.started_at).desc()).limit(200)).all())

    table = Table("started (UTC)", "incident", "plan", "level", "profile", "speed", "readiness", "on time %", "Δ")
    for run, code in _session_call(load):
        score = run.score or {}
        delta = (score.get("comparison") or {}).get("score_delta")
        table.add_row(run.started_at.strftime("%Y-%m-%d %H:%M"), code or "-", run.type, run.level, run.profile,
                      f"{run.speed:g}×", str(score.get("readiness", "-")),
                      str((score.get("steps") or {}).get("on_time_pct", "-")),
                      f"{delta:+}" if isinstance(delta, int | float) else "")
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
