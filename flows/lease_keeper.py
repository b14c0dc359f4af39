"""Keeping a worker's leases: renewed from a thread of its own, so that a busy event loop never loses them.

A worker runs all its flows in one event loop. Renewing from that loop meant that when the loop was slow to come
round (a worker that had just claimed dozens of incidents starting their flow runs, on a machine short of CPU),
the leases lapsed although the worker was alive: the other worker claimed them, started the same flow runs, got
as busy, lost its leases in turn, and the incidents went back and forth every lease period without moving (seen
in the fault suites' soak on a loaded 2-core machine: 40 of 72 incidents left behind their completions). A lease
answers "is this worker alive?", so it is renewed by a thread that needs only the GIL and the database, the way
Kafka's consumers heartbeat from a thread apart from their poll loop.

A lease the keeper finds taken (this worker was frozen past its lease, or the database was out of reach that
long) is reported through `on_lost`, once, from the keeper's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from core.incidents import leases
from core.platform.db import outage_reason, session_scope
from flows.outages import is_outage

log = logging.getLogger("baton.worker")


class LeaseKeeper:
    def __init__(self, *, worker_id: str, lease_seconds: float, held: Callable[[], list[str]],
                 on_lost: Callable[[str], None]) -> None:
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.held = held  # the incidents this worker is running now
        self.on_lost = on_lost
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"baton-leases-{worker_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def renew_once(self) -> set[str]:
        """Renew the leases of the incidents running now; report those another worker holds. Returns those kept."""
        ids = self.held()
        if not ids:
            return set()
        with session_scope() as session:
            kept = leases.renew(session, worker_id=self.worker_id, incident_ids=ids,
                                lease_seconds=self.lease_seconds)
        self.renewals += 1
        for incident_id in ids:
            if incident_id not in kept:
                self.on_lost(incident_id)
        return kept

    def _run(self) -> None:
        # A third of the lease: two renewals in a row can fail (a database restart) before the lease lapses.
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.renew_once()
            except Exception as exc:
                if is_outage(exc):
                    log.warning("lease renewal failed: unavailable (%s); retrying", outage_reason(exc))
                else:
                    log.exception("lease renewal failed")
