"""bench/leases.py: a renewal's cost is measured on a real PostgreSQL, with the database's own CPU read from /proc."""

from __future__ import annotations

import pytest
from sqlmodel import col, func, select

from bench.leases import measure
from core.incidents.models import Incident
from core.platform.db import session_scope
from flows.stack import PostgresCluster

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("db_kind", ["postgres"], indirect=True)
def test_a_renewal_of_every_held_lease_is_timed_with_the_databases_cpu(baton: str,
                                                                          postgres: PostgresCluster) -> None:
    postmaster = postgres.pid()
    assert postmaster is not None
    # Enough rounds for the database's CPU to show in /proc, which counts in ticks of 10 ms: three rounds of a few ms
    # each read as 0.0 now and then on a loaded machine (a clean-clone run on 2026-12-05).
    cost = measure(postmaster=postmaster, incidents=400, rounds=30)
    assert (cost.held, cost.rounds) == (200, 30)
    # The database did the work (an UPDATE of 200 rows costs it something every time) and the worker waited for it.
    assert cost.database_cpu_ms > 0 and cost.wall_ms >= cost.worker_cpu_ms > 0
    with session_scope() as session:
        held = select(Incident.lease_owner, func.count()).group_by(col(Incident.lease_owner))
        owners = dict(session.exec(held).all())
    assert owners == {"bench-w1": 200, "bench-w2": 200}
