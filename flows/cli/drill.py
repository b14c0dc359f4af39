"""`baton drill`: rehearse plans with simulated departments, and list earlier drills."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.platform.settings import get_settings
from flows.cli.console import console, err
from flows.cli.session import migrate, session_call

app = typer.Typer(help="Drills: rehearse a plan with simulated departments on a compressed clock.",
                  no_args_is_help=True)


@app.command("run")
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

    migrate()
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


@app.command("list")
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
    for run, code in session_call(load):
        score = run.score or {}
        delta = (score.get("comparison") or {}).get("score_delta")
        table.add_row(run.started_at.strftime("%Y-%m-%d %H:%M"), code or "-", run.type, run.level, run.profile,
                      f"{run.speed:g}×", str(score.get("readiness", "-")),
                      str((score.get("steps") or {}).get("on_time_pct", "-")),
                      f"{delta:+}" if isinstance(delta, int | float) else "")
    console.print(table)

