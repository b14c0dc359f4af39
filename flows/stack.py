"""The embedded system on one machine: a local Prefect server and Baton workers, as child processes.

Everything lives under the Baton home (`.baton/` by default): the SQLite database, the Prefect server's
own home and database, and the logs of each process.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from core.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prefect_env(home: Path, api_url: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str((home / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": env.get("PREFECT_LOGGING_LEVEL", "WARNING"),
        # The pause-expiry scan walks every paused run each loop; Baton pauses none, so look rarely.
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "60",
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
              accept: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code in accept:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


@dataclass
class Stack:
    home: Path
    api_url: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_prefect(self, port: int, database_url: str | None = None) -> None:
        """Start a Prefect server; on PostgreSQL when `database_url` (postgresql+asyncpg://…) is given."""
        log = self.home / "logs" / "prefect-server.log"
        env = prefect_env(self.home)
        env.pop("PREFECT_API_URL", None)
        if database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
        env["PREFECT_UI_ENABLED"] = env.get("PREFECT_UI_ENABLED", "true")
        self.processes["prefect-server"] = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_http(f"http://127.0.0.1:{port}/api/health", 120, self.processes["prefect-server"], log)

    def start_worker(self, name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.home / "logs" / f"{name}.log"
        env = prefect_env(self.home, self.api_url)
        env.update({"BATON_DATA_DIR": str(self.home.resolve()), "BATON_WORKER_ID": name, **(extra_env or {})})
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker"], stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.processes[name] = proc
        return proc

    def start_api(self, host: str, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
        log = self.home / "logs" / "api.log"
        env = prefect_env(self.home, self.api_url)
        env.update({"BATON_DATA_DIR": str(self.home.resolve()), "BATON_PREFECT_API_URL": self.api_url})
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:app", "--host", host, "--port", str(port),
             "--workers", str(workers), "--proxy-headers"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.processes["api"] = proc
        wait_http(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/api/health", 60, None, log,
                  accept=(200, 503))
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited; see {log}")
        return proc

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


@contextmanager
def embedded_stack(settings: Settings, workers: int = 1, prefect_port: int | None = None,
                   api_host: str | None = None, api_port: int | None = None,
                   api_workers: int = 1) -> Iterator[Stack]:
    """Start Prefect (unless BATON_PREFECT_API_URL points at one), `workers` Baton workers and, given a
    port, the API; stop them all after."""
    home = settings.data_dir
    (home / "logs").mkdir(parents=True, exist_ok=True)
    settings.resolved_secret_key()  # made once here, not raced by several API workers
    external = settings.resolved_prefect_api_url()
    port = prefect_port or free_port()
    for wanted, what in ((None if external else port, "Prefect server"), (api_port, "API")):
        if wanted is not None and not port_free(wanted, "127.0.0.1"):
            raise RuntimeError(f"port {wanted} for the {what} is in use; choose another with the options")
    stack = Stack(home=home, api_url=external or f"http://127.0.0.1:{port}/api")
    try:
        if not external:
            stack.start_prefect(port)
        os.environ["PREFECT_API_URL"] = stack.api_url
        for i in range(workers):
            stack.start_worker(f"{socket.gethostname()}-worker-{i + 1}")
        if api_port is not None:
            stack.start_api(api_host or "127.0.0.1", api_port, api_workers)
        yield stack
    finally:
        stack.stop()


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """A throwaway cluster (trust auth on loopback), run as the `postgres` user when we are root."""

    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="baton-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True)

    def start(self) -> PostgresCluster:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--locale=C.UTF-8")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=300 "
                        "-c fsync=off", "start")
        return self

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def kill(self) -> None:
        """Stop at once, as a crash would (immediate mode)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def restart(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (self.data / "postmaster.pid").exists():
            time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)
