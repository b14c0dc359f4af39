"""The engine's rules on a real database (SQLite, and PostgreSQL where marked): stages, levels, deadlines,
hand-backs, forms and the ledger, driven synchronously the way a worker's flow drives them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from core.incidents.alerts import open_alerts
from core.incidents.deadlines import passed_unhandled, reminder_at
from core.incidents.engine import advance
from core.incidents.handoffs import acknowledge, complete, hand_back
from core.incidents.models import DepartmentTask, LevelChange
from core.incidents.service import change_level
from core.ledger import chain as ledger
from core.ledger.models import LedgerEntry
from core.outbox.models import OutboundDelivery
from core.platform.db import session_scope
from core.platform.errors import FormInvalid, TaskStateConflict
from core.platform.settings import get_settings
from tests import engine_driver as drive

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)

FORECAST = {"rainfall_1h": 60, "rainfall_24h": 180, "warning_colour": "orange",
            "valid_until": drive.VALID_UNTIL}
ASSESSMENT = {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True}


def ledger_kinds(incident_id: str) -> list[tuple[str, str | None]]:
    with session_scope() as session:
        return [(e.kind, e.step_key) for e in ledger.read_chain(session, incident_id)]


def finish_warning(incident_id: str) -> None:
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment", ASSESSMENT)
    drive.step(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "respond"})
    assert drive.step(incident_id).stage == "response"


@BOTH
def test_whole_flood_incident_walks_the_four_stages(baton: str) -> None:
    incident_id = drive.open_("flood", level="IV")
    assert drive.incident(incident_id).code.startswith("FLD-")
    done = drive.run_to_end(incident_id, {"lift_warning": {"decision": "respond"},
                                          "rainstorm_forecast": FORECAST,
                                          "flood_risk_assessment": ASSESSMENT})
    row = drive.incident(incident_id)
    assert row.status == "closed" and row.stage == "learning" and row.closed_at is not None
    kinds = ledger_kinds(incident_id)
    entered = [step for kind, step in kinds if kind == "stage.entered"]
    assert len(entered) == 4
    stages = [e for e in (k for k in kinds) if e[0] in ("stage.entered", "stage.left", "incident.closed")]
    assert [k for k, _ in stages] == ["stage.entered", "stage.left"] * 4 + ["incident.closed"]
    # Level IV: level-III-and-up steps never ran; everything else that applies was done in dependency order.
    tasks = drive.tasks(incident_id)
    assert tasks["underground_space_check"].status == "skipped"
    assert tasks["water_rescue"].status == "skipped"
    assert done.index("rainstorm_forecast") < done.index("flood_risk_assessment") < done.index("lift_warning")
    assert done.index("activate_command") < done.index("drainage_operations") < done.index("press_release")
    assert done[-1] == "after_action_review"
    # One assignment and one completion per human step, each ledgered once.
    assigned = [s for k, s in kinds if k == "task.assigned"]
    assert len(assigned) == len(set(assigned))
    assert sorted(str(s) for k, s in kinds if k == "task.completed") == sorted(done)
    with session_scope() as session:
        assert ledger.verify_incident(session, incident_id).valid


@BOTH
def test_codes_are_sequential_per_type_and_year(baton: str) -> None:
    first = drive.incident(drive.open_("flood")).code
    second = drive.incident(drive.open_("flood")).code
    other = drive.incident(drive.open_("typhoon")).code
    assert first.endswith("-0001") and second.endswith("-0002")
    assert first[:-4] == second[:-4]
    assert other.startswith("TYP-") and other.endswith("-0001")


def test_advance_twice_changes_nothing_twice(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    before = ledger_kinds(incident_id), drive.tasks(incident_id).keys()
    drive.step(incident_id)
    drive.step(incident_id)
    assert (ledger_kinds(incident_id), drive.tasks(incident_id).keys()) == before


@BOTH
def test_raising_the_level_mid_response_activates_steps_and_tightens_deadlines(baton: str) -> None:
    incident_id = drive.open_("flood", level="IV")
    finish_warning(incident_id)
    command = drive.open_tasks(incident_id)["activate_command"]
    assert command.due_at is not None and command.assigned_at is not None
    assert command.due_at - command.assigned_at == timedelta(hours=1)  # level IV: PT1H
    commander = drive.person()
    with session_scope() as session:
        change_level(session, incident_id=incident_id, level="II", by=commander,
                     reason="river over banks")
    command = drive.open_tasks(incident_id)["activate_command"]
    assert command.due_at is not None and command.assigned_at is not None
    assert command.due_at - command.assigned_at == timedelta(minutes=30)  # level II: PT30M
    drive.step(incident_id)
    drive.complete_step(incident_id, "activate_command")
    drive.step(incident_id)
    open_now = drive.open_tasks(incident_id)
    # Level-II and level-III steps of the response stage now run; at IV they would not.
    assert {"water_rescue", "power_safety", "drainage_operations", "traffic_control"} <= set(open_now)
    assert open_now["power_safety"].due_at is not None and open_now["power_safety"].assigned_at is not None
    assert open_now["power_safety"].due_at - open_now["power_safety"].assigned_at == timedelta(hours=1)
    with session_scope() as session:
        change = session.exec(select(LevelChange).where(LevelChange.incident_id == incident_id)).one()
        assert (change.from_level, change.to_level, change.actor, change.reason) == (
            "IV", "II", "user:commander", "river over banks")
    assert ("level.changed", None) in ledger_kinds(incident_id)


def test_lowering_the_level_cancels_unstarted_steps_that_no_longer_apply(baton: str) -> None:
    incident_id = drive.open_("flood", level="II")
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id)
    open_now = drive.open_tasks(incident_id)
    assert {"school_suspension", "flood_risk_assessment"} <= set(open_now)
    commander = drive.person()
    with session_scope() as session:
        acknowledge(session, task_id=open_now["flood_risk_assessment"].id, actor="test:water")
        change_level(session, incident_id=incident_id, level="IV", by=commander, reason="rain eased")
    tasks = drive.tasks(incident_id)
    assert tasks["school_suspension"].status == "cancelled"
    assert tasks["school_suspension"].cancel_reason == "level lowered to IV"
    assert tasks["flood_risk_assessment"].status == "acknowledged"  # started work is left alone
    assert ("task.cancelled", "school_suspension") in ledger_kinds(incident_id)


def test_the_engine_and_the_deadline_sweep_see_the_reminder_fall_due_at_one_moment(baton: str) -> None:
    """The reminder is due when 20 % (the setting) of the task's time is left: the engine sends it then, not a
    second before, and the sweep (which wakes incidents whose worker missed it) counts it passed from then."""
    incident_id = drive.open_("flood", level="IV")
    drive.step(incident_id)
    task = drive.open_tasks(incident_id)["rainstorm_forecast"]
    assert task.assigned_at is not None and task.due_at is not None
    moment = reminder_at(task.assigned_at, task.due_at)
    assert moment == task.due_at - (task.due_at - task.assigned_at) * get_settings().reminder_before
    early = moment - timedelta(seconds=1)
    with session_scope() as session:
        assert passed_unhandled(session, now=early) == {}
        assert passed_unhandled(session, now=moment) == {incident_id: moment}
    assert drive.step(incident_id, now=early).next_check == moment
    assert drive.tasks(incident_id)["rainstorm_forecast"].reminded_at is None
    drive.step(incident_id, now=moment)
    assert drive.tasks(incident_id)["rainstorm_forecast"].reminded_at == moment
    with session_scope() as session:
        assert passed_unhandled(session, now=moment) == {}  # sent: nothing left for the sweep


def test_overdue_task_is_reminded_then_escalated_to_its_target(baton: str) -> None:
    drive.person("gov1", role="department", department="city_government")  # somebody at the supervisor acts
    incident_id = drive.open_("flood", level="IV")
    result = drive.step(incident_id)
    task = drive.open_tasks(incident_id)["rainstorm_forecast"]
    assert task.due_at is not None and task.assigned_at is not None
    assert result.next_check is not None and result.next_check < task.due_at  # the reminder comes first
    drive.step(incident_id, now=task.assigned_at + timedelta(minutes=50))
    with session_scope() as session:
        reminded = session.get(DepartmentTask, task.id)
        assert reminded is not None and reminded.reminded_at is not None and reminded.status == "assigned"
    drive.step(incident_id, now=task.due_at + timedelta(seconds=1))
    with session_scope() as session:
        row = session.get(DepartmentTask, task.id)
        assert row is not None
        assert row.status == "escalated"
        assert row.escalated_to == "city_government"  # meteorology's supervisor
        purposes = {d.purpose: d.target for d in session.exec(
            select(OutboundDelivery).where(OutboundDelivery.incident_id == incident_id)).all()}
        assert purposes == {"reminder": "meteorology", "escalation": "city_government"}
        entry = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "task.escalated")).one()
        assert (entry.from_party, entry.to_party, entry.step_key) == ("meteorology", "city_government",
                                                                      "rainstorm_forecast")
    # Still the department's to finish, late.
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id)
    assert "flood_risk_assessment" in drive.open_tasks(incident_id)


def test_an_escalation_to_a_department_nobody_can_act_for_goes_to_the_office(baton: str) -> None:
    # The city government (meteorology's supervisor) has no users: the office is told instead, and alerted.
    incident_id, task = drive.forecast_past_due()
    with session_scope() as session:
        row = session.get(DepartmentTask, task.id)
        assert row is not None and (row.status, row.escalated_to) == ("escalated", "emergency_office")
        entry = session.exec(select(LedgerEntry).where(LedgerEntry.kind == "task.escalated")).one()
        assert entry.to_party == "emergency_office" and entry.details["planned_target"] == "city_government"
        [alert] = [a for a in open_alerts(session, incident_id=incident_id) if a.task_id == task.id]
        assert alert.kind == "overdue" and "city_government" in alert.reason
        delivery = session.exec(select(OutboundDelivery).where(OutboundDelivery.purpose == "escalation")).one()
        assert delivery.target == "emergency_office"
    assert ("task.unstaffed", "rainstorm_forecast") in ledger_kinds(incident_id)


def test_a_handed_back_task_waits_for_the_office_with_an_alert(baton: str) -> None:
    # No longer silently reassigned to the supervisor (the city government, which has nobody to act): the
    # office is alerted with the reason, and the step stays with the office until it chooses.
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    task = drive.open_tasks(incident_id)["rainstorm_forecast"]
    with session_scope() as session:
        hand_back(session, task_id=task.id, actor="test:met", reason="radar down, ask the provincial bureau")
    drive.step(incident_id)
    drive.step(incident_id)
    assert "rainstorm_forecast" not in drive.open_tasks(incident_id)
    latest = drive.tasks(incident_id)["rainstorm_forecast"]
    assert latest.id == task.id and latest.status == "handed_back"
    with session_scope() as session:
        [alert] = [a for a in open_alerts(session, incident_id=incident_id) if a.task_id == task.id]
        assert (alert.kind, alert.reason, alert.department, alert.raised_by) == (
            "handed_back", "radar down, ask the provincial bureau", "meteorology", "test:met")
    kinds = ledger_kinds(incident_id)
    assert ("task.handed_back", "rainstorm_forecast") in kinds
    assert ("task.reassigned", "rainstorm_forecast") not in kinds
    assert drive.incident(incident_id).stage == "warning"  # the required step holds the stage


def test_completion_is_checked_against_the_form_and_cannot_happen_twice(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    task = drive.open_tasks(incident_id)["rainstorm_forecast"]
    with pytest.raises(FormInvalid) as bad, session_scope() as session:
        complete(session, task_id=task.id, actor="test:met",
                 outputs={"rainfall_1h": "lots", "warning_colour": "purple", "colour": "x",
                          "valid_until": "tomorrow"})
    fields = {item["field"] for item in bad.value.details}
    assert fields == {"rainfall_1h", "rainfall_24h", "warning_colour", "colour", "valid_until"}
    before = len(ledger_kinds(incident_id))
    with session_scope() as session:
        complete(session, task_id=task.id, actor="test:met", outputs=FORECAST)
    with pytest.raises(TaskStateConflict), session_scope() as session:
        complete(session, task_id=task.id, actor="test:met", outputs=FORECAST)
    assert len(ledger_kinds(incident_id)) == before + 1


def test_condition_false_skips_the_step(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment", {**ASSESSMENT, "hot_spots": 0})
    drive.step(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "respond"})
    drive.step(incident_id)
    drive.complete_step(incident_id, "activate_command")
    drive.step(incident_id)
    tasks = drive.tasks(incident_id)
    assert tasks["evacuate_residents"].status == "skipped"
    assert tasks["drainage_operations"].status == "assigned"


@BOTH
def test_database_rejects_update_and_delete_of_ledger_entries(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    for statement in ("UPDATE ledger_entry SET actor = 'someone else'", "DELETE FROM ledger_entry"):
        with pytest.raises(Exception, match="append-only"), session_scope() as session:
            session.execute(text(statement))
    with session_scope() as session:
        assert ledger.verify_incident(session, incident_id).valid


@BOTH
def test_database_rejects_changes_to_the_audit_trail(baton: str) -> None:
    from core.users.service import add_user

    with session_scope() as session:
        add_user(session, username="desk9", role="office", password="a-long-password-1", actor="test:setup")
    statements = ["UPDATE audit_event SET actor = 'someone else'", "DELETE FROM audit_event"]
    if baton.startswith("postgresql"):
        statements.append("TRUNCATE audit_event")
    for statement in statements:
        with pytest.raises(Exception, match="append-only"), session_scope() as session:
            session.execute(text(statement))
    with session_scope() as session:
        rows = session.execute(text("SELECT actor, action FROM audit_event")).all()
    assert [tuple(r) for r in rows] == [("test:setup", "user.added")]


def _drop_guard(session: object) -> None:
    from sqlmodel import Session

    assert isinstance(session, Session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER USER"))
    else:
        session.execute(text("DROP TRIGGER ledger_entry_no_update"))
        session.execute(text("DROP TRIGGER ledger_entry_no_delete"))


@BOTH
@pytest.mark.parametrize("tamper", ["edit", "delete", "reorder", "truncate", "rehash"])
def test_tampering_is_detected_at_the_first_bad_entry(baton: str, tamper: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id)
    with session_scope() as session:
        entries = ledger.read_chain(session, incident_id)
        assert len(entries) >= 6
        target = entries[3]  # seq 4
        _drop_guard(session)
        if tamper == "edit":
            session.execute(text("UPDATE ledger_entry SET actor = 'someone else' WHERE id = :id"), {"id": target.id})
            expected = 4
        elif tamper == "rehash":
            # An editor who also recomputes the entry's own hash still breaks the link to the next entry.
            target.actor = "someone else"
            new_hash = ledger.entry_hash(target)
            session.execute(text("UPDATE ledger_entry SET actor = 'someone else', hash = :h WHERE id = :id"),
                            {"h": new_hash, "id": target.id})
            expected = 5
        elif tamper == "delete":
            session.execute(text("DELETE FROM ledger_entry WHERE id = :id"), {"id": target.id})
            expected = 4
        elif tamper == "reorder":
            other = entries[4]
            session.execute(text("UPDATE ledger_entry SET seq = -1 WHERE id = :id"), {"id": target.id})
            session.execute(text("UPDATE ledger_entry SET seq = 4 WHERE id = :id"), {"id": other.id})
            session.execute(text("UPDATE ledger_entry SET seq = 5 WHERE id = :id"), {"id": target.id})
            expected = 4
        else:
            last = entries[-1]
            session.execute(text("DELETE FROM ledger_entry WHERE id = :id"), {"id": last.id})
            expected = last.seq
    with session_scope() as session:
        result = ledger.verify_incident(session, incident_id)
    assert not result.valid
    assert result.first_bad_seq == expected, result


def test_assignment_ledger_entry_names_who_handed_to_whom(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id)
    with session_scope() as session:
        entry = session.exec(select(LedgerEntry).where(LedgerEntry.step_key == "flood_risk_assessment",
                                                       LedgerEntry.kind == "task.assigned")).one()
        assert (entry.from_party, entry.to_party) == ("meteorology", "water_affairs")
        # The digest covers what was handed over: the forecast the assessment is shown.
        assert entry.digest == ledger.digest_of({"inputs": {"rainstorm_forecast": FORECAST}})


def test_worker_that_lost_the_lease_cannot_advance(baton: str) -> None:
    from core.incidents import leases
    from core.platform.errors import LeaseLost

    incident_id = drive.open_("flood")
    with session_scope() as session:
        assert leases.claim(session, worker_id="w1", limit=10, lease_seconds=30) == [incident_id]
    with session_scope() as session:
        assert leases.claim(session, worker_id="w2", limit=10, lease_seconds=30) == []
    with pytest.raises(LeaseLost), session_scope() as session:
        advance(session, incident_id=incident_id, worker_id="w2")
    with session_scope() as session:
        assert advance(session, incident_id=incident_id, worker_id="w1").stage == "warning"


@BOTH
def test_a_worker_renews_only_the_leases_of_incidents_it_runs(baton: str) -> None:
    """A lease whose release failed (the database was down as the flow ended) must lapse, so that a worker
    claims the incident again; renewing it for a flow nobody runs would strand the incident. An incident that has
    just closed is still held, its lease not extended. (PostgreSQL and SQLite renew by different statements.)"""
    from core.incidents import leases
    from core.incidents.models import Incident, IncidentStatus
    from core.platform.clock import utcnow

    running, orphaned, closing = drive.open_("flood"), drive.open_("flood"), drive.open_("flood")
    with session_scope() as session:
        assert sorted(leases.claim(session, worker_id="w1", limit=10, lease_seconds=30)) == sorted(
            [running, orphaned, closing])
    with session_scope() as session:
        closed = session.get(Incident, closing)
        assert closed is not None
        closed.status, until = IncidentStatus.closed, closed.lease_expires_at
    with session_scope() as session:
        assert leases.renew(session, worker_id="w1", incident_ids=[closing, running], lease_seconds=300) == {
            closing, running}
        renewed = {i.id: i.lease_expires_at for i in session.exec(select(Incident)).all()}
        assert renewed[closing] == until
        extended, left = renewed[running], renewed[orphaned]
        assert extended is not None and left is not None and extended > left > utcnow()
    later = utcnow() + timedelta(seconds=60)
    with session_scope() as session:
        assert leases.renew(session, worker_id="w1", incident_ids=[running], lease_seconds=30, now=later) == {running}
        assert leases.renew(session, worker_id="w2", incident_ids=[running], lease_seconds=30, now=later) == set()
    # At that moment the orphaned lease has run out and another worker takes the incident; the run one is held.
    with session_scope() as session:
        assert leases.claim(session, worker_id="w2", limit=10, lease_seconds=30, now=later) == [orphaned]
        assert leases.renew(session, worker_id="w1", incident_ids=[running, orphaned], lease_seconds=30,
                            now=later) == {running}
