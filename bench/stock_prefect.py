"""Stock Prefect's trigger → running time, measured beside Baton's in the same run.

`run_deployment` to a deployment served by `serve()` and to one picked up by a process worker, each with
Prefect's default polling and with 1 s polling. The time is from the `run_deployment` call (timeout=0)
until the flow body starts (it writes a timestamp file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

FLOW_SOURCE = '''
import os, sys, time
from pathlib import Path
from prefect import flow

@flow(name="bench-noop")
def noop(marker: str) -> None:
    Path(marker).write_text(str(time.time()))

if __name__ == "__main__":
    noop.serve(name=sys.argv[1])
'''


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a Prefect runner or worker started in a session of its own, with the flow-run processes it started: a
    worker can take longer than its grace period to wind down (seen: over 30 s), so it is then killed."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def _wait_deployment(api_url: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{api_url}/deployments/name/bench-noop/{name}", timeout=5)
        if response.status_code == 200:
            return
        time.sleep(0.5)
    raise TimeoutError(f"deployment bench-noop/{name} did not appear")


def _trigger(api_url: str, name: str, work: Path, samples: int, env: dict[str, str], label: str) -> list[float]:
    code = (
        "import sys, time\n"
        "from prefect.deployments import run_deployment\n"
        "print(time.time(), flush=True)\n"
        "run_deployment(sys.argv[1], parameters={'marker': sys.argv[2]}, timeout=0)\n"
    )
    out = []
    for i in range(samples):
        marker = work / f"{label.replace(' ', '-')}-{i}.marker"
        # The clock starts when the trigger is sent, after the client has imported Prefect.
        done = subprocess.run([sys.executable, "-c", code, f"bench-noop/{name}", str(marker)], env=env,
                              check=True, capture_output=True, text=True)
        started = float(done.stdout.split()[0])
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            text = marker.read_text().strip() if marker.exists() else ""
            if text:  # written and closed by the flow
                break
            time.sleep(0.02)
        if not text:
            raise TimeoutError(f"{name}: run {i} did not start within 90 s")
        out.append(float(text) - started)
    return out


def measure(api_url: str, samples: int = 3) -> dict[str, list[float]]:
    """Trigger → running for serve() and a process worker, default polling and 1 s polling."""
    work = Path(tempfile.mkdtemp(prefix="baton-stock-"))
    (work / "bench_noop.py").write_text(FLOW_SOURCE)
    base = dict(os.environ, PREFECT_API_URL=api_url, PYTHONPATH=str(work))
    results: dict[str, list[float]] = {}
    for label, poll in (("serve() default poll", None), ("serve() 1 s poll", "1")):
        env = dict(base)
        if poll:
            env["PREFECT_RUNNER_POLL_FREQUENCY"] = poll
        name = "serve-fast" if poll else "serve-default"
        proc = subprocess.Popen([sys.executable, str(work / "bench_noop.py"), name], env=env, cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_deployment(api_url, name)
            results[label] = _trigger(api_url, name, work, samples, base, label)
        finally:
            stop_process(proc)
    subprocess.run([sys.executable, "-m", "prefect", "work-pool", "create", "bench-pool", "--type", "process"],
                   env=base, capture_output=True)
    deploy = (
        "import sys\n"
        "from prefect import flow\n"
        "flow.from_source(source=sys.argv[1], entrypoint='bench_noop.py:noop')"
        ".deploy(name='worker', work_pool_name='bench-pool')\n"
    )
    subprocess.run([sys.executable, "-c", deploy, str(work)], env=base, check=True, capture_output=True, cwd=work)
    for label, poll in (("process worker default poll", None), ("process worker 1 s poll", "1")):
        env = dict(base)
        if poll:
            env["PREFECT_WORKER_QUERY_SECONDS"] = poll
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", "bench-pool",
                                 "--type", "process"], env=env, cwd=work, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(3)
            results[label] = _trigger(api_url, "worker", work, samples, base, label)
        finally:
            stop_process(proc)
    return results
