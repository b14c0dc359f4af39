"""`make run`: the whole system on this machine, demo users, and a demo flood incident to click through.

With `--simulate`, simulated departments work the incident to its end (used by the tests and to watch a
run in Prefect's UI without clicking).
"""

from __future__ import annotations

import os
import random
import secrets
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlmodel import Session, col, select

from core.incidents.models import OPEN_STATUSES, DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.incidents.service import open_incident
from core.learning.simulation import answer_task
from core.ledger.chain import verify_incident
from core.plans.store import plan_for_version, registry
from core.platform.db import session_scope
from core.platform.errors import TaskStateConflict
from core.platform.migrate import upgrade
from core.platform.settings import get_settings
from core.users.models import User
from core.users.service import add_user
from flows.stack import embedded_stack

console = Console(highlight=False)
DEMO_TITLE = "演示：暴雨内涝 Demo: rainstorm waterlogging"


def demo_users(data_dir: Path, departments: list[str]) -> list[tuple[str, str, str]]:
    """Create the demo users once; their passwords are random and kept in `data_dir/demo-users.txt` (0600)."""
    path = data_dir / "demo-users.txt"
    known: dict[str, tuple[str, str]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, role, password = line.split("\t")
            known[name] = (role, password)
    # Named as the pages show people (display name · department), never by their user names.
    wanted: list[tuple[str, str, str | None, str]] = [("office", "office", None, "应急办值班员"),
                                                      ("manager", "manager", None, "应急管理局督查员"),
                                                      ("admin", "admin", None, "系统管理员")]
    reg = registry()
    for dept in departments:
        found = reg.department(dept)
        wanted.append((dept, "department", dept, f"{found.name.zh if found else dept}值班员"))
    with session_scope() as session:
        for name, role, department, shown in wanted:
            if session.exec(select(User).where(User.username == name)).first() is None:
                password = secrets.token_urlsafe(9)
                add_user(session, username=name, role=role, department=department, password=password,
                         display_name=shown, actor="demo:setup")
                known[name] = (role, password)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{n}\t{r}\t{p}\n" for n, (r, p) in known.items()))
    return [(n, r, p) for n, (r, p) in known.items()]


def _open_tasks(session: Session, incident_id: str) -> list[str]:
    rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                     DepartmentTask.kind == "human",
                                                     col(DepartmentTask.status).in_(OPEN_STATUSES))).all()
    return [row.id for row in rows]


def _work_task(session: Session, *, task_id: str, rng: random.Random) -> str:
    done = answer_task(session, task_id=task_id, rng=rng, by="demo", note="模拟部门 simulated department")
    return f"{done.task.department} → {done.step.title.zh} / {done.step.title.en}"


def _status(session: Session, incident_id: str) -> dict[str, Any]:
    incident = session.get(Incident, incident_id)
    assert incident is not None
    done = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                     DepartmentTask.status == TaskStatus.completed)).all()
    return {"stage": incident.stage, "status": incident.status, "completed": len(done),
            "flow_run_id": incident.flow_run_id, "code": incident.code}


def _simulate(incident_id: str, code: str, total: int) -> dict[str, Any]:
    rng = random.Random(7)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task(f"{code} warning", total=total)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with session_scope() as session:
                state = _status(session, incident_id)
                todo = _open_tasks(session, incident_id)
            progress.update(bar, description=f"{code} {state['stage']}", completed=min(state["completed"], total))
            if state["status"] == IncidentStatus.closed:
                progress.update(bar, completed=total)
                break
            for task_id in todo[:3]:
                try:
                    with session_scope() as session:
                        progress.console.print("  " + _work_task(session, task_id=task_id, rng=rng))
                except TaskStateConflict:
                    continue  # a gate ended the stage meanwhile and the worker cancelled this one
            time.sleep(0.3)
    with session_scope() as session:
        return _status(session, incident_id)


def open_demo_incident(session: Session, level: str) -> Incident:
    """The demo's flood incident, opened as a drill: its warnings are Exercise alerts that never reach the public
    feed or page, and its messages to department systems are marked drill."""
    return open_incident(session, type_key="flood", level=level, actor="demo:office", title=DEMO_TITLE,
                         location_name="滨江区 Binjiang", lat=30.2084, lon=120.2120, drill=True).incident


def run_demo(simulate: bool = False, keep_running: bool = True, port: int = 8000, prefect_port: int = 4200,
             level: str = "II") -> int:
    settings = get_settings()
    upgrade()
    with session_scope() as session:
        existing = session.exec(select(Incident).where(Incident.title == DEMO_TITLE,
                                                       Incident.status == IncidentStatus.open)).first()
        if existing is None or simulate:
            existing = open_demo_incident(session, level)
        incident_id, code = existing.id, existing.code
        plan = plan_for_version(session, existing.plan_version_id)
    departments = sorted({step.department for _, step in plan.steps() if step.kind == "human"} - {"emergency_office"})
    users = demo_users(settings.data_dir, departments)
    with embedded_stack(settings, workers=1, prefect_port=prefect_port, api_port=port, schedules=True) as stack:
        ui = stack.api_url.removesuffix("/api")
        table = Table("user", "role", "password", title="Demo users (also in " + str(settings.data_dir /
                                                                                  "demo-users.txt") + ")")
        reg = registry()
        for name, role, password in users:
            dept = reg.department(name)
            table.add_row(name, role + (f" · {dept.name.zh}" if dept else ""), password)
        console.print(table)
        console.print(f"[bold]Baton[/bold] is up: http://127.0.0.1:{port}/  (API docs: /docs)   Prefect: {ui}")
        console.print(f"Demo incident {code} (flood, level {level}) is open: log in as [bold]office[/bold] to steer it "
                      "and as each department to work its steps.")
        total = sum(1 for _, step in plan.steps() if step.kind == "human" and step.active_at(level))
        if simulate:
            state = _simulate(incident_id, code, total)
            with session_scope() as session:
                check = verify_incident(session, incident_id)
            if state["status"] != IncidentStatus.closed:
                console.print(f"[red]{code} did not finish within 5 minutes (stage {state['stage']})[/red]")
                return 1
            console.print(f"{code} closed. Flow run in Prefect: {ui}/runs/flow-run/{state['flow_run_id']}")
            console.print(f"Ledger: {'[green]valid[/green]' if check.valid else '[red]BROKEN[/red]'}, "
                          f"{check.entries} entries. Try: .venv/bin/baton ledger show {code}")
            if not check.valid:
                return 1
        if keep_running:
            console.print("Ctrl-C stops the system.")
            try:
                while True:
                    for name, exit_code in stack.revive():
                        console.print(f"[yellow]{name} stopped (exit code {exit_code}); started again[/yellow]")
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
            except RuntimeError as exc:
                console.print(f"[red]error[/red] {exc}")
                return 1
        return 0
