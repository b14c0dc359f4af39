"""`baton defs …`: check, show and draw response plans."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from process_defs.validation import check_paths

app = typer.Typer(help="Response plans: check, show, graph.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)


@app.command("check")
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Plan files or folders (default: the shipped plans).")
    ] = None,
) -> None:
    """Validate plans; print every problem as file:line path: message and exit non-zero if any."""
    result = check_paths(paths or None)
    for problem in result.problems:
        err_console.print(str(problem), markup=False, highlight=False)
    if result.problems:
        err_console.print(f"[red]{len(result.problems)} problem(s)[/red] in {len(result.files)} file(s)")
        raise typer.Exit(1)
    departments = len(result.registry.departments) if result.registry else 0
    steps = sum(len(plan.steps()) for plan in result.plans.values())
    console.print(f"[green]OK[/green] {len(result.plans)} plan(s), {steps} steps, {departments} departments")
