"""The commands that run Baton: `baton serve`, `baton worker`, `baton demo` (main.py names them)."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from core.platform.settings import get_settings
from flows.cli.console import console, err
from flows.cli.session import migrate


def worker() -> None:
    """Run a Baton worker (needs PREFECT_API_URL pointing at a Prefect server).

    It migrates the database first, waiting for it if it is down, and logs the revision."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from flows.worker import run_worker

    run_worker()


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

    from flows.stack import embedded_stack

    settings = get_settings()
    migrate()
    try:
        with embedded_stack(settings, workers=workers, prefect_port=prefect_port, api_host=host, api_port=port,
                            api_workers=api_workers, schedules=True) as stack:
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


def demo(
    simulate: Annotated[bool, typer.Option(help="Let simulated departments work the demo incident.")] = False,
    keep_running: Annotated[bool, typer.Option("--keep-running/--exit", help="Stay up after the demo.")] = True,
    port: Annotated[int, typer.Option(help="Port of the API and pages.")] = 8000,
    prefect_port: Annotated[int, typer.Option()] = 4200,
    level: Annotated[str, typer.Option()] = "II",
) -> None:
    """`make run`: the whole system with demo users (passwords printed) and a demo flood incident."""
    from flows.demo import run_demo

    # The demo's city is the one its map shows (Hangzhou's districts, core/maps/boundaries/) unless one is set:
    # its warnings are issued as 杭州市气象台 would issue them. The stack's processes inherit it.
    os.environ.setdefault("BATON_CITY_NAME", "杭州市")
    os.environ.setdefault("BATON_CITY_NAME_EN", "Hangzhou")
    get_settings.cache_clear()
    migrate()
    try:
        code = run_demo(simulate=simulate, keep_running=keep_running, port=port, prefect_port=prefect_port,
                        level=level)
    except RuntimeError as exc:
        err.print(f"[red]error[/red] {exc}")
        code = 1
    raise typer.Exit(code)

