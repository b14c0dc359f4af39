"""Test fixtures: one real Prefect server per session, a fresh application database per test (SQLite, or
PostgreSQL for tests marked `postgres`), and Baton settings pointed at them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.platform.settings import PROCESS_DEFS_DIR, get_settings
from tests.servers import PostgresCluster, PrefectServer

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Logs shipped to a server that the session has already stopped would only print connection errors.
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = PrefectServer().start()
    os.environ["PREFECT_API_URL"] = server.api_url
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def baton_home(tmp_path: Path) -> Path:
    return tmp_path / "baton"


@pytest.fixture
def plans_dir() -> Path:
    return PROCESS_DEFS_DIR


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_kind: str, baton_home: Path) -> str:
    if db_kind == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        return cluster.create_database(f"baton_{uuid.uuid4().hex[:12]}")
    return f"sqlite:///{baton_home / 'baton.db'}"


@pytest.fixture
def baton(monkeypatch: pytest.MonkeyPatch, database_url: str, baton_home: Path, plans_dir: Path) -> Iterator[str]:
    """Baton settings for this test; the database migrated to head. Yields the database URL."""
    from core.plans.store import _registry, parse_plan_text
    from core.platform.migrate import upgrade

    baton_home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("BATON_DATA_DIR", str(baton_home))
    monkeypatch.setenv("BATON_DATABASE_URL", database_url)
    monkeypatch.setenv("BATON_PLANS_DIR", str(plans_dir))
    monkeypatch.setenv("BATON_RETRY_DELAYS", "[0.1, 0.2, 0.3]")
    get_settings.cache_clear()
    _registry.cache_clear()
    parse_plan_text.cache_clear()
    upgrade()
    yield database_url
    get_settings.cache_clear()
    _registry.cache_clear()
    parse_plan_text.cache_clear()


def copy_plans(target: Path, *names: str) -> Path:
    """A plans folder with the shipped registry and the named shipped plans (edit them in the test)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROCESS_DEFS_DIR / "departments.yaml", target / "departments.yaml")
    for name in names:
        shutil.copy(PROCESS_DEFS_DIR / f"{name}.yaml", target / f"{name}.yaml")
    return target


StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def workers(prefect_server: PrefectServer, baton: str, tmp_path: Path) -> Iterator[StartWorker]:
    """Start Baton workers as their own processes (`baton worker`), on this test's database and the session's
    Prefect server: `workers("w1", BATON_LEASE_SECONDS="5")`; each logs to `tmp_path/<name>.log`. All are
    stopped with SIGTERM (then killed) after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, **env: str) -> subprocess.Popen[bytes]:
        environment = dict(os.environ, BATON_WORKER_ID=name, PREFECT_API_URL=prefect_server.api_url, **env)
        log = (tmp_path / f"{name}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker"], env=environment, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- figures -------------------------------------------------------------------------------------------------------
# What the fault, soak, fuzzing and access suites counted is printed at the end of every run (`make test`, CI),
# not only under `pytest -s`: "0 violations" is the result those suites exist to show.
FIGURES = pytest.StashKey[list[tuple[str, str]]]()
Say = Callable[..., None]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Say:
    """`figures("line")`: print a line (seen under -s) and keep it for the run's closing summary."""
    kept = request.config.stash.setdefault(FIGURES, [])

    def say(text: str = "") -> None:
        print(text)
        kept.append((request.node.nodeid, text))

    return say


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    kept = config.stash.get(FIGURES, [])
    if not kept:
        return
    terminalreporter.section("Baton figures: what the fault, soak, fuzzing and access suites counted")
    current = None
    for nodeid, text in kept:
        if nodeid != current:
            terminalreporter.write_line(f"[{nodeid}]", bold=True)
            current = nodeid
        terminalreporter.write_line(text)
