"""Prevention on schedules (core.prevention): each campaign is a Prefect deployment with a cron schedule.

* `prevention-campaign` (one deployment per campaign, `prevention-<key>`, its cron from
  `core.prevention.campaigns`): its run's scheduled start is the campaign's slot; it creates one inspection task per
  matching register entry for the owning department. The slot is the idempotency key: the run row is unique per
  (campaign, slot) and written with its tasks in one transaction, so a slot run twice (two serving processes, a
  retried flow run, a manual re-run) creates its tasks once.
* `prevention-sweep` (every five minutes) reminds and escalates open inspections and rectifications.

Both are declared in `deploy/prefect.yaml` for the process work pool; the embedded stack (`baton serve`, `baton
demo`) serves the same deployments with Prefect's `serve()` from one process of its own (`python -m
flows.prevention`), so Prefect's scheduler makes each slot's flow run, once, whoever serves it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_client, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.logging import get_run_logger
from prefect.schedules import Cron, Interval
from sqlalchemy.exc import IntegrityError

from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.prevention import service
from core.prevention.campaigns import CAMPAIGNS, TIMEZONE

SWEEP_SECONDS = 300
SWEEP_SLUG = "every-five-minutes"


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("baton.prevention")


def run_slot(campaign: str, slot: datetime, *, flow_run_id: str | None = None, actor: str = "baton",
             now: datetime | None = None) -> tuple[str, int]:
    """Run one campaign slot in a transaction of its own: (run id, tasks created). A concurrent run of the same slot
    that committed first makes this one fail on the unique (campaign, slot); it then finds that run: 0 created."""
    try:
        with session_scope() as session:
            outcome = service.run_campaign(session, campaign=campaign, slot=slot, actor=actor,
                                           flow_run_id=flow_run_id, now=now)
            return outcome.run.id, outcome.created
    except IntegrityError:
        with session_scope() as session:
            run = service.find_run(session, campaign=campaign, slot=slot)
            if run is None:
                raise
            return run.id, 0


def _scheduled_slot() -> tuple[datetime, str | None]:
    """The running flow run's scheduled start (its schedule slot) and id; now, to the minute, outside a run."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    scheduled = flow_run.get_scheduled_start_time() if run_id else None
    if scheduled is None:
        return utcnow().replace(second=0, microsecond=0), run_id
    return datetime.fromtimestamp(scheduled.timestamp(), UTC), run_id


@flow(name="prevention-campaign")
def prevention_campaign(campaign: str, slot: datetime | None = None) -> dict[str, Any]:
    """Create one inspection task per matching register entry for its owning department, once per slot."""
    service.campaign_of(campaign)  # an unknown campaign fails the run at once
    scheduled, run_id = _scheduled_slot()
    moment = slot or scheduled
    run_id_db, created = run_slot(campaign, moment, flow_run_id=run_id)
    _logger().info("%s slot %s: %d inspection task(s) created", campaign, moment.isoformat(), created)
    return {"campaign": campaign, "slot": moment.isoformat(), "run_id": run_id_db, "created": created}


@flow(name="prevention-sweep")
def prevention_sweep() -> dict[str, Any]:
    """Remind and escalate open inspections and rectifications."""
    with session_scope() as session:
        swept = service.sweep(session)
    if swept.escalated:
        _logger().info("escalated %d overdue prevention task(s)", len(swept.escalated))
    return {"reminded": len(swept.reminded), "escalated": len(swept.escalated)}


def deployments() -> list[RunnerDeployment]:
    """What the embedded stack serves: a deployment per campaign on its cron, and the sweep."""
    made = [prevention_campaign.to_deployment(
        name=f"prevention-{key}", schedule=Cron(spec.cron, timezone=TIMEZONE, slug=spec.slug),
        parameters={"campaign": key}, tags=["baton", "prevention", f"campaign:{key}"],
        description=f"{spec.name_zh} · {spec.name_en}")
        for key, spec in CAMPAIGNS.items()]
    made.append(prevention_sweep.to_deployment(name="prevention-sweep",
                                               schedule=Interval(SWEEP_SECONDS, slug=SWEEP_SLUG),
                                               tags=["baton", "prevention"]))
    ready = [d for d in made if isinstance(d, RunnerDeployment)]  # called outside an event loop: built already
    assert len(ready) == len(made)
    return ready


async def _release_registered(served: list[RunnerDeployment]) -> list[str]:
    """Delete the deployments of these names that `deploy/prefect.yaml` registered for a work pool's workers (one
    Prefect server used in both ways): serve updates an existing deployment's schedules but not its work pool,
    storage path or pull steps, so its runs would be handed to workers, or crash looking for code where the image
    keeps it. Served ones (no work pool) are left to serve's update, keeping their ids and history."""
    released = []
    async with get_client() as client:
        for deployment in served:
            try:
                found = await client.read_deployment_by_name(f"{deployment.flow_name}/{deployment.name}")
            except ObjectNotFound:
                continue
            if found.work_pool_name:
                await client.delete_deployment(found.id)
                released.append(f"{deployment.flow_name}/{deployment.name} (work pool {found.work_pool_name})")
    return released


def ready_to_serve() -> list[RunnerDeployment]:
    """The deployments to serve, the server cleared of registered ones of the same names (logged)."""
    made = deployments()
    for name in asyncio.run(_release_registered(made)):
        _logger().warning("serving %s here: the deployment registered for workers under that name was replaced",
                          name)
    return made


def serve_prevention() -> None:
    """Serve the prevention deployments (the embedded stack's `prevention` process); runs until stopped."""
    serve(*ready_to_serve(), limit=2)


if __name__ == "__main__":
    serve_prevention()
