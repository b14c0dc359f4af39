"""`baton stack`: server mode on one machine, in the background."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from core.platform.settings import get_settings
from flows.cli.console import console, err

app = typer.Typer(help="Server mode on one machine: PostgreSQL, Prefect, workers, API.", no_args_is_help=True)


@app.command("up")
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
    from core.platform.migrate import head_revision

    # stack_up migrates the stack's own database before it starts anything on it.
    err.print(f"database schema migrated to the latest revision ({head_revision()})")
    console.print(f"up: API {state['api_url']}  Prefect {state['prefect_api_url']}  workers {workers}")
    console.print(f"export BATON_DATABASE_URL={state['database_url']}  (for baton users add, ledger verify …)")


@app.command("down")
def stack_down_command() -> None:
    """Stop the processes `baton stack up` started; the data stays for the next `up`."""
    from flows.stack import stack_down

    try:
        stopped = stack_down(get_settings().data_dir)
    except RuntimeError as exc:
        err.print(f"[red]error[/red] {exc}")
        raise typer.Exit(1) from None
    console.print("stopped: " + ", ".join(stopped))


@app.command("status")
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

