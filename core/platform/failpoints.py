"""Failpoints: named places inside a handoff's work where the fault tests make a process die, or stand still,
so that a crash exactly there is tried rather than hoped for (as etcd's gofail and TiKV's fail-rs do).

Off unless `BATON_FAILPOINT_DIR` names a folder; disarmed, a point costs a cached settings read. A test arms
a point by putting a file into that folder named after it, `stage.left`, or `stage.left@<who>` for one process
only (`who` is the worker's id, `api` for everything else). Its text is the action:

    crash          kill -9 this process, here (its open transaction dies with it)
    hold SECONDS   stand still here, the transaction open, while the test kills another process

The first process to reach an armed point claims the file by renaming it to `<file>.hit-<who>-<pid>` (a rename is
atomic, so of many processes exactly one takes it) and the point is disarmed again: one file, one fault.

| point             | where                                                                  | run by |
|-------------------|------------------------------------------------------------------------|--------|
| `incident.opened` | a trigger's incident and its first entries written, not yet committed  | API    |
| `flow.created`    | the incident's Prefect flow run created, its id not yet stored         | worker |
| `task.completed`  | a completion and its ledger entry written, not yet committed           | API    |
| `task.assigned`   | a step assigned and its ledger entry written, not yet committed        | worker |
| `stage.left`      | `stage.left` written, the next stage not yet entered                   | worker |
| `ledger.appended` | any ledger entry written (the incident's head moved), not yet committed | both   |
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from core.platform.settings import get_settings

log = logging.getLogger("baton.failpoints")

POINTS = ("incident.opened", "flow.created", "task.completed", "task.assigned", "stage.left", "ledger.appended")


def _claim(name: str) -> float | None:
    """Claim the point if it is armed for this process: crash here, or return the seconds to hold."""
    settings = get_settings()
    folder = settings.failpoint_dir
    if folder is None:
        return None
    who = settings.worker_id or "api"
    for armed in (Path(folder) / f"{name}@{who}", Path(folder) / name):
        claimed = armed.with_name(f"{armed.name}.hit-{who}-{os.getpid()}")
        try:
            os.rename(armed, claimed)
        except FileNotFoundError:
            continue
        action, _, argument = claimed.read_text().strip().partition(" ")
        log.warning("failpoint %s reached by %s (pid %d): %s %s", armed.name, who, os.getpid(), action, argument)
        if action == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "hold":
            return float(argument or "1")
        raise ValueError(f"{claimed}: unknown failpoint action '{action}' (crash, or hold SECONDS)")
    return None


def failpoint(name: str) -> None:
    """A point in code run on a thread (a transaction's work)."""
    hold = _claim(name)
    if hold:
        time.sleep(hold)


async def afailpoint(name: str) -> None:
    """A point in code run on the event loop: holding does not stall the process's other work."""
    hold = _claim(name)
    if hold:
        await asyncio.sleep(hold)
