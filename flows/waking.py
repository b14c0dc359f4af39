"""How a waiting incident flow is woken inside a Baton worker: one asyncio.Event per incident.

The worker's watch loop sets the event when the database shows a write for that incident; the flow also
wakes on its own at its next deadline or periodic re-check, so a missed signal only delays, never loses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class Waker:
    events: dict[str, asyncio.Event] = field(default_factory=dict)

    def arm(self, incident_id: str) -> asyncio.Event:
        """Call before reading the database, so a write that lands meanwhile still wakes the next wait."""
        event = self.events.setdefault(incident_id, asyncio.Event())
        event.clear()
        return event

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(timeout, 0.0))
            return True
        return False

    def wake(self, incident_id: str) -> None:
        event = self.events.get(incident_id)
        if event is not None:
            event.set()

    def forget(self, incident_id: str) -> None:
        self.events.pop(incident_id, None)


@dataclass(frozen=True)
class Runtime:
    worker_id: str | None
    waker: Waker
    poll_without_worker: float = 0.5
    # Incidents whose lease this worker lost: their flows stop without a word to Prefect (flows/incident.py).
    lost: set[str] = field(default_factory=set)
    # Called once the incident's flow body runs: the worker bounds how many runs start at once (flows/worker.py).
    started: Callable[[], None] = field(default=lambda: None)
    # Whether the worker is stopping: its flows, cancelled, hand their incidents back without a word to Prefect.
    stopping: Callable[[], bool] = field(default=lambda: False)


RUNTIME: ContextVar[Runtime | None] = ContextVar("baton_runtime", default=None)


def current_runtime() -> Runtime:
    runtime = RUNTIME.get()
    if runtime is None:
        # Run outside a worker (a test, a one-off): nobody sets events, so poll the database briefly.
        return Runtime(worker_id=None, waker=Waker(), poll_without_worker=0.5)
    return runtime
