"""`make run`: the whole system on this machine with a demo flood incident worked by simulated departments."""

from __future__ import annotations

import random
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlmodel import Session, col, select

from core.db import session_scope
from core.handoffs import acknowledge, complete
from core.incidents import open_incident
from core.ledger import verify_incident
from core.migrate import upgrade
from core.models import OPEN_STATUSES, DepartmentTask, Incident, TaskStatus
from core.plans import plan_for_version
from core.settings import get_settings
from core.simulation import sample_outputs
from flows.stack import embedded_stack

console = Console(highlight=False)


def _open_tasks(session: Session, incident_id: str) -> list[tuple[str, str]]:
    rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                     DepartmentTask.kind == "human",
                                                     col(DepartmentTask.status).in_(OPEN_STATUSES))).all()
    return [(row.id, row.step_key) for row in rows]


def _work_task(session: Session, *, task_id: str, rng: random.Random) -> str:
    task = session.get(DepartmentTask, task_id)
    assert task is not None
    incident = session.get(Incident, task.incident_id)
    assert incident is not None
    step = plan_for_version(session, incident.plan_version_id).step(task.step_key)
    actor = f"demo:{task.department}"
    if task.status == TaskStatus.assigned:
        acknowledge(session, task_id=task_id, actor=actor)
    outputs = sample_outputs(step, rng)
    if step.key == "lift_warning":
        outputs["decision"] = "respond"
    complete(session, task_id=task_id, actor=actor, outputs=outputs, note="模拟部门 simulated department")
    return f"{task.department} → {step.title.zh} / {step.title.en}"


def _status(session: Session, incident_id: str) -> dict[str, Any]:
    incident = session.get(Incident, incident_id)
    assert incident is not None
    done = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                     DepartmentTask.status == TaskStatus.completed)).all()
    return {"stage": incident.stage, "status": incident.status, "completed": len(done),
            "flow_run_id": incident.flow_run_id, "code": incident.code}


def run_demo(keep_running: bool = True, prefect_port: int = 4200, level: str = "II") -> int:
    settings = get_settings()
    upgrade()
    rng = random.Random(7)
    with embedded_stack(settings, workers=1, prefect_port=prefect_port) as stack:
        ui = stack.api_url.removesuffix("/api")
        console.print(f"[bold]Baton[/bold] is up. Prefect: {ui}  database: {settings.resolved_database_url()}")
        with session_scope() as session:
            opened = open_incident(session, type_key="flood", level=level, actor="demo:office",
                                   title="演示：暴雨内涝 Demo: rainstorm waterlogging", location_name="滨江区 Binjiang")
            incident_id = opened.incident.id
            code = opened.incident.code
            plan = plan_for_version(session, opened.incident.plan_version_id)
        total = sum(1 for _, step in plan.steps() if step.kind == "human" and step.active_at(level))
        console.print(f"Opened {code} (flood, level {level}); simulated departments will work its {total} steps.")
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task(f"{code} warning", total=total)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with session_scope() as session:
                    state = _status(session, incident_id)
                    todo = _open_tasks(session, incident_id)
                progress.update(bar, description=f"{code} {state['stage']}", completed=min(state["completed"], total))
                if state["status"] == "closed":
                    progress.update(bar, completed=total)
                    break
                for task_id, _ in todo[:3]:
                    with session_scope() as session:
                        progress.console.print("  " + _work_task(session, task_id=task_id, rng=rng))
                time.sleep(0.3)
        with session_scope() as session:
            state = _status(session, incident_id)
            check = verify_incident(session, incident_id)
        if state["status"] != "closed":
            console.print(f"[red]{code} did not finish within 5 minutes (stage {state['stage']})[/red]")
            return 1
        console.print(f"{code} closed. Flow run in Prefect: {ui}/runs/flow-run/{state['flow_run_id']}")
        console.print(f"Ledger: {'[green]valid[/green]' if check.valid else '[red]BROKEN[/red]'}, "
                      f"{check.entries} entries. Try: baton ledger show {code}")
        if keep_running:
            console.print("The system keeps running; open another incident with "
                          "`.venv/bin/baton incident open typhoon --title ... --level III`. Ctrl-C stops it.")
            try:
                while all(p.poll() is None for p in stack.processes.values()):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return 0 if check.valid else 1
