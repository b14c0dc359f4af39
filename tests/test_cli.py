"""The `baton` command as people run it: users, incidents, tasks, the ledger, and the demo (`make run`)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.stack import free_port
from tests.servers import seed_prefect_home

runner = CliRunner()


def run_baton(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def test_users_add_reads_the_password_from_stdin_and_lists_users(baton: str) -> None:
    code, out = run_baton("users", "add", "zhang", "--role", "department", "--department", "water_affairs",
                          "--password-stdin", stdin="correct-horse-battery\n")
    assert code == 0, out
    code, out = run_baton("users", "list")
    assert code == 0 and "zhang" in out and "water_affairs" in out
    code, out = run_baton("users", "add", "li", "--role", "department", "--password-stdin", stdin="long-enough-pw\n")
    assert code == 1 and "needs --department" in out
    code, out = run_baton("users", "add", "wang", "--role", "chief", "--password-stdin", stdin="long-enough-pw\n")
    assert code == 1 and "role must be one of" in out
    code, out = run_baton("users", "add", "zhao", "--role", "office")
    assert code == 2 and "--password-stdin" in out
    code, out = run_baton("users", "add", "qian", "--role", "office", "--password-stdin", stdin="short\n")
    assert code == 1 and "at least 10" in out


def test_incident_driven_from_the_command_line_and_its_ledger_verifies(baton: str) -> None:
    from tests import engine_driver as drive

    code, out = run_baton("incident", "open", "flood", "--title", "CLI flood", "--level", "III")
    assert code == 0 and "FLD-" in out, out
    incident_code = out.split()[1]
    from core.incidents.service import find_incident
    from core.platform.db import session_scope

    with session_scope() as session:
        incident_id = find_incident(session, incident_code).id
    drive.step(incident_id)
    task_id = drive.open_tasks(incident_id)["rainstorm_forecast"].id
    code, out = run_baton("task", "complete", task_id, "--outputs", '{"rainfall_1h": "a lot"}')
    assert code == 1 and "rainfall_1h: must be a number" in out
    code, out = run_baton("task", "complete", task_id, "--outputs",
                          '{"rainfall_1h": 40, "rainfall_24h": 90, "warning_colour": "yellow", '
                          f'"valid_until": "{drive.VALID_UNTIL}"}}')
    assert code == 0, out
    code, out = run_baton("users", "add", "chief", "--role", "office", "--password-stdin",
                          stdin="correct-horse-battery\n")
    assert code == 0, out
    code, out = run_baton("incident", "level", incident_code, "II", "--reason", "river rising", "--as", "chief")
    assert code == 1 and "[position_required]" in out
    code, out = run_baton("users", "grant", "chief", "commander@flood_control_hq")
    assert code == 0, out
    code, out = run_baton("users", "list")
    assert "commander@flood_control_hq" in out
    code, out = run_baton("incident", "level", incident_code, "II", "--reason", "river rising", "--as", "chief")
    assert code == 0 and "level II" in out
    code, out = run_baton("incident", "show", incident_code)
    assert code == 0 and "rainstorm_forecast" in out and "completed" in out
    code, out = run_baton("ledger", "verify", incident_code)
    assert code == 0 and "valid" in out
    code, out = run_baton("ledger", "show", incident_code)
    assert code == 0 and "task.completed" in out and "level.changed" in out
    code, out = run_baton("incident", "open", "volcano", "--title", "x")
    assert code == 1 and "no response plan for incident type 'volcano'" in out


def test_serve_refuses_a_port_in_use_with_a_clear_message(baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_PREFECT_API_URL", "http://127.0.0.1:9/api")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = run_baton("serve", "--port", str(port))
    assert code == 1 and f"port {port} for the API is in use" in out


def test_only_db_upgrade_and_the_commands_that_start_baton_migrate_the_database(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Other commands leave the schema alone: on a database behind the code they stop, naming `baton db upgrade`
    (a command that lists users must not migrate a production database as a side effect)."""
    from alembic.script import ScriptDirectory

    from core.platform.migrate import alembic_config, current_revision, head_revision, upgrade
    from core.platform.settings import get_settings

    database = tmp_path / "baton.db"
    monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BATON_DATABASE_URL", f"sqlite:///{database}")
    get_settings.cache_clear()
    head = head_revision()
    assert head is not None
    code, out = run_baton("users", "list")
    assert code == 1 and "has no Baton schema yet; run `baton db upgrade` first" in " ".join(out.split()), out
    assert not database.exists()
    previous = ScriptDirectory.from_config(alembic_config()).get_revision(head).down_revision
    assert isinstance(previous, str)
    upgrade(revision=previous)
    for command in (["incident", "list"], ["ledger", "verify"], ["users", "audit"], ["drill", "list"]):
        code, out = run_baton(*command)
        assert code == 1 and f"at schema revision {previous}, this Baton needs {head}" in out, (command, out)
        assert "baton db upgrade" in out
    assert current_revision() == previous
    code, out = run_baton("db", "upgrade")
    assert code == 0 and f"migrating the database sqlite:///{database} from revision {previous} to {head}" in out
    assert current_revision() == head
    code, out = run_baton("users", "list")
    assert code == 0 and "migrat" not in out, out
    # A command that starts Baton migrates, and says so, before anything else (here: a port in use).
    database.unlink()
    monkeypatch.setenv("BATON_PREFECT_API_URL", "http://127.0.0.1:9/api")
    get_settings.cache_clear()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, out = run_baton("serve", "--port", str(busy.getsockname()[1]))
    assert code == 1 and f"from revision (empty) to {head}" in out and "is in use" in out, out
    assert current_revision() == head
    get_settings.cache_clear()


@pytest.mark.prefect
def test_demo_runs_the_whole_system_and_a_flood_incident_to_its_end(tmp_path: Path) -> None:
    """`make run`'s main job, with simulated departments and without staying up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "PREFECT_API_URL"))}
    env["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
    seed_prefect_home(tmp_path / ".baton")
    result = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--simulate", "--exit", "--port", str(free_port()),
         "--prefect-port", str(free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "closed" in out and "Ledger: valid" in out
    users = tmp_path / ".baton" / "demo-users.txt"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    names = [line.split("\t")[0] for line in users.read_text(encoding="utf-8").splitlines()]
    assert {"office", "manager", "water_affairs", "meteorology"} <= set(names)
    for line in users.read_text(encoding="utf-8").splitlines():
        assert line.split("\t")[2] in out  # the passwords are printed for the newcomer


@pytest.mark.prefect
def test_serve_starts_again_a_process_that_died_and_gives_up_on_a_crash_loop(
        baton: str, prefect_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`baton serve` (and `make run`) supervise their processes: a worker killed -9 is started again and the
    incidents go on; one that keeps dying is reported rather than restarted for ever."""
    import signal
    import time

    import httpx

    from core.platform.settings import get_settings
    from flows.stack import embedded_stack
    from tests import engine_driver as drive

    monkeypatch.setenv("BATON_PREFECT_API_URL", prefect_server.api_url)
    get_settings.cache_clear()
    port = free_port()
    with embedded_stack(get_settings(), workers=1, api_port=port) as stack:
        name = next(n for n in stack.processes if "worker" in n)
        first = stack.processes[name]
        assert stack.revive() == []
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        api = stack.processes["api"]
        assert stack.revive() == [(name, -signal.SIGKILL)]
        second = stack.processes[name]
        assert second.pid != first.pid and second.poll() is None
        assert stack.processes["api"] is api  # the others are left alone
        # The new worker runs incidents.
        incident_id = drive.open_("flood")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not drive.open_tasks(incident_id):
            time.sleep(0.2)
        assert drive.open_tasks(incident_id), (stack.home / "logs" / f"{name}.log").read_text()[-2000:]
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=10).status_code in (200, 503)
        # A crash loop: the second death within the window (most=1) is an error naming the process.
        os.kill(second.pid, signal.SIGKILL)
        second.wait(timeout=10)
        with pytest.raises(RuntimeError, match=f"{name} stopped 2 times"):
            stack.revive(most=1)
