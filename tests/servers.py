"""Real servers for the test session: a Prefect server and a PostgreSQL cluster from Debian's packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
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


class PrefectServer:
    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="baton-prefect-"))
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrefectServer:
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
