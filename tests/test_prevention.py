"""Prevention on schedules (core.prevention, flows.prevention): a campaign's slot creates one inspection task per
matching register entry for its owning department, once; a finding opens a rectification with its deadline;
closing one needs evidence; the page's lists; reminders and escalation; the schedules deployed."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from prefect import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.states import Scheduled
from sqlmodel import col, select

from core.incidents.models import TaskStatus
from core.ledger.chain import verify_chain
from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerEntry
from core.platform.clock import as_utc, utcnow
from core.platform.db import session_scope
from core.platform.errors import EvidenceRequired, FormInvalid, TaskStateConflict
from core.platform.settings import get_settings
from core.prevention import service
from core.prevention.campaigns import CAMPAIGNS, TIMEZONE
from core.prevention.models import PreventionKind, PreventionRun, PreventionTask
from core.registers.models import RescueTeam, RiskKind, RiskPoint
from flows import prevention
from flows.stack import stop_process_groups
from tests.fixtures.api import Api, page_client
from tests.fixtures.clock import Clock
from tests.servers import PrefectServer
from tests.test_deploy import prefect_yaml

ROOT = Path(__file__).resolve().parents[1]


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


PNG = _png()  # a 1×1 photo
SLOT = datetime(2027, 4, 1, 1, 0, tzinfo=UTC)  # 09:00 Beijing time on 1 April: the 汛前检查's slot


def add_points(points: list[tuple[str, str, str]]) -> dict[str, str]:
    """Risk points (code, kind, owning department), straight into the register; their ids by code."""
    with session_scope() as session:
        rows = [RiskPoint(code=code, kind=kind, name_zh=f"{code}号积水点", name_en=f"Point {code}", organisation=owner,
                          lon=121.47, lat=31.23) for code, kind, owner in points]
        session.add_all(rows)
        session.flush()
        return {row.code: row.id for row in rows}


FLOOD_POINTS: list[tuple[str, str, str]] = [
    ("W-001", RiskKind.waterlogging, "water_affairs"), ("W-002", RiskKind.waterlogging, "water_affairs"),
    ("W-003", RiskKind.waterlogging, "urban_management"), ("G-001", RiskKind.geohazard, "natural_resources"),
    ("C-001", RiskKind.hazardous_chemicals, "ecology_environment")]


def tasks(**where: Any) -> list[PreventionTask]:
    with session_scope() as session:
        query = select(PreventionTask)
        for key, value in where.items():
            query = query.where(getattr(PreventionTask, key) == value)
        return list(session.exec(query.order_by(PreventionTask.entry_code)).all())


def kinds_recorded() -> list[str]:
    with session_scope() as session:
        return [r.kind for r in session.exec(select(LedgerEntry).where(col(LedgerEntry.chain).startswith(
            "prevention:")).order_by(col(LedgerEntry.id))).all()]


def test_a_scheduled_flood_precheck_run_creates_one_inspection_task_per_flood_risk_point_for_its_owning_department_and_a_finding_becomes_a_rectification_with_a_deadline(  # noqa: E501
        baton: str) -> None:
    ids = add_points(FLOOD_POINTS)
    result = prevention.prevention_campaign.fn(campaign="flood_precheck", slot=SLOT)
    assert result["created"] == 4
    made = tasks(kind=PreventionKind.inspection)
    # Every waterlogging and geohazard point, not the chemical plant; each for the department that owns it.
    assert [(t.entry_code, t.department) for t in made] == [
        ("G-001", "natural_resources"), ("W-001", "water_affairs"), ("W-002", "water_affairs"),
        ("W-003", "urban_management")]
    assert {t.entry_id for t in made} == {ids[c] for c in ("W-001", "W-002", "W-003", "G-001")}
    assert all(t.status == TaskStatus.assigned and t.campaign == "flood_precheck" for t in made)
    assert all(t.due_at - SLOT >= timedelta(days=30) for t in made)
    w1 = next(t for t in made if t.entry_code == "W-001")
    with session_scope() as session:
        fix = service.answer_inspection(session, task_id=w1.id, actor="user:water_affairs", hazard_found=True,
                                        finding="排水口被垃圾堵塞，泵站备用电源故障")
        assert fix is not None
        fix_id = fix.id
    (rectification,) = tasks(kind=PreventionKind.rectification)
    assert rectification.id == fix_id and rectification.parent_id == w1.id
    assert rectification.department == "water_affairs" and rectification.status == TaskStatus.assigned
    assert rectification.finding == "排水口被垃圾堵塞，泵站备用电源故障"
    assert rectification.due_at - rectification.assigned_at == timedelta(days=CAMPAIGNS["flood_precheck"].rectify_days)
    # No hazard: the inspection is done and nothing is opened.
    w2 = next(t for t in made if t.entry_code == "W-002")
    with session_scope() as session:
        assert service.answer_inspection(session, task_id=w2.id, actor="user:water_affairs", hazard_found=False) is None
    with session_scope() as session, pytest.raises(TaskStateConflict):
        service.answer_inspection(session, task_id=w2.id, actor="user:water_affairs", hazard_found=False)
    # Each creation and finding is in the run's chain, which verifies.
    recorded = kinds_recorded()
    assert recorded.count(LedgerKind.inspection_assigned) == 4
    assert recorded[0] == LedgerKind.prevention_run_started
    assert [k for k in recorded[5:]] == [LedgerKind.hazard_found, LedgerKind.rectification_opened,
                                         LedgerKind.inspection_completed]
    with session_scope() as session:
        (run,) = session.exec(select(PreventionRun)).all()
        assert verify_chain(session, service.run_chain(run.id)).valid


def test_running_the_same_slot_twice_creates_nothing_more(baton: str) -> None:
    add_points(FLOOD_POINTS)
    first = prevention.run_slot("flood_precheck", SLOT)
    again = prevention.run_slot("flood_precheck", SLOT)
    assert first[1] == 4 and again == (first[0], 0)
    # The same slot given in another time zone is the same slot.
    beijing = SLOT.astimezone(__import__("zoneinfo").ZoneInfo(TIMEZONE))
    assert prevention.prevention_campaign.fn(campaign="flood_precheck", slot=beijing)["created"] == 0
    assert len(tasks()) == 4 and kinds_recorded().count(LedgerKind.inspection_assigned) == 4
    # A second run that lost the race on the unique slot finds the first one (its tasks are not made twice).
    with session_scope() as session:
        session.add(PreventionRun(campaign="flood_precheck", slot=SLOT + timedelta(days=365), started_by="x"))
    assert prevention.run_slot("flood_precheck", SLOT + timedelta(days=365))[1] == 0
    # The next season's slot is a new run.
    assert prevention.run_slot("flood_precheck", SLOT + timedelta(days=366))[1] == 4


# -- through Prefect's own scheduling path: the served deployment runs the slot Prefect's scheduler made ------------

FLOOD_DEPLOYMENT = f"prevention-campaign/prevention-{CAMPAIGNS['flood_precheck'].key}"
POOL_FOR_TEST = "baton-maintenance-registered"


def this_seasons_flood_slot() -> datetime:
    """The 汛前检查's latest cron slot (09:00 Beijing time on 1 April) that has passed: a run scheduled for it is
    due, so the serving process takes it at once, as it takes a slot the scheduler made while it was down."""
    beijing = ZoneInfo(TIMEZONE)
    now = utcnow().astimezone(beijing)
    year = now.year if now >= datetime(now.year, 4, 1, 9, 0, tzinfo=beijing) else now.year - 1
    return datetime(year, 4, 1, 9, 0, tzinfo=beijing).astimezone(UTC)


async def _deployment_id(name: str) -> UUID | None:
    """The served deployment's id: one registered for workers under the same name (`deploy/prefect.yaml`, another
    test on the session's server) does not count until the serving process has taken it over."""
    async with get_client() as client:
        try:
            found = await client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None
        return found.id if found.work_pool_name is None else None


async def _schedule_run(deployment_id: UUID, slot: datetime) -> UUID:
    """What Prefect's scheduler does for a cron slot: a flow run of the deployment, Scheduled at the slot."""
    async with get_client() as client:
        run = await client.create_flow_run_from_deployment(deployment_id, state=Scheduled(scheduled_time=slot))
        return run.id


async def _read_run(flow_run_id: UUID) -> FlowRun:
    async with get_client() as client:
        return await client.read_flow_run(flow_run_id)


async def _delete_served_deployments() -> None:
    async with get_client() as client:
        for key in [*CAMPAIGNS, "sweep"]:
            flow_name = "prevention-sweep" if key == "sweep" else "prevention-campaign"
            try:
                found = await client.read_deployment_by_name(f"{flow_name}/prevention-{key}")
            except ObjectNotFound:
                continue
            await client.delete_deployment(found.id)


def _until(what: str, seconds: float, check: Any, served: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if served.poll() is not None:
            raise AssertionError(f"the prevention process exited with {served.returncode}: "
                                 f"{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {log.read_text(errors='replace')[-3000:]}")


def test_a_flood_precheck_slot_scheduled_on_prefect_runs_in_the_served_deployment_once(
        baton: str, prefect_server: PrefectServer, tmp_path: Path) -> None:
    """`python -m flows.prevention` (the embedded stack's process) serves the campaigns on the session's Prefect
    server; a flow run of `prevention-flood_precheck` Scheduled at the season's slot, as Prefect's scheduler makes
    it, is taken and run by that process on this test's database: one inspection per flood risk point for its
    owning department, the slot recorded being the scheduled time; a second run for the same slot adds nothing."""
    add_points(FLOOD_POINTS)
    slot = this_seasons_flood_slot()
    log = tmp_path / "prevention.log"
    # The test's Baton settings (its database, its home) and the session's Prefect server; a 1 s poll, so a due
    # run starts in a second or two rather than ten.
    env = dict(os.environ, PREFECT_API_URL=prefect_server.api_url, PREFECT_RUNNER_POLL_FREQUENCY="1",
               BATON_DATABASE_URL=baton, BATON_DATA_DIR=os.environ["BATON_DATA_DIR"],
               BATON_PLANS_DIR=os.environ["BATON_PLANS_DIR"])
    served = subprocess.Popen([sys.executable, "-m", "flows.prevention"], cwd=ROOT, env=env, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deployment_id = _until("the served deployment", 30, lambda: asyncio.run(_deployment_id(FLOOD_DEPLOYMENT)),
                               served, log)

        def completed(flow_run_id: UUID) -> FlowRun:
            def done() -> FlowRun | None:
                run = asyncio.run(_read_run(flow_run_id))
                assert run.state is not None
                if run.state.is_final():
                    assert run.state.is_completed(), (f"the flow run ended {run.state.name}: {run.state.message}\n"
                                                      f"{log.read_text(errors='replace')[-3000:]}")
                    return run
                return None
            finished: FlowRun = _until(f"flow run {flow_run_id} to complete", 30, done, served, log)
            return finished

        first = completed(asyncio.run(_schedule_run(deployment_id, slot)))
        made = tasks(kind=PreventionKind.inspection)
        assert [(t.entry_code, t.department, t.campaign) for t in made] == [
            ("G-001", "natural_resources", "flood_precheck"), ("W-001", "water_affairs", "flood_precheck"),
            ("W-002", "water_affairs", "flood_precheck"), ("W-003", "urban_management", "flood_precheck")]
        with session_scope() as session:
            (run,) = session.exec(select(PreventionRun)).all()
            assert as_utc(run.slot) == slot  # the scheduled time, not when the process got to it
            assert run.flow_run_id == str(first.id) and run.tasks_created == 4
            assert all(as_utc(t.due_at) >= slot + timedelta(days=30) for t in made)

        # Prefect schedules the same slot again (a second server's scheduler, a re-run): nothing more is made.
        again = completed(asyncio.run(_schedule_run(deployment_id, slot)))
        assert again.id != first.id
        assert len(tasks()) == 4 and kinds_recorded().count(LedgerKind.inspection_assigned) == 4
        with session_scope() as session:
            assert [r.flow_run_id for r in session.exec(select(PreventionRun)).all()] == [str(first.id)]
    finally:
        stop_process_groups({served.pid: served}, grace=15)
        # The session's Prefect server is shared: leave no served schedules (nor their future runs) behind.
        asyncio.run(_delete_served_deployments())


def test_closing_a_rectification_needs_evidence(baton: str) -> None:
    add_points(FLOOD_POINTS[:1])
    prevention.run_slot("flood_precheck", SLOT)
    (inspection,) = tasks()
    with session_scope() as session:
        fix = service.answer_inspection(session, task_id=inspection.id, actor="user:water_affairs",
                                        hazard_found=True, finding="护栏缺失")
        assert fix is not None
        fix_id = fix.id
    with session_scope() as session, pytest.raises(EvidenceRequired) as refused:
        service.close_rectification(session, task_id=fix_id, actor="user:water_affairs", measures="已加装护栏")
    assert refused.value.code == "evidence_required" and refused.value.http_status == 422
    assert tasks(id=fix_id)[0].status == TaskStatus.assigned
    with session_scope() as session:
        evidence = service.add_evidence(session, task_id=fix_id, actor="user:water_affairs", filename="护栏.png",
                                        stream=io.BytesIO(PNG))
        assert evidence.content_type == "image/png"
    with session_scope() as session:
        service.close_rectification(session, task_id=fix_id, actor="user:water_affairs", measures="已加装护栏")
    assert tasks(id=fix_id)[0].status == TaskStatus.completed
    with session_scope() as session:
        closed = session.exec(select(LedgerEntry).where(
            LedgerEntry.kind == LedgerKind.rectification_closed)).one()
        assert closed.subject == f"task:{fix_id}" and closed.details["evidence"] == 1


def test_the_prevention_page_lists_what_is_overdue_and_the_points_not_checked_this_season(baton: str,
                                                                                           clock: Clock) -> None:
    add_points(FLOOD_POINTS)
    slot = utcnow().replace(microsecond=0)
    prevention.run_slot("flood_precheck", slot)
    by_code = {t.entry_code: t for t in tasks()}
    with session_scope() as session:
        service.answer_inspection(session, task_id=by_code["W-001"].id, actor="user:water_affairs",
                                  hazard_found=False)
        service.answer_inspection(session, task_id=by_code["G-001"].id, actor="user:natural_resources",
                                  hazard_found=True, finding="坡体裂缝")
    with session_scope() as session:
        assert service.overdue(session, department=None) == []
        unchecked = {u.campaign.key: u for u in service.not_checked(session, department=None)}
        assert sorted(e.code for e in unchecked["flood_precheck"].entries) == ["W-002", "W-003"]
        assert unchecked["hazard_check"].run is None  # not run yet: everything of it is unchecked
        assert [e.code for e in unchecked["hazard_check"].entries] == ["C-001"]
        mine = {u.campaign.key: u for u in service.not_checked(session, department="water_affairs")}
        assert [e.code for e in mine["flood_precheck"].entries] == ["W-002"]
    clock.advance(days=31)
    with session_scope() as session:
        late = service.overdue(session, department=None)
        # The two unanswered inspections (30 days), and G-001's rectification (15 days).
        assert sorted((t.entry_code, t.kind) for t in late) == [
            ("G-001", "rectification"), ("W-002", "inspection"), ("W-003", "inspection")]
        assert [t.entry_code for t in service.overdue(session, department="water_affairs")] == ["W-002"]
        (row,) = service.rectifications_by_department(session, department=None)
        assert (row.department, row.open, row.overdue, row.closed) == ("natural_resources", 1, 1, 0)
        assert service.rectifications_by_department(session, department="water_affairs") == []


def test_reminders_and_escalation_follow_the_incidents_rule(baton: str, clock: Clock) -> None:
    add_points(FLOOD_POINTS[:1])
    prevention.run_slot("flood_precheck", utcnow())
    (task,) = tasks()
    with session_scope() as session:
        assert service.sweep(session).reminded == []
    clock.advance(days=25)  # 20 % of 30 days left: the reminder
    with session_scope() as session:
        assert service.sweep(session).reminded == [task.id]
        assert service.sweep(session).reminded == []
    clock.advance(days=6)
    with session_scope() as session:
        assert service.sweep(session).escalated == [task.id]
        assert service.sweep(session).escalated == []
    (task,) = tasks()
    assert task.status == TaskStatus.escalated and task.escalated_to == "emergency_office"  # water_affairs' supervisor
    assert kinds_recorded()[-1] == LedgerKind.prevention_escalated
    # An escalated inspection is still the department's to answer.
    with session_scope() as session:
        service.answer_inspection(session, task_id=task.id, actor="user:water_affairs", hazard_found=False)


def test_a_drill_campaign_gives_each_rescue_team_its_drill(baton: str) -> None:
    with session_scope() as session:
        session.add(RescueTeam(code="T-01", name_zh="防汛抢险队", organisation="water_affairs"))
    assert prevention.run_slot("drill_cadence", SLOT)[1] == 1
    assert tasks()[0].register_kind == "team"


def test_the_deployed_schedules_parse_and_name_existing_flows_and_campaigns() -> None:
    by_name = {d["name"]: d for d in prefect_yaml()["deployments"]}
    served = {d.name: d for d in prevention.deployments()}
    for key, spec in CAMPAIGNS.items():
        deployment = by_name[f"prevention-{key}"]
        assert deployment["entrypoint"] == "flows/prevention.py:prevention_campaign"
        assert deployment["parameters"] == {"campaign": key}
        (schedule,) = deployment["schedules"]
        parsed = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
        # The yaml and the embedded stack serve the campaign's own cron, in Beijing time.
        assert (parsed.cron, parsed.timezone) == (spec.cron, TIMEZONE)
        (served_schedule,) = served[f"prevention-{key}"].schedules or []
        assert served_schedule.schedule == parsed
        # The same slug, or Prefect refuses the one's update of what the other registered (422).
        assert schedule["slug"] == served_schedule.slug == spec.slug
    assert by_name["prevention-sweep"]["entrypoint"] == "flows/prevention.py:prevention_sweep"
    (sweep,) = by_name["prevention-sweep"]["schedules"]
    (served_sweep,) = served["prevention-sweep"].schedules or []
    assert isinstance(served_sweep.schedule, IntervalSchedule)
    assert sweep["interval"] == prevention.SWEEP_SECONDS == served_sweep.schedule.interval.total_seconds()
    assert sweep["slug"] == served_sweep.slug == prevention.SWEEP_SLUG


@pytest.mark.prefect
def test_serving_takes_over_the_deployments_the_registration_made(prefect_server: PrefectServer) -> None:
    """`deploy/prefect.yaml`'s registration (for the process workers of a work pool) and the embedded stack's serve
    name the same deployments. Serving after a registration on the same Prefect server must leave deployments that
    this process runs: its schedules (Prefect refuses an update whose schedules lack the registered slugs), no work
    pool (else the runs wait for workers), and a code path (a registered one has none: the runs crashed looking
    for the flow in `./None`). A served deployment is updated in place, keeping its id."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate

    by_name = {d["name"]: d for d in prefect_yaml()["deployments"]}
    ours = prevention.deployments()  # built outside an event loop (inside one, Prefect hands back coroutines)
    names = {d.name: f"{d.flow_name}/{d.name}" for d in ours}

    async def register() -> None:
        async with get_client() as client:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(WorkPoolCreate(name=POOL_FOR_TEST, type="process"))
            for served in ours:
                assert served.flow_name is not None
                (declared,) = by_name[served.name]["schedules"]
                schedule = (IntervalSchedule(interval=timedelta(seconds=declared["interval"]))
                            if "interval" in declared
                            else CronSchedule(cron=declared["cron"], timezone=declared["timezone"]))
                flow_id = await client.create_flow_from_name(served.flow_name)
                await client.create_deployment(
                    flow_id=flow_id, name=served.name, entrypoint=by_name[served.name]["entrypoint"],
                    work_pool_name=POOL_FOR_TEST, path=None,
                    pull_steps=[{"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}],
                    schedules=[DeploymentScheduleCreate(schedule=schedule, slug=declared["slug"])])

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            return {name: await client.read_deployment_by_name(full) for name, full in names.items()}

    def serve_once() -> None:
        for deployment in prevention.ready_to_serve():  # what `serve` does when it starts: apply each
            deployment.apply()

    try:
        asyncio.run(register())
        serve_once()
        taken = asyncio.run(read())
        assert set(taken) == {name for name in by_name if name.startswith("prevention-")}
        for name, found in taken.items():
            assert found.work_pool_name is None and found.path is not None and not found.pull_steps, name
            assert [s.slug for s in found.schedules] == [by_name[name]["schedules"][0]["slug"]]
        serve_once()  # a restart of the embedded stack: the served deployments are updated, not replaced
        assert {n: d.id for n, d in asyncio.run(read()).items()} == {n: d.id for n, d in taken.items()}
    finally:
        asyncio.run(_delete_served_deployments())


# -- over HTTP: scoping, the page, the stable refusal --------------------------------------------------------------


def test_a_department_sees_and_acts_on_its_own_prevention_work_only_and_the_page_lists_it(api: Api,
                                                                                         clock: Clock) -> None:
    add_points(FLOOD_POINTS)
    prevention.run_slot("flood_precheck", utcnow())
    by_code = {t.entry_code: t for t in tasks()}
    server, tokens = api.server, api.tokens
    mine = server.request("GET", "/api/prevention/tasks", tokens["water_affairs"]).json()
    assert sorted(t["entry_code"] for t in mine) == ["W-001", "W-002"]
    assert server.request("GET", "/api/prevention/tasks", tokens["public_security"]).json() == []
    assert len(server.request("GET", "/api/prevention/tasks", tokens["office"]).json()) == 4
    other = by_code["W-003"].id  # urban_management's
    assert server.request("GET", f"/api/prevention/tasks/{other}", tokens["water_affairs"]).status_code == 404
    refused = server.request("POST", f"/api/prevention/tasks/{other}/answer", tokens["water_affairs"],
                             json={"hazard_found": False})
    assert refused.status_code == 404
    # The office reads but does not answer a department's inspection.
    assert server.request("POST", f"/api/prevention/tasks/{other}/answer", tokens["office"],
                          json={"hazard_found": False}).status_code == 403
    found = server.request("POST", f"/api/prevention/tasks/{by_code['W-001'].id}/answer", tokens["water_affairs"],
                           json={"hazard_found": True, "finding": "排水口堵塞"})
    assert found.status_code == 200 and found.json()["kind"] == "rectification"
    fix_id = found.json()["id"]
    closing = server.request("POST", f"/api/prevention/tasks/{fix_id}/close", tokens["water_affairs"],
                             json={"measures": "已清掏"})
    assert closing.status_code == 422 and closing.json()["error"]["code"] == "evidence_required"
    sent = server.request("POST", f"/api/prevention/tasks/{fix_id}/evidence", tokens["water_affairs"],
                          files={"file": ("after.png", PNG, "image/png")})
    assert sent.status_code == 201
    evidence_url = f"/api/prevention/evidence/{sent.json()['id']}"
    assert server.request("GET", evidence_url, tokens["public_security"]).status_code == 404
    assert server.request("GET", evidence_url, tokens["office"]).content == PNG
    assert server.request("POST", f"/api/prevention/tasks/{fix_id}/close", tokens["water_affairs"],
                          json={"measures": "已清掏"}).json()["status"] == "completed"
    clock.advance(days=31)
    office_page = page_client(server, "office").get("/prevention")
    assert office_page.status_code == 200
    for code in ("W-002", "W-003", "G-001"):
        assert f'data-code="{code}"' in office_page.text
    assert "本期未检查" in office_page.text or "Not checked this season" in office_page.text
    water_page = page_client(server, "water_affairs").get("/prevention").text
    assert 'data-code="W-002"' in water_page and 'data-code="W-003"' not in water_page
    assert 'data-code="G-001"' not in water_page


# -- in the department's inbox, answered and closed from the pages --------------------------------------------------


def _csrf(text: str) -> str:
    import re

    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found, text[:500]
    return found.group(1)


def test_the_inbox_lists_a_departments_prevention_tasks_answered_and_closed_with_evidence_on_the_pages(
        api: Api, clock: Clock) -> None:
    add_points(FLOOD_POINTS)
    prevention.run_slot("flood_precheck", utcnow())
    by_code = {t.entry_code: t for t in tasks()}
    server, tokens = api.server, api.tokens
    water = page_client(server, "water_affairs")
    inbox = water.get("/inbox")
    assert inbox.status_code == 200 and 'id="prevention-tasks"' in inbox.text
    assert 'data-code="W-001"' in inbox.text and 'data-code="W-002"' in inbox.text
    assert 'data-code="W-003"' not in inbox.text  # urban_management's: not this department's inbox
    assert 'data-code="W-001"' in water.get("/inbox/list").text  # the polled list too
    # The API's inbox: a list of its own beside `items`, each with its kind; another department's is not in it.
    listed = server.request("GET", "/api/tasks?open=true", tokens["water_affairs"]).json()
    assert {"items", "total", "limit", "offset"} <= set(listed)
    assert sorted((t["kind"], t["entry_code"]) for t in listed["prevention"]) == [("inspection", "W-001"),
                                                                                  ("inspection", "W-002")]
    assert server.request("GET", "/api/tasks", tokens["public_security"]).json()["prevention"] == []
    # Another department's inspection reads as missing and cannot be answered from the page.
    other = by_code["W-003"].id
    assert water.get(f"/prevention/tasks/{other}").status_code == 404
    assert water.post(f"/prevention/tasks/{other}/answer", data={"csrf": _csrf(inbox.text), "hazard": "no"}
                      ).status_code == 404

    # A hazard found without a note: refused beside the note, nothing answered.
    inspection = by_code["W-001"].id
    view = water.get(f"/prevention/tasks/{inspection}")
    assert view.status_code == 200 and 'id="answer-form"' in view.text
    refused = water.post(f"/prevention/tasks/{inspection}/answer", data={"csrf": _csrf(view.text), "hazard": "yes",
                                                                          "finding": ""})
    assert refused.status_code == 422 and 'id="err-finding"' in refused.text
    assert tasks(id=inspection)[0].status == TaskStatus.assigned
    answered = water.post(f"/prevention/tasks/{inspection}/answer",
                          data={"csrf": _csrf(view.text), "hazard": "yes", "finding": "雨水篦子缺失，排水口堵塞"})
    assert answered.status_code == 303
    fix_url = answered.headers["location"].split("?")[0]
    [fix] = tasks(kind=PreventionKind.rectification)
    assert fix_url == f"/prevention/tasks/{fix.id}" and fix.parent_id == inspection
    inbox = water.get("/inbox")
    assert f'data-prevention="{fix.id}"' in inbox.text and f'data-prevention="{inspection}"' not in inbox.text

    # Closing without evidence: refused, the message beside the file field, the rectification still open.
    page = water.get(fix_url)
    assert 'capture="environment"' in page.text and 'enctype="multipart/form-data"' in page.text
    closing = water.post(f"{fix_url}/close", data={"csrf": _csrf(page.text), "measures": "已清掏", "action": "close"})
    assert closing.status_code == 422
    error = closing.text.split('id="err-evidence_file"', 1)
    assert len(error) == 2 and "整改销号须有佐证材料" in error[1].split("</p>", 1)[0]
    assert tasks(id=fix.id)[0].status == TaskStatus.assigned
    # Not a photo: refused beside the field, nothing stored.
    bad = water.post(f"{fix_url}/close", data={"csrf": _csrf(page.text), "measures": "已清掏", "action": "close"},
                     files={"evidence_file": ("after.png", b"not a photo at all", "image/png")})
    assert bad.status_code == 422 and 'id="err-evidence_file"' in bad.text
    with session_scope() as session:
        assert service.evidence_of(session, fix.id) == []
    # The office reads it but does not close a department's rectification.
    office = page_client(server, "office")
    assert office.get(fix_url).status_code == 200
    assert office.post(f"{fix_url}/close", data={"csrf": _csrf(office.get(fix_url).text), "measures": "x"}
                       ).status_code == 403
    # With a photo from the phone's camera: closed in one go.
    closed = water.post(f"{fix_url}/close", data={"csrf": _csrf(page.text), "measures": "已清掏并加装篦子",
                                                 "action": "close"},
                        files={"evidence_file": ("after.png", PNG, "image/png")})
    assert closed.status_code == 303 and closed.headers["location"] == f"{fix_url}?done=closed"
    [done] = tasks(id=fix.id)
    assert done.status == TaskStatus.completed and done.measures == "已清掏并加装篦子"
    with session_scope() as session:
        [photo] = service.evidence_of(session, fix.id)
    shown = water.get(closed.headers["location"])
    assert f'data-evidence="{photo.id}"' in shown.text and 'id="close-form"' not in shown.text
    assert f'data-prevention="{fix.id}"' not in water.get("/inbox").text
    assert LedgerKind.rectification_closed in kinds_recorded()


# -- to the departments' own systems: assignment, reminder and escalation through the outbox -----------------------


@pytest.mark.prefect
def test_a_prevention_task_reaches_the_departments_own_system_through_the_outbox(
        prefect_server: PrefectServer, baton: str, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """As an incident task's do: the owning department's system is told of its inspection, then reminded, and at the
    deadline its supervisor's system is told of the escalation; the messages belong to no incident, so a worker's
    outbox loop (not an incident's flow) sends them, signed, once each; a department without a system gets none."""
    from core.outbox.models import DeliveryOutcome, OutboundDelivery
    from flows.worker import BatonWorker
    from tests.receiver import running_receiver
    from tests.test_outbox import run_outbox_loop

    secret = "prevention-outbox-secret"
    with running_receiver(secret) as receiver:
        endpoint = {"url": receiver.url, "secret": secret}
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps({"water_affairs": endpoint, "emergency_office": endpoint}))
        get_settings.cache_clear()
        add_points(FLOOD_POINTS[:3])  # two of water_affairs', one of urban_management's (no system configured)
        prevention.run_slot("flood_precheck", utcnow())
        first = {t.entry_code: t for t in tasks()}["W-001"]
        every = {t.id for t in tasks()}
        clock.advance(days=25)
        with session_scope() as session:
            assert set(service.sweep(session).reminded) == every
        clock.advance(days=6)
        with session_scope() as session:
            assert len(service.sweep(session).escalated) == 3

        def rows() -> list[OutboundDelivery]:
            with session_scope() as session:
                return list(session.exec(select(OutboundDelivery)).all())

        queued = rows()
        # water_affairs: 2 assignments + 2 reminders; the office (its supervisor): 2 escalations; nothing for
        # urban_management, whose escalation goes to city_government, neither with a system.
        assert sorted((d.target, d.purpose) for d in queued) == sorted(
            [("water_affairs", "assignment")] * 2 + [("water_affairs", "reminder")] * 2
            + [("emergency_office", "escalation")] * 2)
        assert all(d.incident_id is None and not d.drill for d in queued)
        asyncio.run(run_outbox_loop(BatonWorker(worker_id="outbox-loop"),
                                    lambda: all(d.outcome != DeliveryOutcome.pending for d in rows()), timeout=60))
        assert {d.outcome for d in rows()} == {DeliveryOutcome.delivered}
        assert sorted(receiver.message_ids()) == sorted(d.id for d in queued)
        assert receiver.bad_signatures == 0 and receiver.duplicates == 0
        told = next(m for m in receiver.received if m["purpose"] == "assignment"
                    and m["prevention_task"]["id"] == first.id)
        assert "incident" not in told
        assert told["prevention_task"]["entry"]["code"] == "W-001"
        assert told["prevention_task"]["department"] == "water_affairs" and told["prevention_task"]["kind"] == \
            "inspection"
        # The supervisor's system learns that the task is late, not what the department's task says.
        escalated = [m for m in receiver.received if m["purpose"] == "escalation"]
        assert escalated and all("finding" not in m["prevention_task"]
                                 and set(m["prevention_task"]["entry"]) == {"code"} for m in escalated)
        assert told["prevention_task"]["entry"]["name_zh"] == "W-001号积水点"
        # A second sweep at the same moment queues nothing more (one message per task and purpose).
        with session_scope() as session:
            service.sweep(session)
        assert len(rows()) == len(queued)


def test_a_finding_with_a_control_character_is_refused_on_every_path(baton: str) -> None:
    """The service is where the pages and the CLI come in (the API's schema refuses it first): a finding that could
    not be shown or sent to a department's system is refused, naming the field, and nothing is written."""
    add_points(FLOOD_POINTS[:1])
    prevention.run_slot("flood_precheck", SLOT)
    (inspection,) = tasks()
    with session_scope() as session, pytest.raises(FormInvalid) as refused:
        service.answer_inspection(session, task_id=inspection.id, actor="user:water_affairs", hazard_found=True,
                                  finding="护栏缺失\x1b[2J")
    assert refused.value.details == [{"field": "finding", "code": "control_character",
                                      "message": refused.value.details[0]["message"]}]
    assert "U+001B" in refused.value.details[0]["message"]
    (still,) = tasks()
    assert still.status == TaskStatus.assigned and still.finding is None and len(tasks()) == 1
