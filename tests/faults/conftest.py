"""The server-mode stack the fault tests share (one per process that runs them, stopped when it moves on):
PostgreSQL, a Prefect server on it, two Baton workers and the API under two uvicorn workers, each its own
process on loopback, in a folder the postgres user can enter. Leases are short (4 s) so that a killed
worker's incidents are taken over quickly."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.stack import free_port, stack_down, stack_up
from tests.faults.harness import FaultStack
from tests.fixtures.system import postgres_available, require
from tests.servers import seed_stack_cluster

ENV = {"BATON_LEASE_SECONDS": "4", "BATON_RETRY_DELAYS": "[0.2, 0.5, 1.0]", "PREFECT_UI_ENABLED": "false"}
SAVED = ("BATON_DATABASE_URL", "BATON_PREFECT_API_URL", "BATON_DATA_DIR", *ENV)


stack_environment: dict[str, str] = {}


def _restore(saved: dict[str, str | None]) -> None:
    from core.platform.settings import get_settings

    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def stack_settings(fault_stack: FaultStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each fault test runs with the stack's settings in its environment, taken back after it."""
    from core.platform.settings import get_settings

    for key, value in stack_environment.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


# Under pytest-xdist (`make test`) the fault modules are two xdist groups: the exact matrix (test_crash_points.py)
# alone, and the other three in order (harness.STACK_GROUP). Each group's tests run in order in one process, the
# two groups side by side, each on a stack of its own (four stacks at once, one a module, cost the rest of the
# suite more CPU than they saved; one stack taking the four modules in turn made the longest chain of the run).
# Package-scoped: the modules of a group share their process's stack, and a process tears it down when it moves
# on to other tests.
@pytest.fixture(scope="package")
def fault_stack() -> Iterator[FaultStack]:
    require("PostgreSQL", postgres_available())
    from core.platform.settings import get_settings

    data_dir = Path(tempfile.mkdtemp(prefix="baton-faults-")).resolve()
    data_dir.chmod(0o755)
    saved = {key: os.environ.get(key) for key in SAVED}
    os.environ.update(ENV)
    os.environ["BATON_DATA_DIR"] = str(data_dir)
    # The stack's processes can be stopped at failpoints (core/platform/failpoints.py); this process never is: it runs
    # the engine only to dry-run it.
    (data_dir / "failpoints").mkdir()
    os.environ["BATON_FAILPOINT_DIR"] = str(data_dir / "failpoints")
    get_settings.cache_clear()
    seed_stack_cluster(data_dir)
    try:
        state = stack_up(data_dir, workers=2, api_workers=2, api_port=free_port(), prefect_port=free_port(),
                         pg_port=free_port())
    finally:
        os.environ.pop("BATON_FAILPOINT_DIR")
        get_settings.cache_clear()
    stack = FaultStack(data_dir=data_dir, state=state)
    # What the stack's settings are (its database, its Prefect, short leases), for the fault tests alone
    # (`stack_settings`): the other tests this process runs must not inherit them.
    stack_environment.update({key: os.environ[key] for key in SAVED if key in os.environ})
    _restore(saved)
    try:
        yield stack
    finally:
        # The processes' crash safety is what these tests check: kill them at once rather than wait for each
        # to stop gracefully (stack_down then finds them gone and stops PostgreSQL).
        for name in list(stack.state["processes"]):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stack.pid(name), signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):  # reap our children, or they linger as zombies
                os.waitpid(stack.pid(name), 0)
        try:
            stack_down(data_dir)
        finally:
            # The processes' logs outlive the run (the last run's of each test process: the fault groups run
            # side by side, each on a stack of its own), for when an invariant fails.
            kept = Path(tempfile.gettempdir()) / "baton-faults-logs" / os.environ.get("PYTEST_XDIST_WORKER", "main")
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(data_dir / "logs", kept, dirs_exist_ok=True)
            (kept / "faults.log").write_text("\n".join(stack.log) + "\n")
            shutil.rmtree(data_dir, ignore_errors=True)
            stack_environment.clear()
