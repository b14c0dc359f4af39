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
from rich.table import Table

from core.errors import BatonError
from core.settings import get_settings
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
    from core.db import session_scope
    from core.migrate import upgrade

    upgrade()
    try:
        with session_scope() as session:
            return fn(session, **kwargs)
    except BatonError as exc:
        err.print(f"[red]error[/red] [{exc.code}] {exc.message}")
        if exc.details:
            for item in exc.details if isinstance(exc.details, list) else [exc.details]:
                err.print(f"  - {item}")
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database to the latest schema."""
    from core.migrate import current_revision, upgrade

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
    from core.incidents import open_incident

    opened = _session_call(open_incident, type_key=type_key, title=title, level=level, location_name=location,
                           drill=drill, actor=actor)
    console.print(f"opened {opened.incident.code} ({opened.incident.id}) at level {opened.incident.level}")


@incident_app.command("list")
def incident_list() -> None:
    from sqlmodel import col, select

    from core.models import Incident

    rows = _session_call(lambda s: list(s.exec(select(Incident).order_by(col(Incident.created_at).desc())
                                               .limit(200)).all()))
    table = Table("code", "type", "level", "stage", "status", "drill", "flow run", "title")
    for row in rows:
        table.add_row(row.code, row.type, row.level, row.stage, row.status, "yes" if row.drill else "",
                      row.flow_run_id or "-", row.title)
    console.print(table)


@incident_app.command("show")
def incident_show(ref: Annotated[str, typer.Argument(help="Incident code or id.")]) -> None:
    from core.engine import latest_tasks
    from core.incidents import find_incident

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
    from core.incidents import change_level, find_incident

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

    from core.incidents import find_incident
    from core.models import OPEN_STATUSES, DepartmentTask, Incident

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
    from core.handoffs import acknowledge

    task = _session_call(acknowledge, task_id=task_id, actor=actor)
    console.print(f"acknowledged {task.step_key} ({task.department})")


@task_app.command("complete")
def task_complete(
    task_id: str,
    outputs: Annotated[str, typer.Option(help="Form values as JSON, or @file.json.")] = "{}",
    note: Annotated[str | None, typer.Option()] = None,
    actor: Annotated[str, typer.Option()] = "cli:department",
) -> None:
    from core.handoffs import complete

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
    from core.handoffs import hand_back

    task = _session_call(hand_back, task_id=task_id, actor=actor, reason=reason)
    console.print(f"handed back {task.step_key} ({task.department})")


# -- ledger ------------------------------------------------------------------------------------------
@ledger_app.command("verify")
def ledger_verify(
    ref: Annotated[str | None, typer.Argument(help="Incident code or id (default: all).")] = None,
) -> None:
    """Check the hash chain; name the first bad entry. Exit 1 if any chain is broken."""
    from sqlmodel import select

    from core.incidents import find_incident
    from core.ledger import verify_incident
    from core.models import Incident

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


@ledger_app.command("show")
def ledger_show(ref: Annotated[str, typer.Argument(help="Incident code or id.")]) -> None:
    from core.incidents import find_incident
    from core.ledger import read_chain

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
    from core.users import add_user

    if not password_stdin:
        err.print("[red]error[/red] give the password on stdin with --password-stdin")
        raise typer.Exit(2)
    password = sys.stdin.readline().rstrip("\n")
    user = _session_call(add_user, username=name, role=role, department=department, password=password,
                         display_name=display_name)
    console.print(f"added {user.username} ({user.role}{', ' + user.department if user.department else ''})")


@users_app.command("list")
def users_list() -> None:
    from core.users import list_users

    table = Table("user", "name", "role", "department", "active")
    for user in _session_call(list_users):
        table.add_row(user.username, user.display_name, user.role, user.department or "",
                      "yes" if user.active else "no")
    console.print(table)


@signals_app.command("add-source")
def signals_add_source(name: Annotated[str, typer.Argument(help="Source name, e.g. hydrology_network.")]) -> None:
    """Register a monitoring source and print its API key (shown once; only a digest is stored)."""
    from core.signals import add_source

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

    from core.migrate import upgrade
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
                while all(p.poll() is None for p in stack.processes.values()):
                    time.sleep(1)
                err.print("[red]a process stopped; see the logs under[/red] " + str(settings.data_dir / "logs"))
                raise typer.Exit(1)
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
) -> None:
    """Start server mode in the background (PostgreSQL in BATON_DATA_DIR/postgres, Prefect on it, workers, API)."""
    from flows.stack import stack_up

    data_dir = get_settings().data_dir
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
