"""Real servers for the test session: a Prefect server and a PostgreSQL cluster from Debian's packages."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from flows.stack import PostgresCluster, free_port, postgres_bin, prefect_env, wait_http


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a process the test started as a supervisor would: SIGTERM, `timeout` seconds to go, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

__all__ = ["PostgresCluster", "PrefectServer", "postgres_bin"]


def made_once(name: str, make: Callable[[Path], None]) -> Path:
    """The file or folder `name` in the temporary folder, made by `make(path)` the first time any test process
    asks for it (the others wait on its lock) and kept for later runs: its name says what it was made from.
    It is made under another name and renamed whole, so a run killed half-way leaves nothing to be taken for it."""
    target = Path(tempfile.gettempdir()) / name
    with target.with_name(f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            part = target.with_name(f"{name}.part")
            shutil.rmtree(part, ignore_errors=True)
            part.unlink(missing_ok=True)
            make(part)
            os.replace(part, target)
    return target


def migrate_prefect(env: dict[str, str]) -> None:
    """`prefect server database upgrade` on the database `env` names."""
    subprocess.run([sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"], env=env, check=True,
                   capture_output=True, timeout=600)


def migrated_prefect_database() -> Path:
    """A Prefect database (SQLite) migrated once for this Prefect, for each embedded Prefect server a test starts
    to begin from a copy (`seed_prefect_home`): migrating a fresh one costs a server's start 8 s of CPU more
    (16 s instead of 8, measured on 2026-12-03)."""
    import prefect

    def make(part: Path) -> None:
        home = Path(tempfile.mkdtemp(prefix="baton-prefect-template-"))
        try:
            migrate_prefect(prefect_env(home))
            shutil.copyfile(home / "prefect" / "prefect.db", part)
        finally:
            shutil.rmtree(home, ignore_errors=True)

    return made_once(f"baton-prefect-{prefect.__version__}-migrated.db", make)


def migrated_stack_cluster() -> Path:
    """A server-mode PostgreSQL data folder (`flows.stack.stack_up`'s cluster, stopped cleanly) whose `baton`
    database is at Baton's head and whose `prefect` database is migrated by this Prefect, made once for these
    migrations, Prefect and PostgreSQL, for each stack a test brings up to begin from a copy
    (`seed_stack_cluster`) instead of initdb and both migrations."""
    import hashlib

    import prefect

    from core.platform.migrate import upgrade

    bindir = postgres_bin()
    assert bindir is not None, "PostgreSQL is not installed"
    versions = Path(__file__).resolve().parents[1] / "core" / "migrations" / "versions"
    digest = hashlib.sha256(prefect.__version__.encode() + str(bindir).encode())
    for migration in sorted(versions.glob("*.py")):
        digest.update(migration.name.encode() + migration.read_bytes())

    def make(part: Path) -> None:
        part.mkdir()
        part.chmod(0o755)
        cluster = PostgresCluster(root=part, durable=True).start()
        try:
            baton_url = cluster.create_database("baton")
            cluster.create_database("prefect", extensions=("pg_trgm",))
            upgrade(baton_url)
            migrate_prefect({**prefect_env(part),
                             "PREFECT_SERVER_DATABASE_CONNECTION_URL": cluster.url("prefect", driver="asyncpg")})
        finally:
            cluster.stop()

    return made_once(f"baton-stack-cluster-{digest.hexdigest()[:16]}", make) / "data"


def seed_stack_cluster(data_dir: Path) -> None:
    """Give the stack `stack_up(data_dir, …)` will bring up a migrated cluster (`migrated_stack_cluster`): its
    PostgresCluster finds the data folder there and skips initdb, and both migrations find nothing to do."""
    target = data_dir / "postgres"
    target.mkdir(parents=True, exist_ok=True)
    # `cp -a` keeps the files the postgres user's (PostgresCluster runs the server as it when we are root).
    subprocess.run(["cp", "-a", str(migrated_stack_cluster()), str(target / "data")], check=True)


def seed_prefect_home(home: Path) -> None:
    """Give the embedded Prefect server that will run with `home` as its Baton data folder (PREFECT_HOME is
    `home/prefect`, flows.stack.prefect_env) an already migrated, empty database."""
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_prefect_database(), home / "prefect" / "prefect.db")


class PrefectServer:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="baton-prefect-"))
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrefectServer:
        seed_prefect_home(self.home)
        env = prefect_env(self.home)
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_UI_ENABLED"] = "false"
        log = self.home / "server.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_http(f"{self.api_url}/health", 120, self.proc, log)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)
