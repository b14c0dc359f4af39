"""The learning stage through the API (in process): lessons, follow-ups tracked to closure and ledgered, and
plan changes proposed from lessons (diff, checks, acceptance) that new incidents use while old ones keep their
version."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from core.incidents.engine import latest_tasks
from core.learning import service as learning
from core.learning.models import FollowUp, PlanProposal
from core.ledger import chain as ledger
from core.ledger.models import LedgerEntry
from core.plans.models import PlanVersion
from core.plans.store import current_plan_text, plan_for_version
from core.platform.db import session_scope
from core.platform.errors import NotFound
from core.users.models import AuditEvent
from tests import engine_driver as drive
from tests.api_server import ASSESSMENT, FORECAST, Api, error_of, flood, ledger_count, said_in_english

FILLS: dict[str, dict[str, Any]] = {"lift_warning": {"decision": "respond"}, "rainstorm_forecast": FORECAST,
                                     "flood_risk_assessment": ASSESSMENT}
BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)
ASSESSMENT_DEADLINES = "deadline: {IV: PT2H, III: PT1H30M, II: PT1H, I: PT30M}"
ASSESSMENT_TITLE = "en: Assess waterlogging hot spots and pre-position pumps}"


def tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).isoformat()


def ledger_entries(incident_id: str, kind_prefix: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return [e for e in ledger.read_chain(session, incident_id) if e.kind.startswith(kind_prefix)]


def verifies(incident_id: str) -> bool:
    with session_scope() as session:
        return ledger.verify_incident(session, incident_id).valid


def closed_flood() -> str:
    incident_id = drive.open_("flood", level="IV")
    drive.run_to_end(incident_id, FILLS)
    assert drive.incident(incident_id).status == "closed"
    return incident_id


# -- lessons and follow-ups ------------------------------------------------------------------------------------


@BOTH
def test_lesson_becomes_a_follow_up_that_its_department_completes_once_all_ledgered(api: Api) -> None:
    incident_id = closed_flood()
    before = ledger_count(incident_id)
    response = api.call("office", "POST", f"/api/incidents/{incident_id}/lessons",
                        json={"text": "排涝泵站启动慢：预置力量应提前到预警阶段"})
    assert response.status_code == 201, response.text
    lesson = response.json()
    assert lesson["incident_id"] == incident_id and lesson["author"] == "user:office" and lesson["follow_ups"] == []
    # The incident is closed, and still the lesson is a ledger entry on it.
    (recorded,) = ledger_entries(incident_id, "lesson.")
    assert recorded.kind == "lesson.recorded" and recorded.details["lesson_id"] == lesson["id"]

    due = tomorrow()
    response = api.call("office", "POST", f"/api/lessons/{lesson['id']}/follow-ups",
                        json={"department": "water_affairs", "title": "修订泵站预置方案", "due_at": due})
    assert response.status_code == 201, response.text
    follow_up = response.json()
    assert follow_up["department"] == "water_affairs" and follow_up["status"] == "open"
    assert follow_up["overdue"] is False and follow_up["lesson"] == lesson["text"]
    assert datetime.fromisoformat(follow_up["due_at"]) == datetime.fromisoformat(due)
    (assigned,) = ledger_entries(incident_id, "follow_up.")
    assert (assigned.kind, assigned.from_party, assigned.to_party) == ("follow_up.assigned", "emergency_office",
                                                                      "water_affairs")
    assert assigned.idempotency_key == f"{follow_up['id']}:assigned"

    # Department-scoped like tasks: water_affairs sees it, meteorology (also on the incident) does not.
    own = api.call("water_affairs", "GET", "/api/follow-ups").json()
    assert [f["id"] for f in own["items"]] == [follow_up["id"]] and own["total"] == 1
    other = api.call("meteorology", "GET", "/api/follow-ups").json()
    assert other == {"items": [], "total": 0, "limit": 100, "offset": 0}
    assert api.call("meteorology", "GET", "/api/follow-ups?department=water_affairs").json()["total"] == 0
    error_of(api.call("meteorology", "GET", f"/api/follow-ups/{follow_up['id']}"), 404, "not_found")
    for who in ("office", "manager", "admin"):
        assert api.call(who, "GET", "/api/follow-ups?department=water_affairs").json()["total"] == 1
    # Nobody but water_affairs completes it; refusals leave the ledger as it was.
    count = ledger_count(incident_id)
    error_of(api.call("meteorology", "POST", f"/api/follow-ups/{follow_up['id']}/complete", json={}), 404)
    error_of(api.call("office", "POST", f"/api/follow-ups/{follow_up['id']}/complete", json={}), 403, "forbidden")
    error_of(api.call("manager", "POST", f"/api/follow-ups/{follow_up['id']}/complete", json={}), 403, "forbidden")
    error_of(api.call(None, "POST", f"/api/follow-ups/{follow_up['id']}/complete", json={}), 401)
    assert ledger_count(incident_id) == count

    response = api.call("water_affairs", "POST", f"/api/follow-ups/{follow_up['id']}/complete",
                        json={"note": "方案已修订并报备"})
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["status"] == "done" and done["completed_by"] == "user:water_affairs" and done["overdue"] is False
    error_of(api.call("water_affairs", "POST", f"/api/follow-ups/{follow_up['id']}/complete", json={}), 409,
             "follow_up_state_conflict")
    assert api.call("water_affairs", "GET", "/api/follow-ups?status=open").json()["total"] == 0
    assert api.call("water_affairs", "GET", "/api/follow-ups?status=done").json()["total"] == 1

    entries = ledger_entries(incident_id, "follow_up.")
    assert [e.kind for e in entries] == ["follow_up.assigned", "follow_up.completed"]
    assert (entries[1].from_party, entries[1].to_party, entries[1].actor) == ("water_affairs", "emergency_office",
                                                                              "user:water_affairs")
    assert entries[1].details["on_time"] is True
    assert ledger_count(incident_id) == before + 3
    assert verifies(incident_id)
    verify = api.call("manager", "GET", f"/api/incidents/{incident_id}/ledger/verify").json()
    assert verify["valid"] is True and verify["entries"] == before + 3

    # The lesson lists its follow-ups as far as the reader may see them.
    listed = api.call("office", "GET", f"/api/incidents/{incident_id}/lessons").json()["items"]
    assert [x["id"] for x in listed] == [lesson["id"]] and listed[0]["follow_ups"][0]["status"] == "done"
    seen_by_met = api.call("meteorology", "GET", f"/api/incidents/{incident_id}/lessons").json()["items"]
    assert seen_by_met[0]["text"] == lesson["text"] and seen_by_met[0]["follow_ups"] == []
    assert api.call("water_affairs", "GET", f"/api/lessons/{lesson['id']}").json()["follow_ups"][0]["id"] == \
        follow_up["id"]


def test_lessons_and_follow_ups_are_refused_cleanly(api: Api) -> None:
    incident = flood("assessment")  # open, in its warning stage: a lesson may be noted at any time
    lessons_path = f"/api/incidents/{incident.id}/lessons"
    error_of(api.call("water_affairs", "POST", lessons_path, json={"text": "x"}), 403, "forbidden")
    error_of(api.call("manager", "POST", lessons_path, json={"text": "x"}), 403, "forbidden")
    error_of(api.call("office", "POST", lessons_path, json={"text": ""}), 422)
    error_of(api.call("office", "POST", lessons_path, json={"text": "   "}), 422, "lesson_invalid")
    error_of(api.call("office", "POST", "/api/incidents/no-such-incident/lessons", json={"text": "x"}), 404)
    # public_security is not on the incident: its lessons read as missing.
    error_of(api.call("public_security", "GET", lessons_path), 404, "not_found")
    lesson = api.call("office", "POST", lessons_path, json={"text": "预报与研判衔接不畅"}).json()
    error_of(api.call("public_security", "GET", f"/api/lessons/{lesson['id']}"), 404, "not_found")
    path = f"/api/lessons/{lesson['id']}/follow-ups"
    body: dict[str, Any] = {"department": "water_affairs", "title": "建立会商机制", "due_at": tomorrow()}
    error_of(api.call("water_affairs", "POST", path, json=body), 403, "forbidden")
    error = error_of(api.call("office", "POST", path, json={**body, "department": "ministry_of_magic"}), 422,
                     "follow_up_invalid")
    assert error["details"] == [{"field": "department", "message": "unknown department 'ministry_of_magic'"}]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    error = error_of(api.call("office", "POST", path, json={**body, "due_at": past}), 422, "follow_up_invalid")
    assert "due_at: must be in the future" in said_in_english(error)
    error_of(api.call("office", "POST", "/api/lessons/no-such-lesson/follow-ups", json=body), 404, "not_found")
    # A due date without an offset is read in Baton's time zone (Asia/Shanghai).
    local = (datetime.now(UTC) + timedelta(days=3)).replace(tzinfo=None, microsecond=0)
    created = api.call("office", "POST", path, json={**body, "due_at": local.isoformat()}).json()
    assert datetime.fromisoformat(created["due_at"]) == local.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    assert datetime.fromisoformat(created["due_at"]).utcoffset() == timedelta(0)
    # A follow-up for public_security (not on the incident) makes the lesson readable to it, not the incident.
    api.call("office", "POST", path, json={**body, "department": "public_security"})
    assert api.call("public_security", "GET", f"/api/lessons/{lesson['id']}").status_code == 200
    error_of(api.call("public_security", "GET", lessons_path), 404)
    assert api.call("public_security", "GET", "/api/follow-ups").json()["total"] == 1
    with session_scope() as session:
        assert len(session.exec(select(FollowUp)).all()) == 2
    assert verifies(incident.id)


def test_completing_a_follow_up_twice_from_the_core_is_one_ledger_entry(baton: str) -> None:
    incident_id = drive.open_("flood")
    with session_scope() as session:
        lesson = learning.record_lesson(session, incident_id=incident_id, text="lesson", actor="test:office")
        follow_up = learning.assign_follow_up(session, lesson_id=lesson.id, department="meteorology", title="do it",
                                              due_at=datetime.now(UTC) + timedelta(days=2), actor="test:office")
    with session_scope() as session:
        learning.complete_follow_up(session, follow_up_id=follow_up.id, actor="test:met", department="meteorology")
    with pytest.raises(learning.FollowUpStateConflict), session_scope() as session:
        learning.complete_follow_up(session, follow_up_id=follow_up.id, actor="test:met")
    with pytest.raises(NotFound), session_scope() as session:
        learning.complete_follow_up(session, follow_up_id=follow_up.id, actor="x", department="water_affairs")
    assert [e.kind for e in ledger_entries(incident_id, "follow_up.")] == ["follow_up.assigned",
                                                                          "follow_up.completed"]
    assert verifies(incident_id)


# -- plan change proposals -----------------------------------------------------------------------------------------


def revised_flood() -> str:
    """The shipped flood plan with the hot-spot assessment due sooner at level IV and its title revised (the
    file keeps its version line: Baton sets the version)."""
    text = current_plan_text("flood")
    assert ASSESSMENT_DEADLINES in text and ASSESSMENT_TITLE in text
    # The assessment is the first step with these deadlines (a response step has the same ones).
    return (text.replace(ASSESSMENT_DEADLINES, "deadline: {IV: PT1H45M, III: PT1H30M, II: PT1H, I: PT30M}", 1)
            .replace(ASSESSMENT_TITLE, "en: Assess waterlogging hot spots and pre-position pumps (revised)}"))


def assessment_allowed(incident_id: str) -> timedelta:
    task = drive.tasks(incident_id)["flood_risk_assessment"]
    assert task.due_at is not None and task.assigned_at is not None
    return task.due_at - task.assigned_at


@BOTH
def test_a_proposed_plan_change_round_trips_and_old_incidents_keep_their_version(api: Api) -> None:
    old = flood("forecast")  # opened with version 2; the hot-spot assessment is not assigned yet
    with session_scope() as session:
        old_version_id = drive.incident(old.id).plan_version_id
        old_text = session.get(PlanVersion, old_version_id).content  # type: ignore[union-attr]
    lesson = api.call("office", "POST", f"/api/incidents/{old.id}/lessons",
                      json={"text": "研判时限过长，应缩短"}).json()

    response = api.call("office", "POST", "/api/plan-proposals",
                        json={"type": "flood", "text": revised_flood(), "lesson_id": lesson["id"]})
    assert response.status_code == 201, response.text
    proposal = response.json()
    assert (proposal["base_version"], proposal["version"], proposal["status"]) == (2, 3, "proposed")
    diff = proposal["diff"]
    assert diff.startswith("--- flood.yaml (v2)\n+++ flood.yaml (v3)\n")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ["-version: 2", "+version: 3",
                       "-        title: {zh: 积水风险点研判与排涝力量预置, " + ASSESSMENT_TITLE,
                       "+        title: {zh: 积水风险点研判与排涝力量预置, en: Assess waterlogging hot spots and "
                       "pre-position pumps (revised)}",
                       "-        " + ASSESSMENT_DEADLINES,
                       "+        deadline: {IV: PT1H45M, III: PT1H30M, II: PT1H, I: PT30M}"]
    assert "version: 3\n" in proposal["proposed_text"]
    # Reviewers read proposals; departments do not; only planners decide.
    assert api.call("manager", "GET", f"/api/plan-proposals/{proposal['id']}").json()["diff"] == diff
    assert api.call("manager", "GET", "/api/plan-proposals?status=proposed").json()["total"] == 1
    error_of(api.call("water_affairs", "GET", f"/api/plan-proposals/{proposal['id']}"), 403, "forbidden")
    error_of(api.call("manager", "POST", f"/api/plan-proposals/{proposal['id']}/accept"), 403, "forbidden")
    # A second proposal against version 2, made before the first is accepted, will be stale.
    stale = api.call("office", "POST", "/api/plan-proposals",
                     json={"type": "flood", "text": current_plan_text("flood") + "# a comment\n"}).json()

    response = api.call("office", "POST", f"/api/plan-proposals/{proposal['id']}/accept")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted" and response.json()["new_version"] == 3
    error_of(api.call("office", "POST", f"/api/plan-proposals/{proposal['id']}/accept"), 409,
             "proposal_state_conflict")
    error = error_of(api.call("admin", "POST", f"/api/plan-proposals/{stale['id']}/accept"), 409,
                     "proposal_state_conflict")
    assert "version 3 now" in said_in_english(error)
    with session_scope() as session:
        rows = session.exec(select(PlanVersion).where(PlanVersion.type == "flood")
                            .order_by(col(PlanVersion.version))).all()
        assert [(r.version, r.source) for r in rows] == [(2, "file"), (3, "accepted")]
        assert [a.action for a in session.exec(select(AuditEvent)).all() if a.action.startswith("plan.")] == \
            ["plan.proposed", "plan.proposed", "plan.accepted"]
    # The lesson's incident records the proposal and the decision.
    assert [e.kind for e in ledger_entries(old.id, "plan.")] == ["plan.change_proposed", "plan.change_accepted"]
    assert verifies(old.id)

    # The plan as the API shows it is the one new incidents follow: version 3, accepted from the proposal.
    shown = api.call("manager", "GET", "/api/process-defs/flood").json()
    assert (shown["version"], shown["source"]) == (3, "accepted"), (shown["version"], shown["source"])
    assert shown["stages"] and "(revised)" in str(shown)
    # A new incident of the type uses version 3 ...
    new = flood("assessment")
    assert drive.incident(new.id).plan_version == 3
    assert assessment_allowed(new.id) == timedelta(hours=1, minutes=45)
    with session_scope() as session:
        plan = plan_for_version(session, drive.incident(new.id).plan_version_id)
        assert plan.step("flood_risk_assessment").title.en.endswith("(revised)")
    # ... while the old one keeps version 2, its text and its steps, also for the steps assigned from now on.
    drive.complete_step(old.id, "rainstorm_forecast", FORECAST)
    drive.step(old.id)
    assert drive.incident(old.id).plan_version == 2 and drive.incident(old.id).plan_version_id == old_version_id
    assert assessment_allowed(old.id) == timedelta(hours=2)
    with session_scope() as session:
        assert session.get(PlanVersion, old_version_id).content == old_text  # type: ignore[union-attr]
        plan = plan_for_version(session, old_version_id)
        assert plan.version == 2 and not plan.step("flood_risk_assessment").title.en.endswith("(revised)")
        assert {"rainstorm_forecast", "flood_risk_assessment"} <= set(latest_tasks(session, old.id))
    drive.complete_step(old.id, "flood_risk_assessment", ASSESSMENT)

    # The next proposal is against version 3 and becomes version 4; a rejection needs a reason.
    third = api.call("office", "POST", "/api/plan-proposals",
                     json={"type": "flood", "text": revised_flood().replace("PT1H45M", "PT1H40M")}).json()
    assert (third["base_version"], third["version"]) == (3, 4)
    assert "-version: 3" in third["diff"] and "-        deadline: {IV: PT1H45M" in third["diff"]
    error_of(api.call("office", "POST", f"/api/plan-proposals/{third['id']}/reject", json={"reason": ""}), 422)
    rejected = api.call("office", "POST", f"/api/plan-proposals/{third['id']}/reject",
                        json={"reason": "时限已足够"}).json()
    assert rejected["status"] == "rejected"
    assert drive.incident(drive.open_("flood")).plan_version == 3


def test_an_invalid_proposal_is_422_with_every_problem_at_its_line(api: Api) -> None:
    lines = revised_flood().replace("deadline: {IV: PT1H45M,", "deadline: {IV: 2 hours,").splitlines()
    # The assessment's department, misspelt: the first `department:` line after the step's key.
    start = lines.index("      - key: flood_risk_assessment")
    department_line = lines.index("        department: water_affairs", start) + 1
    lines[department_line - 1] = "        department: water_affair"
    text = "\n".join(lines) + "\n"
    deadline_line = next(i for i, row in enumerate(lines, 1) if "IV: 2 hours" in row)
    before = ledger_count()
    error = error_of(api.call("office", "POST", "/api/plan-proposals", json={"type": "flood", "text": text}), 422,
                     "plan_invalid")
    assert error["details"] == [
        f"flood.yaml:{department_line} stages.warning.steps[2].department: unknown department 'water_affair'",
        f"flood.yaml:{deadline_line} stages.warning.steps[2].deadline.IV: '2 hours' is not an ISO 8601 duration "
        "such as PT30M, PT4H or P2D",
    ]
    assert said_in_english(error).startswith("the proposed flood plan has 2 problems: flood.yaml:")
    # Malformed YAML names its line too; a file with no change, or for no plan, is refused.
    broken = current_plan_text("flood").replace("  warning:\n", "  warning: [\n", 1)
    error = error_of(api.call("office", "POST", "/api/plan-proposals", json={"type": "flood", "text": broken}), 422,
                     "plan_invalid")
    assert all(re.match(r"^flood\.yaml:\d+[: ]", item) for item in error["details"]), error
    error_of(api.call("office", "POST", "/api/plan-proposals", json={"type": "flood",
                                                                     "text": current_plan_text("flood")}),
             422, "proposal_invalid")
    error_of(api.call("office", "POST", "/api/plan-proposals", json={"type": "volcano", "text": "key: volcano"}),
             422, "proposal_invalid")
    error_of(api.call("office", "POST", "/api/plan-proposals",
                      json={"type": "flood", "text": revised_flood(), "lesson_id": "no-such-lesson"}), 404)
    error_of(api.call("water_affairs", "POST", "/api/plan-proposals",
                      json={"type": "flood", "text": revised_flood()}), 403, "forbidden")
    # Another plan's code prefix is a problem too.
    taken = revised_flood().replace("code_prefix: FLD", "code_prefix: TYP")
    error = error_of(api.call("office", "POST", "/api/plan-proposals", json={"type": "flood", "text": taken}), 422,
                     "plan_invalid")
    assert error["details"] == [f"flood.yaml:{taken.splitlines().index('code_prefix: TYP') + 1} code_prefix: 'TYP' "
                                "is already the prefix of the typhoon plan"]
    with session_scope() as session:
        assert session.exec(select(PlanProposal)).all() == []
    assert ledger_count() == before


def test_with_version_changes_only_the_version_line() -> None:
    assert learning.with_version("key: a\nversion: 1  # first\nx: 1\n", 7) == "key: a\nversion: 7  # first\nx: 1\n"
    assert learning.with_version("key: a\nversion:   3\n", 4) == "key: a\nversion: 4\n"
    # Only the top-level key: a nested `version:` is left alone, and a missing one is added at the end.
    assert learning.with_version("key: a\nmeta:\n  version: 9\n", 2) == "key: a\nmeta:\n  version: 9\nversion: 2\n"
    assert learning.with_version("key: a", 2) == "key: a\nversion: 2\n"


def test_plans_propose_diff_accept_from_the_command_line(baton: str, tmp_path: Any) -> None:
    from flows.cli import app

    runner = CliRunner()
    incident_id = drive.open_("flood")
    with session_scope() as session:
        lesson = learning.record_lesson(session, incident_id=incident_id, text="缩短研判时限", actor="cli:office")
    proposed = tmp_path / "flood.yaml"
    proposed.write_text(revised_flood(), encoding="utf-8")
    result = runner.invoke(app, ["plans", "propose", "flood", str(proposed), "--lesson", lesson.id])
    assert result.exit_code == 0, result.output
    proposal_id = re.search(r"proposal ([0-9a-f-]{36})", result.output).group(1)  # type: ignore[union-attr]
    assert "+version: 3" in result.output
    result = runner.invoke(app, ["plans", "diff", proposal_id])
    assert result.exit_code == 0 and "flood v2 → v3 (proposed)" in result.output
    assert "+        deadline: {IV: PT1H45M, III: PT1H30M, II: PT1H, I: PT30M}" in result.output
    result = runner.invoke(app, ["plans", "accept", proposal_id])
    assert result.exit_code == 0 and "flood is now at version 3" in result.output, result.output
    result = runner.invoke(app, ["plans", "list", "flood"])
    assert result.exit_code == 0 and "accepted proposal" in result.output and "2 → 3" in result.output
    assert drive.incident(drive.open_("flood")).plan_version == 3
    # An invalid file: exit 1 and each problem with its line.
    proposed.write_text(revised_flood().replace("kind: human", "kind: robot", 1), encoding="utf-8")
    result = runner.invoke(app, ["plans", "propose", "flood", str(proposed)])
    assert result.exit_code == 1 and re.search(r"- flood\.yaml:\d+ stages\.warning\.steps\[0\]\.kind", result.output)
    # Follow-ups from the command line too.
    result = runner.invoke(app, ["learning", "follow-up", lesson.id, "--department", "water_affairs", "--title",
                                 "修订时限", "--due", (datetime.now(UTC) + timedelta(days=5)).date().isoformat()])
    assert result.exit_code == 0, result.output
    follow_up_id = result.output.split()[1]
    result = runner.invoke(app, ["learning", "follow-ups", "--department", "water_affairs"])
    assert follow_up_id in result.output
    assert runner.invoke(app, ["learning", "complete", follow_up_id]).exit_code == 0
    result = runner.invoke(app, ["learning", "complete", follow_up_id])
    assert result.exit_code == 1 and "the follow-up is done and cannot be completed" in result.output
    with session_scope() as session:
        kinds = [e.kind for e in session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id)
                                              .order_by(col(LedgerEntry.seq))).all()]
    assert kinds[-5:] == ["lesson.recorded", "plan.change_proposed", "plan.change_accepted", "follow_up.assigned",
                          "follow_up.completed"]
    assert verifies(incident_id)
