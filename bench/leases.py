"""What one lease renewal costs on PostgreSQL: the worker's CPU and the database's, for a worker holding many
incidents (the idle figure of `make bench --incidents 10000` is mostly this).

    python -m bench.leases [--incidents 10000] [--rounds 30]

A cluster of its own, migrated; `--incidents` open incidents leased half to each of two workers; then one worker
renews all it holds (`leases.renew`, as the lease keeper does every 5 s), `--rounds` times in a row. Printed: wall
time, this process's CPU and the cluster's processes' CPU (read from /proc), per renewal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import asdict, dataclass
from datetime import timedelta

from bench.procinfo import cpu_seconds, tree_of


@dataclass
class RenewalCost:
    held: int
    rounds: int
    wall_ms: float
    worker_cpu_ms: float
    database_cpu_ms: float


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def lease_incidents(*, incidents: int, workers: tuple[str, ...], lease_seconds: float) -> dict[str, list[str]]:
    """`incidents` open incidents in the database, leased in turn to `workers`: the ids each holds."""
    from sqlalchemy import text

    from core.incidents.models import Incident
    from core.platform.clock import utcnow
    from core.platform.db import session_scope

    now = utcnow()
    held: dict[str, list[str]] = {worker: [] for worker in workers}
    with session_scope() as session:
        # No plan version behind them: the renewal reads no plan, and the foreign key would want one.
        session.execute(text("SET LOCAL session_replication_role = replica"))
        for n in range(incidents):
            worker = workers[n % len(workers)]
            incident = Incident(type="flood", level="IV", title=f"bench lease {n}", plan_version_id=0, plan_version=1,
                                opened_by="bench", code=f"BENCH-{n:06d}", lease_owner=worker,
                                lease_expires_at=now + timedelta(seconds=lease_seconds))
            session.add(incident)
            held[worker].append(incident.id)
    return held


def measure(*, postmaster: int, incidents: int, rounds: int, lease_seconds: float = 15.0) -> RenewalCost:
    """Renew one worker's leases `rounds` times, on the database the settings name (migrated, empty), served by
    the cluster whose postmaster is `postmaster` (its backends' CPU is the database's)."""
    from core.incidents import leases
    from core.platform.db import session_scope

    held = lease_incidents(incidents=incidents, workers=("bench-w1", "bench-w2"), lease_seconds=lease_seconds)
    mine = held["bench-w1"]
    database_pids = tree_of(postmaster)  # after the inserts: the backend serving this process's connection is one
    database_before, own_before, started = cpu_seconds(database_pids), _own_cpu(), time.perf_counter()
    for _ in range(rounds):
        with session_scope() as session:
            kept = leases.renew(session, worker_id="bench-w1", incident_ids=mine, lease_seconds=lease_seconds)
        if kept != set(mine):
            raise RuntimeError(f"the worker kept {len(kept)} of its {len(mine)} leases")
    wall, own, database = time.perf_counter() - started, _own_cpu() - own_before, \
        cpu_seconds(database_pids) - database_before
    return RenewalCost(held=len(mine), rounds=rounds, wall_ms=round(1000 * wall / rounds, 1),
                       worker_cpu_ms=round(1000 * own / rounds, 1), database_cpu_ms=round(1000 * database / rounds, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=10_000, help="open incidents, leased half to each worker")
    parser.add_argument("--rounds", type=int, default=30, help="renewals timed, one after the other")
    args = parser.parse_args(argv)
    from flows.stack import PostgresCluster

    cluster = PostgresCluster().start()
    try:
        os.environ["BATON_DATABASE_URL"] = cluster.create_database("baton")
        from core.platform.migrate import upgrade
        from core.platform.settings import get_settings

        get_settings.cache_clear()
        upgrade()
        postmaster = cluster.pid()
        assert postmaster is not None
        cost = measure(postmaster=postmaster, incidents=args.incidents, rounds=args.rounds)
    finally:
        cluster.stop()
    print(f"one renewal of {cost.held:,} leases ({cost.rounds} in a row, {args.incidents:,} incidents leased): "
          f"{cost.wall_ms} ms wall, worker CPU {cost.worker_cpu_ms} ms, PostgreSQL CPU {cost.database_cpu_ms} ms")
    print(json.dumps(asdict(cost)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
