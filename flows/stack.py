"""The embedded system on one machine: a local Prefect server and Baton workers, as child processes.

Everything lives under the Baton home (`.baton/` by default): the SQLite database, the Prefect server's
own home and database, and the logs of each process.

Each child runs in a process group of its own (so a terminal's Ctrl-C does not reach it half-way through a
write), which also means nothing stops it but Baton: on SIGTERM (a process supervisor's stop) or Ctrl-C,
`baton serve`, `baton demo` and `baton stack up` send SIGTERM to every group they started, wait for the
processes to end (workers release their leases), then SIGKILL whatever is left, and exit.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

from core.platform.settings import Settings
from core.platform.tls import tls_context

# Ports for Baton's own servers come from below the kernel's ephemeral range (32768–60999 on Linux): a port
# the kernel handed out for `bind(0)` is free only until a client connection takes it as its local port, which
# on a busy machine (several stacks starting at once) happened between choosing and binding it.
SERVER_PORTS = range(20000, 32000)


def free_port() -> int:
    """A port on loopback that nothing listens on, outside the range client connections draw from."""
    for port in random.sample(SERVER_PORTS, 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # a crowded range: take what the kernel gives
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


# How the Prefect servers Baton starts are tuned (deploy/compose.yaml and deploy/k8s say the same for theirs).
PREFECT_SERVER_TUNING = {
    # The pause-expiry scan walks every paused run each loop; Baton pauses none, so look rarely.
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_LOOP_SECONDS": "60",
    # Task runs (Baton's automated steps) reach the server as events, which the task-run recorder writes one
    # transaction per event by default: 18.5 ms of the server's CPU per task run on the 2-core machine, 6.5 ms
    # when it writes up to 100 at a time and flushes every second (`python -m bench.prefect_tasks`, 2026-12-04).
    # Every task run is still recorded; Prefect's UI shows a step at most a second later.
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}


def prefect_env(home: Path, api_url: str | None = None, *, tuned: bool = True) -> dict[str, str]:
    """The environment of a Prefect process Baton starts; `tuned=False` leaves Prefect's own defaults where Baton
    tunes them (the benchmark's stock server)."""
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str((home / "prefect").resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": env.get("PREFECT_LOGGING_LEVEL", "WARNING"),
    })
    if tuned:
        env.update(PREFECT_SERVER_TUNING)
    else:
        for key in PREFECT_SERVER_TUNING:
            env.pop(key, None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


STOP_GRACE = 20.0  # seconds the children get to end after SIGTERM before they are killed


@contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """Within the block, SIGTERM ends the work as Ctrl-C does (KeyboardInterrupt), so that whoever started
    children stops them on the way out; left to its default, SIGTERM would kill this process alone and orphan
    them. Only the first one interrupts: a second, while the children are being stopped, is ignored. The event
    yielded is set by the signal, for a caller to check afterwards: a library that catches every exception can
    swallow the interrupt raised inside it."""
    signalled = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield signalled
        return

    def interrupt(signum: int, frame: object) -> None:
        if not signalled.is_set():
            signalled.set()
            raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    _STOP_REQUESTS.append(signalled)
    try:
        yield signalled
    finally:
        _STOP_REQUESTS.remove(signalled)
        signal.signal(signal.SIGTERM, previous)


# The events of the stop_on_sigterm blocks open now. The interrupt a signal raises lands wherever the main thread
# happens to be, and can be lost there: inside a weakref callback during garbage collection Python prints it and
# goes on ("Exception ignored in …"), and some libraries catch every exception. Starting the stack waits for
# minutes at a time, so each wait and each start asks again.
_STOP_REQUESTS: list[threading.Event] = []


def raise_if_stopping() -> None:
    """Raise the SIGTERM a stop_on_sigterm block received, if its interrupt was lost on the way."""
    if any(event.is_set() for event in _STOP_REQUESTS):
        raise KeyboardInterrupt("SIGTERM")


def _group_alive(pgid: int, leader: subprocess.Popen[bytes] | None) -> bool:
    if leader is not None:
        leader.poll()  # reaped, the leader no longer counts as a member (a zombie would)
    else:
        # Started by this process with no Popen at hand (`stack_up` then `stack_down` in one process, as `stack up
        # --foreground` does): a leader that died earlier (a crashed worker) is a zombie until reaped here, and
        # would hold the wait for the whole grace period.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_groups(groups: Mapping[int, subprocess.Popen[bytes] | None], grace: float = STOP_GRACE) -> None:
    """SIGTERM to every process group (named by its leader's pid; the leader's Popen when it is our child), wait
    up to `grace` seconds for all their members to end, then SIGKILL the groups that have not."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_group_alive(pgid, leader) for pgid, leader in groups.items()):
        time.sleep(0.1)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for leader in groups.values():
        if leader is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                leader.wait(timeout=10)


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
              accept: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raise_if_stopping()
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=2, verify=tls_context()).status_code in accept:
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
    # How to start each process again, and when each was restarted (a crash loop is given up on).
    starters: dict[str, Callable[[], object]] = field(default_factory=dict)
    restarts: dict[str, list[float]] = field(default_factory=dict)

    def start_prefect(self, port: int, database_url: str | None = None, *, tuned: bool = True) -> None:
        """Start a Prefect server; on PostgreSQL when `database_url` (postgresql+asyncpg://…) is given; with
        Prefect's own defaults instead of Baton's tuning when not `tuned` (`prefect_env`)."""
        raise_if_stopping()
        log = self.home / "logs" / "prefect-server.log"
        env = prefect_env(self.home, tuned=tuned)
        env.pop("PREFECT_API_URL", None)
        self.starters["prefect-server"] = lambda: self.start_prefect(port, database_url, tuned=tuned)
        if database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
        env["PREFECT_UI_ENABLED"] = env.get("PREFECT_UI_ENABLED", "true")
        self.processes["prefect-server"] = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_http(f"http://127.0.0.1:{port}/api/health", 120, self.processes["prefect-server"], log)

    def start_worker(self, name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        raise_if_stopping()
        log = self.home / "logs" / f"{name}.log"
        env = prefect_env(self.home, self.api_url)
        env.update({"BATON_DATA_DIR": str(self.home.resolve()), "BATON_WORKER_ID": name, **(extra_env or {})})
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker"], stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.processes[name] = proc
        self.starters[name] = lambda: self.start_worker(name, extra_env)
        return proc

    def start_schedules(self) -> subprocess.Popen[bytes]:
        """Serve the scheduled prevention deployments (`flows.prevention`: 汛前检查, 隐患排查, drills, the sweep) with
        Prefect's `serve()`; Prefect's scheduler makes each slot's run, this process runs it."""
        raise_if_stopping()
        log = self.home / "logs" / "prevention.log"
        env = prefect_env(self.home, self.api_url)
        env.update({"BATON_DATA_DIR": str(self.home.resolve())})
        proc = subprocess.Popen([sys.executable, "-m", "flows.prevention"], stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.processes["prevention"] = proc
        self.starters["prevention"] = self.start_schedules
        return proc

    def start_api(self, host: str, port: int, workers: int = 1) -> subprocess.Popen[bytes]:
        raise_if_stopping()
        log = self.home / "logs" / "api.log"
        env = prefect_env(self.home, self.api_url)
        # uvicorn trusts nobody's forwarded headers; BATON_TRUSTED_PROXIES decides (api/forwarded.py).
        env.update({"BATON_DATA_DIR": str(self.home.resolve()), "BATON_PREFECT_API_URL": self.api_url,
                    "FORWARDED_ALLOW_IPS": ""})
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.app:app", "--host", host, "--port", str(port),
             "--workers", str(workers), "--no-proxy-headers"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.processes["api"] = proc
        self.starters["api"] = lambda: self.start_api(host, port, workers)
        # As long as Prefect's own start: on a busy machine the API's workers take a minute to import and migrate
        # checks; an API that exits (a port taken) is said at once, with its log.
        wait_http(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/api/health", 120, proc, log,
                  accept=(200, 503))
        if proc.poll() is not None:
            raise RuntimeError(f"the API exited; see {log}")
        return proc

    def revive(self, *, window: float = 60.0, most: int = 5) -> list[tuple[str, int]]:
        """Start again every process that stopped (a crash, an OOM kill): the emergency office's laptop keeps
        its system up without anyone watching it. Returns (name, exit code) of each one restarted; raises
        RuntimeError for one that stopped `most` times within `window` seconds (it would only crash again)."""
        revived = []
        for name, proc in list(self.processes.items()):
            code = proc.poll()
            if code is None or name not in self.starters:
                continue
            now = time.monotonic()
            recent = [t for t in self.restarts.get(name, []) if now - t < window] + [now]
            self.restarts[name] = recent
            if len(recent) > most:
                raise RuntimeError(f"{name} stopped {len(recent)} times within {window:.0f} s (last exit code "
                                   f"{code}); see {self.home / 'logs'}")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # what it started (uvicorn's workers) goes with it
            self.starters[name]()
            revived.append((name, code))
        return revived

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop every process this stack started and what they started in turn (uvicorn's workers, Prefect's
        services): SIGTERM, up to `grace` seconds, then SIGKILL."""
        stop_process_groups({proc.pid: proc for proc in self.processes.values()}, grace)


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
                   api_workers: int = 1, schedules: bool = False) -> Iterator[Stack]:
    """Start Prefect (unless BATON_PREFECT_API_URL points at one), `workers` Baton workers, with `schedules` the
    process serving the scheduled prevention deployments and, given a port, the API; stop them all after."""
    home = settings.data_dir
    (home / "logs").mkdir(parents=True, exist_ok=True)
    settings.resolved_secret_key()  # made once here, not raced by several API workers
    external = settings.resolved_prefect_api_url()
    port = prefect_port or free_port()
    for wanted, what in ((None if external else port, "Prefect server"), (api_port, "API")):
        if wanted is not None and not port_free(wanted, "127.0.0.1"):
            raise RuntimeError(f"port {wanted} for the {what} is in use; choose another with the options")
    stack = Stack(home=home, api_url=external or f"http://127.0.0.1:{port}/api")
    with stop_on_sigterm():
        try:
            if not external:
                stack.start_prefect(port)
            os.environ["PREFECT_API_URL"] = stack.api_url
            for i in range(workers):
                stack.start_worker(f"{socket.gethostname()}-worker-{i + 1}")
            if schedules:
                stack.start_schedules()
            if api_port is not None:
                stack.start_api(api_host or "127.0.0.1", api_port, api_workers)
            yield stack
        finally:
            stack.stop()


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresCluster:
    """A PostgreSQL cluster from Debian's packages on loopback (trust auth), run as the `postgres` user when
    we are root. Throwaway in a temporary folder by default; kept in `root` when one is given."""

    def __init__(self, root: Path | None = None, port: int | None = None, durable: bool | None = None) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
        self.bindir = bindir
        self.keep = root is not None
        self.root = (root or Path(tempfile.mkdtemp(prefix="baton-pg-"))).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.port = port or free_port()
        # Kept clusters hold real data and are durable unless asked otherwise: restarting one through a plain
        # PostgresCluster(root=…) must not turn fsync off.
        self.durable = self.keep if durable is None else durable
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
            os.chmod(self.root, 0o755)
            if subprocess.run([*self.as_user, "test", "-w", str(self.root)]).returncode != 0:
                raise RuntimeError(f"PostgreSQL runs as the postgres user, who cannot reach {self.root}; "
                                   "choose a BATON_DATA_DIR whose parent folders others may enter")

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {(result.stderr or result.stdout).strip()[-1500:]}")

    def _options(self) -> str:
        # A test or benchmark cluster trades durability for speed; a kept one (server mode) does not.
        speed = "" if self.durable else " -c fsync=off -c synchronous_commit=off"
        return f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c max_connections=300{speed}"

    def start(self) -> PostgresCluster:
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C.UTF-8")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w",
                  "-o", self._options(), "start")
        return self

    def url(self, database: str, driver: str = "psycopg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={database}", autocommit=True)

    def create_database(self, name: str, extensions: tuple[str, ...] = ()) -> str:
        """Create the database unless it exists; return its SQLAlchemy URL."""
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        if extensions:
            with self._connect(name) as conn:
                for extension in extensions:
                    conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{extension}"')
        return self.url(name)

    def pid(self) -> int | None:
        pid_file = self.data / "postmaster.pid"
        return int(pid_file.read_text().split()[0]) if pid_file.exists() else None

    def kill(self) -> None:
        """Stop at once, as a crash would (immediate mode)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def restart(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "pg.log"), "-w",
                  "-o", self._options(), "start")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (self.data / "postmaster.pid").exists():
            time.sleep(0.1)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


STACK_FILE = "stack.json"


def stack_up(data_dir: Path, workers: int, api_workers: int, api_port: int, prefect_port: int,
             pg_port: int) -> dict[str, object]:
    """Server mode on one machine, every part its own OS process on loopback: PostgreSQL (a data directory
    initialised here), a Prefect server on it, `workers` Baton workers and the API under `api_workers`
    uvicorn workers. The processes outlive this call; `stack_down` stops them."""
    data_dir = data_dir.resolve()
    state_file = data_dir / STACK_FILE
    if state_file.exists():
        raise RuntimeError(f"a stack is already up in {data_dir} (baton stack down first)")
    for port, what in ((api_port, "API"), (prefect_port, "Prefect server"), (pg_port, "PostgreSQL")):
        if not port_free(port):
            raise RuntimeError(f"port {port} for the {what} is in use; choose another with the options")
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    with stop_on_sigterm() as signalled:
        state = _start_stack(data_dir, workers, api_workers, api_port, prefect_port, pg_port)
    if signalled.is_set():  # SIGTERM came while starting and something on the way swallowed its interrupt
        stack_down(data_dir)
        raise KeyboardInterrupt("SIGTERM")
    return state


def _start_stack(data_dir: Path, workers: int, api_workers: int, api_port: int, prefect_port: int,
                 pg_port: int) -> dict[str, object]:
    state_file = data_dir / STACK_FILE
    stack = Stack(home=data_dir, api_url=f"http://127.0.0.1:{prefect_port}/api")
    cluster = PostgresCluster(root=data_dir / "postgres", port=pg_port, durable=True)
    try:
        cluster.start()
        baton_url = cluster.create_database("baton")
        cluster.create_database("prefect", extensions=("pg_trgm",))
        os.environ["BATON_DATABASE_URL"] = baton_url
        from core.platform.migrate import upgrade

        upgrade(baton_url)
        stack.start_prefect(prefect_port, database_url=cluster.url("prefect", driver="asyncpg"))
        common = {"BATON_DATABASE_URL": baton_url, "BATON_PREFECT_API_URL": stack.api_url}
        for i in range(workers):
            stack.start_worker(f"{socket.gethostname()}-worker-{i + 1}", extra_env=common)
        os.environ.update(common)
        stack.start_api("127.0.0.1", api_port, api_workers)
    except BaseException:  # a failure, Ctrl-C or SIGTERM half-way: nothing started is left running
        stack.stop()
        cluster.stop()
        raise
    state: dict[str, object] = {
        "database_url": baton_url, "prefect_api_url": stack.api_url, "api_url": f"http://127.0.0.1:{api_port}",
        "postgres": {"root": str(cluster.root), "port": cluster.port},
        "processes": {name: proc.pid for name, proc in stack.processes.items()},
    }
    state_file.write_text(json.dumps(state, indent=2))
    return state


def read_stack(data_dir: Path) -> dict[str, Any]:
    state_file = data_dir.resolve() / STACK_FILE
    if not state_file.exists():
        raise RuntimeError(f"no stack is up in {data_dir}")
    state: dict[str, Any] = json.loads(state_file.read_text())
    return state


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stack_down(data_dir: Path, timeout: float = STOP_GRACE) -> list[str]:
    """Stop what `stack_up` started (SIGTERM, then SIGKILL after `timeout`); the data stays."""
    state = read_stack(data_dir)
    processes: dict[str, int] = state["processes"]
    stop_process_groups(dict.fromkeys(processes.values()), timeout)
    pg = state["postgres"]
    PostgresCluster(root=Path(pg["root"]), port=int(pg["port"])).stop()
    (data_dir.resolve() / STACK_FILE).unlink()
    return list(processes)


def stack_foreground(data_dir: Path, workers: int, api_workers: int, api_port: int, prefect_port: int,
                     pg_port: int) -> dict[str, object] | None:
    """`baton stack up --foreground`: server mode that stays attached until SIGTERM or Ctrl-C and then stops
    everything it started, PostgreSQL included (what a process supervisor expects of the service it runs).
    Returns the stack's state once stopped, None if it was stopped while starting."""
    with stop_on_sigterm():
        try:
            state = stack_up(data_dir, workers, api_workers, api_port, prefect_port, pg_port)
        except KeyboardInterrupt:
            return None  # stack_up stopped what it had started
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            stack_down(data_dir)
        return state
