"""Plans as Chinese law and practice have them, on a real database (SQLite and PostgreSQL): a gate's decision
is followed (an office that stands down gets no response task), levels are graded and proposed, level changes
need the position the plan names, and the response ends by a termination decision before any repair."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from core.incidents.authority import PositionRequired
from core.incidents.models import DepartmentTask
from core.ledger import chain as ledger
from core.ledger.models import LedgerEntry
from core.platform.db import session_scope
from core.platform.errors import FormInvalid
from process_defs.schema import IncidentType
from tests import engine_driver as drive
from tests.conftest import copy_plans

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)

FORECAST = {"rainfall_1h": 60, "rainfall_24h": 180, "warning_colour": "orange",
            "valid_until": drive.VALID_UNTIL}
ASSESSMENT = {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True}


def entries(incident_id: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(ledger.read_chain(session, incident_id))


def warning_done(incident_id: str) -> None:
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment", ASSESSMENT)
    drive.step(incident_id)


@BOTH
def test_an_office_that_stands_down_gets_no_response_task_and_the_ledger_says_who_and_why(baton: str) -> None:
    incident_id = drive.open_("flood", level="III")
    warning_done(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "stand_down", "reason": "雨带北移，积水已退"},
                        actor="user:duty_officer")
    result = drive.step(incident_id)
    assert result.stage == "learning"
    with session_scope() as session:
        rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                         col(DepartmentTask.stage).in_(["response", "recovery"]))).all()
    # Every response and recovery step is recorded as skipped; none was ever assigned to anyone.
    assert rows and all(r.status == "skipped" and r.assigned_at is None for r in rows)
    assert not {k for k, t in drive.open_tasks(incident_id).items() if t.stage in ("response", "recovery")}
    kinds = [(e.kind, e.step_key) for e in entries(incident_id)]
    assert not [k for k in kinds if k[0] == "task.assigned" and k[1] in {r.step_key for r in rows}]
    [stood_down] = [e for e in entries(incident_id) if e.kind == "incident.stood_down"]
    assert stood_down.actor == "user:duty_officer" and stood_down.step_key == "lift_warning"
    assert stood_down.details["reason"] == "雨带北移，积水已退"
    assert stood_down.details["decision"] == "stand_down" and stood_down.details["skipped"] == ["response",
                                                                                                 "recovery"]
    entered = [e.details["stage"] for e in entries(incident_id) if e.kind == "stage.entered"]
    assert entered == ["warning", "learning"]
    # The review of the stand-down runs, and the incident closes after it.
    drive.run_to_end(incident_id)
    with session_scope() as session:
        assert ledger.verify_incident(session, incident_id).valid


@BOTH
def test_responding_at_the_gate_still_starts_the_response(baton: str) -> None:
    incident_id = drive.open_("flood", level="IV")
    warning_done(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "respond"})
    assert drive.step(incident_id).stage == "response"
    assert "activate_command" in drive.open_tasks(incident_id)
    assert not [e for e in entries(incident_id) if e.kind in ("incident.stood_down", "stage.skipped")]


def test_felt_only_at_the_earthquake_gate_starts_no_response(baton: str) -> None:
    incident_id = drive.open_("earthquake", level="IV")
    for _ in range(10):
        drive.step(incident_id)
        open_now = drive.open_tasks(incident_id)
        if "start_response" in open_now:
            break
        for key in open_now:
            drive.complete_step(incident_id, key)
    drive.complete_step(incident_id, "start_response", {"decision": "felt_only", "reason": "有感无灾"})
    assert drive.step(incident_id).stage == "learning"
    assert not [t for t in drive.tasks(incident_id).values() if t.stage == "response" and t.assigned_at]


def test_standing_down_needs_a_reason_and_nothing_is_written_without_it(baton: str) -> None:
    incident_id = drive.open_("flood", level="IV")
    warning_done(incident_id)
    before = len(entries(incident_id))
    with pytest.raises(FormInvalid) as refused:
        drive.complete_step(incident_id, "lift_warning", {"decision": "stand_down"})
    assert refused.value.details == [{"field": "reason", "code": "reason_required",
                                      "message": "a decision not to go on needs a reason"}]
    assert len(entries(incident_id)) == before
    assert drive.open_tasks(incident_id)["lift_warning"].status == "assigned"


def test_an_incident_opened_on_an_old_version_keeps_it(baton: str) -> None:
    """A version stored before the law rules (its gate's choices lead nowhere) still runs its incidents: the
    rules added since do not unmake it, and its gate goes on as it always did."""
    from core.incidents.models import Incident
    from core.plans.models import PlanVersion
    from core.plans.store import plan_for_version
    from core.platform.settings import PROCESS_DEFS_DIR

    text = (PROCESS_DEFS_DIR / "flood.yaml").read_text(encoding="utf-8")
    old = text.replace(", outcome: next}", "}").replace(", outcome: learning}", "}").replace(
        "\nversion: 2\n", "\nversion: 1\n")
    assert "outcome:" not in old
    incident_id = drive.open_("flood", level="IV")
    with session_scope() as session:
        row = PlanVersion(type="flood", version=1, digest="old", content=old)
        session.add(row)
        session.flush()
        incident = session.get(Incident, incident_id)
        assert incident is not None and row.id is not None
        incident.plan_version_id, incident.plan_version = row.id, 1
        session.add(incident)
    with session_scope() as session:
        assert plan_for_version(session, row.id).version == 1
    # The same text offered as a plan in use is refused.
    from core.plans.store import registry
    from process_defs.validation import parse_plan

    plan, problems = parse_plan(old, "flood.yaml", registry())
    assert plan is None and any("has no outcome" in str(p) for p in problems)
    warning_done(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "stand_down"})
    assert drive.step(incident_id).stage == "response"  # the old version's behaviour, kept for its incidents


def respond(incident_id: str) -> None:
    warning_done(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "respond"})
    drive.step(incident_id)
    drive.complete_step(incident_id, "activate_command")
    drive.step(incident_id)


@BOTH
def test_reported_casualties_that_meet_a_higher_level_propose_it_and_the_office_accepts(baton: str) -> None:
    from core.incidents import grading

    incident_id = drive.open_("flood", level="IV")
    respond(incident_id)
    drive.complete_step(incident_id, "casualty_report", {"deaths": 12, "missing": 2, "injured": 30,
                                                         "people_moved": 800})
    drive.step(incident_id)
    drive.step(incident_id)  # a second look proposes nothing twice
    with session_scope() as session:
        [proposal] = grading.open_proposals(session, incident_id)
    assert (proposal.level, proposal.from_level, proposal.source) == ("II", "IV", "outputs")
    assert proposal.basis["met"] == [{"measure": "casualty_report.deaths", "op": "ge", "value": 10.0,
                                      "observed": 12}]
    assert "10人以上" in proposal.basis["text"]["zh"]
    assert drive.incident(incident_id).level == "IV"  # proposed, not imposed
    [proposed] = [e for e in entries(incident_id) if e.kind == "level.proposed"]
    assert proposed.details == {"proposal_id": proposal.id, "level": "II", "from": "IV", "source": "outputs"}
    # Raising to II is the flood headquarters' commander's decision (the plan's authority), not a deputy's.
    deputy = drive.person("deputy", "deputy_commander@flood_control_hq")
    with session_scope() as session, pytest.raises(PositionRequired) as refused:
        grading.accept(session, incident_id=incident_id, proposal_id=proposal.id, by=deputy)
    assert refused.value.details["needs"] == ["commander@flood_control_hq"]
    commander = drive.person()
    with session_scope() as session:
        grading.accept(session, incident_id=incident_id, proposal_id=proposal.id, by=commander)
    assert drive.incident(incident_id).level == "II"
    [changed] = [e for e in entries(incident_id) if e.kind == "level.changed"]
    assert changed.actor == "user:commander" and changed.details["proposal_id"] == proposal.id
    with session_scope() as session, pytest.raises(grading.ProposalStateConflict):
        grading.accept(session, incident_id=incident_id, proposal_id=proposal.id, by=commander)


def test_a_declined_level_needs_a_reason_and_is_not_proposed_again(baton: str) -> None:
    from core.incidents import grading
    from core.platform.errors import ReasonRequired

    incident_id = drive.open_("flood", level="IV")
    respond(incident_id)
    drive.complete_step(incident_id, "casualty_report", {"deaths": 4, "missing": 0, "injured": 3,
                                                         "people_moved": 50})
    drive.step(incident_id)
    with session_scope() as session:
        [proposal] = grading.open_proposals(session, incident_id)
        assert proposal.level == "III"
    commander = drive.person()
    with session_scope() as session, pytest.raises(ReasonRequired):
        grading.decline(session, incident_id=incident_id, proposal_id=proposal.id, by=commander, reason=" ")
    with session_scope() as session:
        grading.decline(session, incident_id=incident_id, proposal_id=proposal.id, by=commander,
                        reason="死亡人员系交通事故，非洪涝所致")
    drive.step(incident_id)
    with session_scope() as session:
        assert grading.open_proposals(session, incident_id) == []
        assert [p.status for p in grading.list_proposals(session, incident_id)] == ["declined"]
    [declined] = [e for e in entries(incident_id) if e.kind == "level.proposal_declined"]
    assert declined.actor == "user:commander" and declined.details["reason"] == "死亡人员系交通事故，非洪涝所致"


@BOTH
def test_the_termination_decision_ends_the_response_before_any_repair_step(baton: str) -> None:
    from core.incidents import authority
    from core.incidents.handoffs import complete

    incident_id = drive.open_("flood", level="IV")
    respond(incident_id)
    for key in ("drainage_operations", "traffic_control", "evacuate_residents", "casualty_report"):
        drive.complete_step(incident_id, key)
    drive.step(incident_id)
    tasks = drive.tasks(incident_id)
    assert tasks["end_response"].status == "assigned"
    # Nothing of the recovery (repair, relief) exists while the response runs: it follows the termination.
    assert "infrastructure_repair" not in tasks and "relief_supplies" not in tasks
    met = {"rain_stopped": True, "rivers_below_warning": True, "points_still_waterlogged": 0,
           "secondary_hazards_controlled": True, "summary": "雨停水退，积水点全部排除"}
    before = len(entries(incident_id))
    with pytest.raises(FormInvalid) as refused:
        drive.complete_step(incident_id, "end_response", {**met, "points_still_waterlogged": 3})
    assert refused.value.details == [{"field": "points_still_waterlogged", "code": "criterion_unmet",
                                      "message": "must be le 0 for this decision"}]
    assert len(entries(incident_id)) == before  # nothing half-written
    commander = drive.person()
    with session_scope() as session:
        complete(session, task_id=drive.open_tasks(incident_id)["end_response"].id, actor="user:commander",
                 outputs=met, by=commander)
    result = drive.step(incident_id)
    assert result.stage == "recovery"
    assert drive.tasks(incident_id)["damage_survey"].status == "assigned"  # recovery follows the termination
    drive.complete_step(incident_id, "damage_survey")
    drive.step(incident_id)
    assert drive.tasks(incident_id)["infrastructure_repair"].status == "assigned"
    [ended] = [e for e in entries(incident_id) if e.kind == "task.completed" and e.step_key == "end_response"]
    assert ended.details["authority"] == {"act": "end", "level": "IV", "authorised_by": "commander",
                                          "position": "commander@flood_control_hq", "recorded_by": "user:commander",
                                          "verbal": False}
    with session_scope() as session:
        rows = authority.list_authorisations(session, incident_id)
    assert [(r.act, r.authorised_by, r.awaiting_confirmation) for r in rows] == [
        ("start", None, True), ("end", "commander", False)]
    left = [e.details["stage"] for e in entries(incident_id) if e.kind == "stage.left"]
    assert left == ["warning", "response"]


@pytest.mark.parametrize(("change", "expected"), [
    (("    office: earthquake_bureau\n", ""),
     "departments.yaml:{line} departments[{index}].office: a headquarters needs the department its office works in"),
    (("    held_in: [headquarters]\n", "    held_in: [community]\n"),
     "flood.yaml:{line} authority.IV.start[0]: a headquarters ('flood_control_hq') has no commander; it is held in "
     "community"),
])
def test_the_registry_of_departments_positions_and_headquarters_is_checked(tmp_path: Path, change: tuple[str, str],
                                                                           expected: str) -> None:
    from process_defs.validation import check_paths

    plans = copy_plans(tmp_path, "flood")
    registry = (plans / "departments.yaml").read_text(encoding="utf-8")
    old, new = change
    assert old in registry
    (plans / "departments.yaml").write_text(registry.replace(old, new, 1), encoding="utf-8")
    problems = [str(p) for p in check_paths([plans]).problems]
    prefix, _, rest = expected.partition("{line}")
    assert any(p.startswith(prefix) and rest.split("]", 1)[-1] in p for p in problems), problems


def test_a_step_is_given_to_a_desk_not_to_a_headquarters(tmp_path: Path) -> None:
    from process_defs.validation import check_paths

    plans = copy_plans(tmp_path, "flood")
    text = (plans / "flood.yaml").read_text(encoding="utf-8")
    changed = text.replace("        department: emergency_office\n        kind: human\n        purpose: decision\n",
                           "        department: flood_control_hq\n        kind: human\n        purpose: decision\n", 1)
    assert changed != text
    (plans / "flood.yaml").write_text(changed, encoding="utf-8")
    problems = [str(p) for p in check_paths([plans]).problems]
    assert any("'flood_control_hq' is a headquarters, not a desk: give the step to its office ('emergency_office')"
               in p for p in problems), problems


# -- the eight plans as rewritten ---------------------------------------------------------------------------------
def shipped() -> dict[str, IncidentType]:
    from process_defs.validation import check_paths

    result = check_paths()
    assert result.problems == [], [str(p) for p in result.problems]
    return result.plans


def test_every_shipped_plan_grades_names_its_authority_and_ends_by_a_termination_decision() -> None:
    from process_defs.schema import LEVELS, DepartmentKind, StepPurpose
    from process_defs.validation import check_paths

    plans = shipped()
    registry = check_paths().registry
    assert registry is not None and len(plans) == 8
    for key, plan in plans.items():
        assert plan.version == 2, key
        command = registry.department(plan.command or "")
        assert command is not None and command.kind is DepartmentKind.headquarters, key
        assert plan.authority is not None and set(plan.authority) == set(LEVELS), key
        assert plan.grading is not None and set(plan.grading) == set(LEVELS), key
        gate = plan.stages.response.gate
        assert gate is not None and plan.step(gate).terminates is not None, key
        assert any(f.criterion is not None for f in plan.step(gate).form), key
        for step in plan.stages.learning.steps:
            assert step.purpose in (StepPurpose.review, StepPurpose.investigation), (key, step.key)
        warning_gate = plan.stages.warning.gate
        if warning_gate:
            decision = plan.decision_field("warning")
            assert decision is not None and {c.outcome for c in decision.choices or []} >= {"next"}, key


def test_the_domain_reviews_findings_are_in_the_plans() -> None:
    plans = shipped()
    flood, typhoon, hazmat = plans["flood"], plans["typhoon"], plans["hazmat_leak"]
    # The weather warning is the meteorological bureau's; the office consults before it decides; casualties daily.
    assert flood.step("publish_rainstorm_warning").department == "meteorology"
    assert flood.command == "flood_control_hq" and "会商" in flood.step("lift_warning").title.zh
    assert "日报" in flood.step("casualty_report").title.zh
    # Typhoon: maritime brings vessels into port from level IV; fisheries, geological hazards, scenic areas.
    assert typhoon.step("vessels_to_port").department == "maritime"
    assert typhoon.step("vessels_to_port").active_at("IV")
    assert {typhoon.step(k).department for k in ("fishing_vessels_to_port", "geohazard_patrol",
                                                 "scenic_area_closure")} == {"agriculture_rural",
                                                                             "natural_resources", "culture_tourism"}
    # Hazardous chemicals: the enterprise acts first and reports within the hour; experts assess from it.
    first = hazmat.step("enterprise_initial_response")
    assert first.department == "accident_enterprise"
    assert all((first.deadline_for(lv) or timedelta.max) <= timedelta(hours=1) for lv in ("IV", "III", "II", "I"))
    assert "enterprise_initial_response" in hazmat.step("hazard_assessment").depends_on
    # Bigger fires and accidents: investigated by the government, and longer for a bigger event.
    investigation = plans["highrise_fire"].step("government_investigation")
    assert investigation.min_level == "III" and investigation.department == "emergency_office"
    for key in ("hazmat_leak", "crowd_crush"):
        step = plans[key].step("accident_investigation")
        longest, shortest = step.deadline_for("I"), step.deadline_for("IV")
        assert step.purpose == "investigation" and longest and shortest and longest >= shortest, key
    # Earthquakes are graded by magnitude in a populated area and by the toll.
    quake = plans["earthquake"].grading
    assert quake is not None and {c.measure: c.value for c in quake["I"].any}["quake_rapid_report.magnitude"] == 7.0
    # The epidemic's two-hour chain goes beyond the CDC, to the city government and the province.
    epidemic = plans["epidemic"]
    assert epidemic.step("report_to_health_commission").department == "cdc"
    assert epidemic.step("government_report_to_province").department == "government_duty_office"
    # Black start is for a collapsed grid, not for load lost.
    black_start = plans["power_outage"].step("black_start")
    assert black_start.when is not None and black_start.when.condition is not None
    assert black_start.when.condition.field == "grid_collapsed"


def test_signal_rules_take_their_levels_from_the_plans() -> None:
    from core.incidents.grading import observed_signal

    plans = shipped()
    assert plans["flood"].grade(observed_signal("rainfall", {"value": 75})) is not None
    assert plans["flood"].grade(observed_signal("rainfall", {"value": 75}))[0] == "II"  # type: ignore[index]
    assert plans["earthquake"].grade(observed_signal("earthquake", {"value": 6.1}))[0] == "III"  # type: ignore[index]
    assert plans["epidemic"].grade(observed_signal("syndromic", {"cases": 12}))[0] == "IV"  # type: ignore[index]
