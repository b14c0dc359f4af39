"""`baton drill run`: rehearse a plan with simulated departments on a compressed clock and score it.

The drill is a real incident (drill=True, clock_speed=speed) on the embedded system: a Prefect server and one
Baton worker are started unless BATON_PREFECT_API_URL names a running system, whose workers are used (one is
started here only if none claims the drill). Simulated departments (`core.learning.drills.Simulator`) answer every task
after a delay drawn from the profile; when the incident closes the readiness report is written (JSON) and shown.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.incidents.models import Incident
from core.incidents.service import open_incident
from core.learning import drills
from core.plans.store import list_types, registry, snapshot_current
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.errors import TaskStateConflict
from core.platform.settings import get_settings
from process_defs.schema import LEVELS

POLL = 0.02  # seconds between looks for newly assigned tasks


@dataclass(frozen=True)
class DrillSpec:
    type: str
    level: str = "II"
    speed: float = 3600.0
    profile: str = "normal"
    seed: int | None = None
    delay_scale: float = 1.0


@dataclass
class Started:
    spec: DrillSpec
    run_id: str
    sim: drills.SimulatedIncident


def check_spec(spec: DrillSpec) -> None:
    if spec.type not in list_types():
        raise ValueError(f"no response plan for incident type '{spec.type}' (one of {', '.join(list_types())})")
    if spec.level not in LEVELS:
        raise ValueError(f"the level must be one of {', '.join(LEVELS)}, not '{spec.level}'")
    if spec.profile not in drills.PROFILES:
        raise ValueError(f"the profile must be one of {', '.join(drills.PROFILES)}, not '{spec.profile}'")
    if not 1 <= spec.speed <= 100_000:
        raise ValueError("the speed must be between 1 and 100000")
    if not 0 < spec.delay_scale <= 10:
        raise ValueError("the delay scale must be above 0 and at most 10")


def open_drill(spec: DrillSpec) -> Started:
    """Open the drill incident and its DrillRun in one transaction."""
    check_spec(spec)
    seed = spec.seed if spec.seed is not None else random.SystemRandom().randrange(2**31)
    with session_scope() as session:
        _, plan = snapshot_current(session, spec.type)
        opened = open_incident(session, type_key=spec.type, level=spec.level, drill=True, clock_speed=spec.speed,
                               actor="drill:office", title=f"演练：{plan.name.zh} Drill: {plan.name.en}",
                               description=f"profile {spec.profile}, speed {spec.speed:g}×, seed {seed}")
        incident = opened.incident
        run = drills.start_run(session, type_key=spec.type, level=spec.level, speed=spec.speed, profile=spec.profile,
                               incident_id=incident.id)
        sim = drills.SimulatedIncident(incident_id=incident.id, code=incident.code, type=spec.type, level=spec.level,
                                       speed=spec.speed, profile=spec.profile, rng=random.Random(seed),
                                       delay_scale=spec.delay_scale,
                                       total=drills.expected_human_steps(plan, spec.level))
        return Started(spec=DrillSpec(spec.type, spec.level, spec.speed, spec.profile, seed, spec.delay_scale),
                       run_id=run.id, sim=sim)


def wait_claimed(incident_ids: list[str], seconds: float) -> bool:
    """Whether a running worker takes every drill within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        with session_scope() as session:
            if all((row := session.get(Incident, i)) is not None and row.lease_owner for i in incident_ids):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def tick(simulator: drills.Simulator, now: datetime | None = None) -> tuple[list[drills.Answer], datetime | None]:
    """One round of the simulated departments: schedule the newly assigned tasks (one transaction), then answer
    each task whose time has come in a transaction of its own, as a department would. Returns the answers and
    when the next one is due (None: nothing scheduled)."""
    with session_scope() as session:
        open_ids = simulator.schedule(session)
    due, upcoming = simulator.due(open_ids, now or utcnow())
    answers = []
    for sim, task_id in due:
        try:
            with session_scope() as session:
                answers.append(simulator.answer(session, sim, task_id))
        except TaskStateConflict:
            continue  # the stage ended (or the gate closed it) before this answer
    return answers, upcoming


def drive(started: list[Started], *, timeout: float, console: Console | None = None,
          show_answers: bool = True) -> bool:
    """Let the simulated departments work every drill until all are closed; False on timeout."""
    simulator = drills.Simulator(s.sim for s in started)
    deadline = time.monotonic() + timeout
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=console is None, transient=False) as progress:
        bars: dict[str, TaskID] = {s.sim.incident_id: progress.add_task(f"{s.sim.code} warning", total=s.sim.total)
                                   for s in started}
        while time.monotonic() < deadline:
            answers, upcoming = tick(simulator)
            for answer in answers:
                if show_answers and console is not None:
                    mark = " [red]late[/red]" if answer.late else ""
                    progress.console.print(f"  {answer.code} {answer.department} → {answer.title}{mark}")
            for sim in simulator.incidents.values():
                total = max(sim.total, sim.answered)
                stage = "closed" if sim.closed else sim.stage
                progress.update(bars[sim.incident_id], description=f"{sim.code} {stage}", total=total,
                                completed=total if sim.closed else sim.answered)
            if simulator.done:
                return True
            wait = POLL
            if upcoming is not None:
                wait = min(wait, max((upcoming - utcnow()).total_seconds(), 0.0))
            time.sleep(max(wait, 0.002))
    return False


def run_drills(specs: list[DrillSpec], *, timeout: float = 1800, claim_wait: float = 5.0,
               console: Console | None = None, show_answers: bool = True,
               start_system: bool = True) -> list[dict[str, Any]]:
    """Open, drive and score drills (several run side by side); returns their reports.

    With `start_system`, a Prefect server and a worker are started for the drill (and stopped after) unless
    BATON_PREFECT_API_URL (or PREFECT_API_URL) names a running system; then its workers are used, and one is
    started here only if none takes the drills within `claim_wait` seconds. Without it, a worker must be running."""
    from core.platform.migrate import upgrade
    from flows.stack import embedded_stack

    upgrade()
    settings = get_settings()
    for spec in specs:
        check_spec(spec)
    external = settings.resolved_prefect_api_url()
    with contextlib.ExitStack() as stack:
        if start_system and not external:
            # Up first, so that a system that does not start leaves no drill incident behind.
            running = stack.enter_context(embedded_stack(settings, workers=1))
            _say(console, f"drill on its own Prefect server ({running.api_url}) and worker")
        started = [open_drill(spec) for spec in specs]
        if start_system and external:
            if wait_claimed([s.sim.incident_id for s in started], claim_wait):
                _say(console, f"drill on the running system (Prefect {external})")
            else:
                stack.enter_context(embedded_stack(settings, workers=1))
                _say(console, f"drill on Prefect {external} with a worker started for it")
        finished = drive(started, timeout=timeout, console=console, show_answers=show_answers)
    reports = []
    for item in started:
        with session_scope() as session:
            reports.append(drills.finish_run(session, run_id=item.run_id,
                                             extra={"seed": item.spec.seed, "delay_scale": item.spec.delay_scale,
                                                    "timed_out": not finished and not item.sim.closed,
                                                    "history_fallbacks": sorted(item.sim.history_fallbacks)}))
    return reports


def _say(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(text)


# -- output ---------------------------------------------------------------------------------------------------


def plan_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    delta = timedelta(seconds=round(seconds))
    days, rest = delta.days, delta.seconds
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {rest % 60:02d}s"


def render(report: dict[str, Any], console: Console) -> None:
    incident = report["incident"]
    steps = report["steps"]
    path = report["critical_path"]
    comparison = report.get("comparison") or {}
    summary = Table(title=f"Drill {incident['code']}: {report['plan']['name']['zh']} / {report['plan']['name']['en']}"
                          f" v{incident['plan_version']}, level {incident['level']}, {report.get('profile')} profile, "
                          f"{incident['clock_speed']:g}×", show_header=False)
    summary.add_column("measure")
    summary.add_column("value")
    readiness = report.get("readiness")
    summary.add_row("readiness", f"[bold]{readiness if readiness is not None else '-'}[/bold] / 100")
    summary.add_row("status", incident["status"] + (" [red](timed out)[/red]" if report.get("timed_out") else ""))
    summary.add_row("steps on time", f"{steps['on_time_pct'] if steps['on_time_pct'] is not None else '-'} % "
                                     f"({steps['on_time']} of {steps['counted']}, {steps['late']} late)")
    summary.add_row("critical path", f"{plan_time(path['length_seconds'])} against "
                                     f"{plan_time(path['deadline_seconds'])} of deadlines along it "
                                     f"(ratio {path['ratio']}); handoffs "
                                     f"{plan_time(path['handoff_seconds'])}")
    summary.add_row("opened → closed", plan_time(report.get("elapsed_seconds")) + " plan time")
    summary.add_row("bottlenecks", ", ".join(report["bottlenecks"]) or "-")
    if report.get("history_fallbacks"):
        summary.add_row("history profile", "too few past answers, normal profile used for: " +
                        ", ".join(report["history_fallbacks"]))
    previous = comparison.get("previous")
    if previous:
        delta = comparison.get("score_delta")
        colour = "green" if (delta or 0) >= 0 else "red"
        summary.add_row("against the last drill", f"[{colour}]{delta:+}[/{colour}] (was {previous['readiness']} on "
                                                  f"{(previous.get('started_at') or '')[:16]}, level "
                                                  f"{previous.get('level')}); trend {comparison.get('trend')}"
                        if delta is not None else "-")
    else:
        summary.add_row("against the last drill", "first drill of this plan")
    safety = report["safety"]
    if safety["ok"]:
        summary.add_row("drill safety", f"[green]ok[/green]: messages {safety['messages']}, all marked drill; CAP "
                                        f"alerts {safety['cap_alerts']}, all Exercise, none published")
    else:
        summary.add_row("drill safety", f"[red]VIOLATED[/red]: messages not marked drill "
                                        f"{safety['messages_not_marked_drill']}; CAP alerts published "
                                        f"{safety['cap_alerts_published']}")
    console.print(summary)
    reg = registry()
    departments = Table("department", "tasks", "on time", "late", "median share of deadline", "median answer",
                        title="Departments, slowest first")
    for row in report["departments"]:
        dept = reg.department(row["department"])
        name = f"{row['department']} {dept.name.zh}" if dept else row["department"]
        if row["department"] in report["bottlenecks"]:
            name = f"[bold yellow]{name}[/bold yellow]"
        share = row["median_share_of_deadline"]
        departments.add_row(name, str(row["tasks"]), str(row["on_time"]), str(row["late"]),
                            f"{share:.0%}" if share is not None else "-", plan_time(row["median_delay_seconds"]))
    console.print(departments)
    chain = Table("stage", "step", "department", "took", "deadline", title="Critical path")
    for row in path["steps"]:
        took, limit = row["seconds"], row["deadline_seconds"]
        late = took is not None and limit is not None and took > limit
        chain.add_row(row["stage"], row["step"], row["department"],
                      f"[red]{plan_time(took)}[/red]" if late else plan_time(took), plan_time(limit))
    console.print(chain)


def write_report(report: dict[str, Any], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return out
