"""The after-action report, checked against an incident built with known times: a flood whose forecast,
assessment (escalated, then late), level raise, hand-back, reassignment, cancellation and skipped steps all
happen at chosen moments. Also: a drill on a compressed clock reports plan time; the HTML page and the PDF;
the API and who may read it."""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import app
from core.incidents import alerts, handoffs
from core.incidents.engine import advance, finish_action
from core.incidents.models import DepartmentTask
from core.incidents.service import change_level, open_incident
from core.learning.after_action.compute import build_report
from core.learning.after_action.render import render_report_html
from core.learning.after_action.text import format_duration
from core.platform.db import session_scope
from core.reports.pdf import PdfUnavailable, html_to_pdf
from tests import engine_driver as drive
from tests.api_server import FORECAST as _FORECAST
from tests.api_server import issued_token, make_user

T0 = datetime(2026, 7, 20, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
needs_chromium = pytest.mark.chromium  # skipped, with the command to install it, where it is missing
# The forecast as meteorology gives it on the test's clock: valid for the 12 hours after T0 (the plan refuses a
# time in the past or beyond its three-day horizon, as of the completion's own moment).
FORECAST = {**_FORECAST, "valid_until": (T0 + timedelta(hours=12)).isoformat()}
NO_HOT_SPOTS = {"hot_spots": 0, "pumps_deployed": 12, "river_level_high": True}
SVG = "{http://www.w3.org/2000/svg}"


def at(minutes: float, start: datetime = T0) -> datetime:
    return start + timedelta(minutes=minutes)


# -- a clock the test controls ------------------------------------------------------------------------------
@contextmanager
def clock(moment: datetime) -> Iterator[None]:
    """Every service that reads the time reads `moment` (the engine takes it as `now`)."""
    with mock.patch("core.incidents.service.utcnow", return_value=moment), \
            mock.patch("core.incidents.handoffs.utcnow", return_value=moment), \
            mock.patch("core.incidents.engine.utcnow", return_value=moment), \
            mock.patch("core.incidents.alerts.utcnow", return_value=moment):
        yield


def open_at(moment: datetime, level: str = "IV", type_key: str = "flood", **kwargs: Any) -> str:
    with clock(moment), session_scope() as session:
        return open_incident(session, type_key=type_key, level=level, title="暴雨内涝 复盘测试", actor="test:office",
                             **kwargs).incident.id


def advance_at(incident_id: str, moment: datetime) -> None:
    """Reconcile at `moment`, finishing automated steps at that moment too, until nothing is left to run."""
    with clock(moment):
        while True:
            with session_scope() as session:
                result = advance(session, incident_id=incident_id, now=moment)
                for task_id in result.actions:
                    finish_action(session, task_id=task_id, outputs={"simulated": True})
            if not result.actions:
                return


def task_of(incident_id: str, step: str) -> DepartmentTask:
    with session_scope() as session:
        rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                         DepartmentTask.step_key == step)).all()
        return max(rows, key=lambda t: t.attempt)


def ack(incident_id: str, step: str, moment: datetime) -> None:
    with clock(moment), session_scope() as session:
        handoffs.acknowledge(session, task_id=task_of(incident_id, step).id, actor="test:dept")


def complete(incident_id: str, step: str, moment: datetime, outputs: dict[str, Any]) -> None:
    with clock(moment), session_scope() as session:
        handoffs.complete(session, task_id=task_of(incident_id, step).id, actor="test:dept", outputs=outputs)


def hand_back(incident_id: str, step: str, moment: datetime, reason: str) -> None:
    with clock(moment), session_scope() as session:
        handoffs.hand_back(session, task_id=task_of(incident_id, step).id, actor="user:housing1", reason=reason)


def raise_level(incident_id: str, moment: datetime, level: str, reason: str) -> None:
    commander = drive.person()
    with clock(moment), session_scope() as session:
        change_level(session, incident_id=incident_id, level=level, by=commander, reason=reason)


def constructed_flood() -> str:
    """A level IV flood opened at T0 (minutes after T0 in brackets):
    meteorology acknowledges the forecast (10) and completes it (50, deadline 60: met); water_affairs gets the
    assessment (50, deadline 120), the office raises the level to III (60) which tightens it to 90 (due 140);
    water_affairs acknowledges (80), the assessment is escalated (140) and completed (290: 150 late). Housing
    gets the basement check (290), hands it back (300), the office takes it over (300) and it is cancelled
    when the office lifts the warning (320, assigned 290, deadline 180). Response: the office activates command
    (320 → 350, deadline 45); evacuation is skipped (no hot spots); public_security closes roads (350 → 380,
    deadline 60); drainage, the casualty report, water rescue, the transport change and, from level III, public
    opinion and supplies stay open. The report is read at 420."""
    incident_id = open_at(T0)
    advance_at(incident_id, at(0))
    ack(incident_id, "rainstorm_forecast", at(10))
    complete(incident_id, "rainstorm_forecast", at(50), FORECAST)
    advance_at(incident_id, at(50))
    raise_level(incident_id, at(60), "III", "积水点增多，转移群众")
    advance_at(incident_id, at(60))
    ack(incident_id, "flood_risk_assessment", at(80))
    advance_at(incident_id, at(140))
    complete(incident_id, "flood_risk_assessment", at(290), NO_HOT_SPOTS)
    advance_at(incident_id, at(290))
    hand_back(incident_id, "underground_space_check", at(300), "地下空间检查不属本局职责")
    advance_at(incident_id, at(300))
    with clock(at(300)), session_scope() as session:  # the office chooses, on its alert
        alerts.take_over(session, task_id=task_of(incident_id, "underground_space_check").id, actor="user:office",
                         reason="住建局无法办理，应急办接办")
    advance_at(incident_id, at(300))
    complete(incident_id, "lift_warning", at(320), {"decision": "respond"})
    advance_at(incident_id, at(320))
    complete(incident_id, "activate_command", at(350), {"command_post": "城东区防汛指挥部", "commander": "张三"})
    advance_at(incident_id, at(350))
    complete(incident_id, "traffic_control", at(380), {"roads_closed": 3, "underpasses_closed": 2})
    advance_at(incident_id, at(380))
    return incident_id


@pytest.fixture
def flood_incident(baton: str) -> str:
    return constructed_flood()


def report_of(incident_id: str, minutes: float = 420) -> Any:
    with session_scope() as session:
        return build_report(session, incident_id=incident_id, now=at(minutes))


# -- the figures ---------------------------------------------------------------------------------------------
def test_stage_durations_total_and_time_basis(flood_incident: str) -> None:
    report = report_of(flood_incident)
    assert report.time_basis == "wall" and report.clock_speed == 1.0 and not report.drill
    assert report.opened_at == T0 and report.closed_at is None and report.total_s == 420 * 60
    stages = {s.stage: s for s in report.stages}
    assert list(stages) == ["warning", "response"]
    assert (stages["warning"].entered_at, stages["warning"].left_at) == (T0, at(320))
    assert stages["warning"].duration_s == 320 * 60 and not stages["warning"].open
    assert stages["response"].duration_s == 100 * 60 and stages["response"].open
    assert report.level == "III" and report.stage == "response"


def test_each_handoffs_waits_against_its_deadline(flood_incident: str) -> None:
    report = report_of(flood_incident)
    rows = {(h.step, h.attempt): h for h in report.handoffs}
    assert list(rows) == [("rainstorm_forecast", 1), ("flood_risk_assessment", 1), ("underground_space_check", 1),
                          ("underground_space_check", 2), ("lift_warning", 1), ("activate_command", 1),
                          ("drainage_operations", 1), ("traffic_control", 1), ("public_transport_adjust", 1),
                          ("casualty_report", 1), ("water_rescue", 1), ("public_opinion", 1),
                          ("material_allocation", 1)]
    forecast = rows["rainstorm_forecast", 1]
    assert (forecast.ack_wait_s, forecast.completion_wait_s, forecast.deadline_s) == (600, 3000, 3600)
    assert forecast.outcome == "met" and forecast.overdue_by_s is None and forecast.department == "meteorology"
    # The raise to III tightened the assessment's deadline from 2 h to 1 h 30 min after its assignment.
    assessment = rows["flood_risk_assessment", 1]
    assert (assessment.ack_wait_s, assessment.completion_wait_s, assessment.deadline_s) == (1800, 14400, 5400)
    assert assessment.outcome == "missed" and assessment.overdue_by_s == 9000
    assert assessment.escalated_at == at(140) and assessment.escalated_to == "emergency_office"
    # Handed back and cancelled before their due times: no deadline outcome.
    check = rows["underground_space_check", 1]
    assert check.outcome == "none" and check.deadline_s == 10800 and check.department == "housing"
    assert rows["underground_space_check", 2].department == "emergency_office"
    assert rows["underground_space_check", 2].outcome == "none"
    assert (rows["lift_warning", 1].completion_wait_s, rows["lift_warning", 1].deadline_s) == (1800, 10800)
    assert rows["lift_warning", 1].ack_wait_s is None and rows["lift_warning", 1].outcome == "met"
    assert (rows["activate_command", 1].completion_wait_s, rows["activate_command", 1].deadline_s) == (1800, 2700)
    assert (rows["traffic_control", 1].completion_wait_s, rows["traffic_control", 1].deadline_s) == (1800, 3600)
    drainage = rows["drainage_operations", 1]
    assert drainage.outcome == "open" and drainage.open_wait_s == 70 * 60 and drainage.completion_wait_s is None
    assert report.counts() == {"handoffs": 13, "met": 4, "missed": 1, "open": 6, "unjudged": 2, "escalations": 1,
                               "level_changes": 1, "deviations": 5}
    # Read later, the open ones past their due times have missed them too.
    later = report_of(flood_incident, minutes=600)
    assert [(h.step, h.overdue_by_s) for h in later.held_up] == [
        ("casualty_report", 9600), ("flood_risk_assessment", 9000), ("water_rescue", 7800),
        ("public_transport_adjust", 6000), ("drainage_operations", 4200), ("public_opinion", 600)]


def test_the_critical_path_names_the_slowest_department(flood_incident: str) -> None:
    # From the step done last (traffic control, 380) back: activate_command enabled it, lifting the warning
    # ended the warning stage and so enabled the command, the assessment enabled the lift, the forecast it.
    path = report_of(flood_incident).critical_path
    assert [s.step for s in path.steps] == ["rainstorm_forecast", "flood_risk_assessment", "lift_warning",
                                            "activate_command", "traffic_control"]
    assert [s.duration_s for s in path.steps] == [3000, 14400, 1800, 1800, 1800]
    assert path.total_s == 22800 and path.span_s == 22800
    assert path.slowest_department == "water_affairs" and path.slowest_department_s == 14400
    assert path.by_department == [{"department": "water_affairs", "seconds": 14400},
                                  {"department": "emergency_office", "seconds": 3600},
                                  {"department": "meteorology", "seconds": 3000},
                                  {"department": "public_security", "seconds": 1800}]


def test_the_report_and_a_drills_score_time_the_same_critical_path(flood_incident: str) -> None:
    from core.learning.drills import readiness_report

    with session_scope() as session:
        scored = readiness_report(session, flood_incident, now=at(420))
    assert [s["step"] for s in scored["critical_path"]["steps"]] == [
        s.step for s in report_of(flood_incident).critical_path.steps]


def test_escalations_level_changes_and_deviations(flood_incident: str) -> None:
    report = report_of(flood_incident)
    [escalation] = report.escalations
    assert (escalation.step, escalation.department, escalation.escalated_to) == (
        "flood_risk_assessment", "water_affairs", "emergency_office")
    assert escalation.due_at == at(140) and escalation.late_by_s == 9000
    [change] = report.level_changes
    assert (change.from_level, change.to_level, change.raised, change.at) == ("IV", "III", True, at(60))
    assert change.reason == "积水点增多，转移群众" and change.actor == "user:commander"
    deviations = [(d.kind, d.step, d.attempt, d.department, d.reason_code) for d in report.deviations]
    assert deviations == [("handed_back", "underground_space_check", 1, "housing", None),
                          ("reassigned", "underground_space_check", 2, "emergency_office", None),
                          ("cancelled", "underground_space_check", 2, "emergency_office", "stage_ended"),
                          ("skipped", "school_suspension", 1, "education", "level"),
                          ("skipped", "evacuate_residents", 1, "subdistrict", "condition")]
    assert report.deviations[0].reason == "地下空间检查不属本局职责" and report.deviations[0].at == at(300)
    # Printed, people are named as people know them (as on the pages), never by their `user:` id.
    html = render_report_html(report, "zh", lambda: {"housing1": ("王工", "housing")})
    assert "王工 · 市住房和城乡建设局: 地下空间检查不属本局职责" in html and "user:housing1" not in html
    assert report.deviations[1].from_department == "housing"
    departments = {d.department: d for d in report.departments}
    water = departments["water_affairs"]
    assert (water.handoffs, water.met, water.missed, water.open, water.escalations) == (2, 0, 1, 1, 1)
    assert (water.ack_median_s, water.completion_median_s, water.on_critical_path_s) == (1800, 14400, 14400)
    assert departments["housing"].handed_back == 1
    assert report.departments[0].department == "water_affairs"
    assert report.ledger.valid and report.ledger.entries == report.ledger.head_seq > 20


def test_handoff_counts_add_up_and_returned_and_cancelled_tasks_say_why(flood_incident: str) -> None:
    report = report_of(flood_incident)
    tally = report.tally()
    assert tally == {"assigned": 13, "completed": 5, "handed_back": 1, "cancelled": 1, "open": 6}
    assert tally["assigned"] == tally["completed"] + tally["handed_back"] + tally["cancelled"] + tally["open"]
    assert report.to_json()["tally"] == tally
    html = render_report_html(report, "zh")
    assert "向各部门分派任务 13 项 = 已完成 5 + 退回 1 + 已取消 1 + 仍在办理 6。" in html
    returned = re.findall(r'<li data-kind="(handed_back|cancelled)" data-step="([a-z_]+)">(.*?)</li>', html)
    assert [(kind, step) for kind, step, _ in returned] == [("handed_back", "underground_space_check"),
                                                           ("cancelled", "underground_space_check")]
    assert "市住房和城乡建设局" in returned[0][2] and "地下空间检查不属本局职责" in returned[0][2]
    assert "取消：" in returned[1][2] and "所在阶段已先行结束" in returned[1][2]
    # The summary's deadline outcomes add up to the handoffs too: those handed back or cancelled before their
    # deadline are counted, not dropped.
    counts = report.counts()
    assert counts["met"] + counts["missed"] + counts["open"] + counts["unjudged"] == counts["handoffs"]
    assert counts["unjudged"] >= 1
    assert (f"共 {counts['handoffs']} 次交接：{counts['met']} 次按时完成，{counts['missed']} 次超时，"
            f"{counts['open']} 次尚未到期，{counts['unjudged']} 次在期限前退回或取消。") in html


def test_the_damage_summary_adds_up_each_departments_latest_report(flood_incident: str) -> None:
    assert report_of(flood_incident).damage == []  # nothing reported yet: no figure made up
    complete(flood_incident, "casualty_report", at(400), {"deaths": 2, "missing": 1, "injured": 7,
                                                         "people_moved": 350})
    report = report_of(flood_incident)
    totals = {f.key: f.total for f in report.damage}
    assert totals == {"dead": 2, "missing": 1, "injured": 7, "moved": 350}
    [dead] = [f for f in report.damage if f.key == "dead"]
    [source] = dead.sources
    assert (source.department, source.step, source.at) == ("subdistrict", "casualty_report", at(400))
    html = render_report_html(report, "zh")
    section = html[html.index('id="damage"'):html.index('id="timeline"')]
    assert 'data-figure="dead" data-total="2"' in section and "2 人" in section
    assert "街道办事处" in section and "统计报送灾情和人员伤亡（日报）" in section
    assert 'data-figure="economic_loss">' in section and "未报送" in section  # not made up: said to be missing
    english = render_report_html(report, "en")
    assert "350 people" in english and "Direct economic loss" in english


def test_key_figures_count_each_departments_latest_report_once() -> None:
    from core.reporting.figures import Reported, summarise

    reported = [Reported("subdistrict", at(10), "people_evacuated", 100, "evacuate_residents"),
                Reported("subdistrict", at(30), "people_moved", 250, "casualty_report"),  # later: replaces 100
                Reported("public_security", at(20), "people_evacuated", 40, "cordon_evacuation"),
                Reported("subdistrict", at(30), "deaths", 1, "casualty_report"),
                Reported("fire_rescue", at(5), "deaths", 2, "search_rescue"),
                Reported("fire_rescue", at(5), "hot_spots", 9, "x")]  # not a key figure
    totals = {f.key: (f.total, [s.department for s in f.sources]) for f in summarise(reported)}
    assert totals == {"dead": (3, ["fire_rescue", "subdistrict"]),
                      "moved": (290, ["public_security", "subdistrict"])}


def test_the_report_reads_by_code_too_and_its_json_has_the_figures(flood_incident: str) -> None:
    code = report_of(flood_incident).code
    with session_scope() as session:
        report = build_report(session, incident_id=code, now=at(420))
    data = report.to_json()
    assert data["incident_id"] == flood_incident and "timeline" not in data
    assert data["critical_path"]["slowest_department"] == "water_affairs"
    assert data["units"] == {"durations": "seconds", "time_basis": "wall", "clock_speed": 1.0}


def test_a_drill_on_a_compressed_clock_reports_plan_time(baton: str) -> None:
    """At ×60 a minute of the plan passes in a second: the forecast's hour is a minute of wall-clock time."""
    incident_id = open_at(T0, drill=True, clock_speed=60)
    advance_at(incident_id, T0)
    ack(incident_id, "rainstorm_forecast", T0 + timedelta(seconds=6))
    complete(incident_id, "rainstorm_forecast", T0 + timedelta(seconds=30), FORECAST)
    advance_at(incident_id, T0 + timedelta(seconds=30))
    with session_scope() as session:
        report = build_report(session, incident_id=incident_id, now=T0 + timedelta(seconds=90))
    assert report.drill and report.time_basis == "plan" and report.clock_speed == 60
    forecast = report.handoffs[0]
    assert (forecast.ack_wait_s, forecast.completion_wait_s, forecast.deadline_s) == (360, 1800, 3600)
    assert forecast.outcome == "met"
    assert report.total_s == 5400 and report.stages[0].duration_s == 5400
    assert report.critical_path.total_s == 1800
    # Water affairs has had its assessment for a minute of wall-clock time: an hour of the plan.
    assessment = next(h for h in report.handoffs if h.step == "flood_risk_assessment")
    assert assessment.open_wait_s == 3600 and assessment.deadline_s == 7200
    # The timeline picture is drawn on the plan clock: the forecast's bar ends 30 plan minutes in.
    steps = {s["step"]: s for s in report.timeline["steps"]}
    assert steps["rainstorm_forecast"]["completed_at"] == at(30)
    html = render_report_html(report, "zh")
    assert "本次演练按压缩时钟运行（×60）" in html and "预案时间" in html
    # Moments are shown on the plan clock too (90 s at ×60: an hour and a half), except when it was generated.
    assert "数据截至 2026-07-20 11:30:00" in html and "本报告由系统于 2026-07-20 10:01:30 生成" in html
    assert "Every duration in this report is plan time" in render_report_html(report, "en")


def test_a_closed_incident_has_every_stage_closed_and_nothing_open(baton: str) -> None:
    incident_id = drive.open_("flood", level="IV")
    drive.run_to_end(incident_id, fills={"flood_risk_assessment": NO_HOT_SPOTS,
                                         "lift_warning": {"decision": "respond"}})
    with session_scope() as session:
        report = build_report(session, incident_id=incident_id)
    assert report.status == "closed" and report.closed_at is not None
    assert [s.stage for s in report.stages] == ["warning", "response", "recovery", "learning"]
    assert not any(s.open for s in report.stages) and report.stages[-1].left_at == report.closed_at
    assert report.total_s == pytest.approx((report.closed_at - report.opened_at).total_seconds(), abs=1e-3)
    assert report.counts()["open"] == 0 and report.counts()["missed"] == 0
    assert report.critical_path.steps and report.critical_path.slowest_department is not None
    assert report.ledger.valid
    assert 'data-stage="learning"' in render_report_html(report, "en")


def test_durations_read_well_in_both_languages() -> None:
    assert [format_duration(s) for s in (None, 45, 725, 3900, 14400, 183600)] == [
        "—", "45秒", "12分05秒", "1小时05分", "4小时", "2天3小时"]
    assert [format_duration(s, "en") for s in (45, 725, 3900, 183600)] == ["45 s", "12 min 05 s", "1 h 05 min",
                                                                           "2 d 3 h"]


# -- HTML, charts and PDF ---------------------------------------------------------------------------------------
def test_the_printable_html_holds_the_charts_and_fetches_nothing(flood_incident: str) -> None:
    report = report_of(flood_incident)
    html = render_report_html(report, "zh")
    assert "default-src 'none'" in html and "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    svgs = [ElementTree.fromstring(s) for s in re.findall(r"<svg .*?</svg>", html, re.S)]
    assert [s.get("class") for s in svgs] == ["timeline", "chart stage-chart", "chart waits-chart"]
    stage_bars = {g.get("data-stage"): float(g.get("data-seconds") or 0) for g in svgs[1].iter(f"{SVG}g")}
    assert stage_bars == {"warning": 19200.0, "response": 6000.0}
    waits = {(g.get("data-step"), g.get("data-attempt")): g.get("data-outcome") for g in svgs[2].iter(f"{SVG}g")}
    assert waits[("flood_risk_assessment", "1")] == "missed" and waits[("rainstorm_forecast", "1")] == "met"
    assert "关键路径上用时最长的部门：市水务局（水旱灾害防御）" in html
    assert "积水点增多，转移群众" in html and "地下空间检查不属本局职责" in html
    assert "交接台账校验通过" in html or "校验链完整" in html
    english = render_report_html(report, "en")
    assert "Slowest department on the critical path: Water Affairs Bureau" in english


def pdf_text(data: bytes) -> str:
    """The text of a PDF as Chromium (Skia) writes it: each page's content stream, its strings decoded through
    the fonts' ToUnicode maps. Enough to find words in Baton's own reports; not a general PDF reader."""
    objects = {int(m.group(1)): m.group(2) for m in re.finditer(rb"(\d+) 0 obj\s*(.*?)endobj", data, re.S)}

    def stream(number: int) -> bytes:
        body = objects[number]
        found = re.search(rb"/Length (\d+)\b(.*?)stream\r?\n", body, re.S)
        assert found is not None
        raw = body[found.end():found.end() + int(found.group(1))]
        return zlib.decompress(raw) if b"/FlateDecode" in body[:found.end()] else raw

    def cmap(number: int) -> dict[str, str]:
        text = stream(number).decode("latin-1")
        table: dict[str, str] = {}
        for block in re.findall(r"beginbfchar(.*?)endbfchar", text, re.S):
            for src, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                table[src.upper()] = bytes.fromhex(dst).decode("utf-16-be")
        for block in re.findall(r"beginbfrange(.*?)endbfrange", text, re.S):
            for low, high, dst in re.findall(r"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>", block):
                for offset, code in enumerate(range(int(low, 16), int(high, 16) + 1)):
                    table[f"{code:0{len(low)}X}"] = chr(int(dst, 16) + offset)
        return table

    out: list[str] = []
    for body in objects.values():
        if not re.search(rb"/Type\s*/Page\b", body):
            continue
        fonts: dict[str, dict[str, str]] = {}
        resources = re.search(rb"/Font\s*<<(.*?)>>", body, re.S)
        for name, ref in re.findall(rb"/(\w+)\s+(\d+) 0 R", resources.group(1) if resources else b""):
            to_unicode = re.search(rb"/ToUnicode\s+(\d+) 0 R", objects[int(ref)])
            fonts[name.decode()] = cmap(int(to_unicode.group(1))) if to_unicode else {}
        contents = re.search(rb"/Contents\s+(\d+) 0 R", body)
        assert contents is not None
        table: dict[str, str] = {}
        for token in re.finditer(r"/(\w+)\s+[\d.]+\s+Tf|<([0-9A-Fa-f]*)>|(ET)",
                                 stream(int(contents.group(1))).decode("latin-1")):
            if token.group(1):
                table = fonts.get(token.group(1), {})
            elif token.group(2) is not None:
                codes = token.group(2).upper()
                width = len(next(iter(table))) if table else 4
                out.append("".join(table.get(codes[i:i + width], "") for i in range(0, len(codes), width)))
            else:
                out.append("\n")
    return "".join(out)


@needs_chromium
def test_the_pdf_is_printed_with_the_incident_code_in_its_text(flood_incident: str) -> None:
    report = report_of(flood_incident)
    pdf = html_to_pdf(render_report_html(report, "zh"))
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    text = pdf_text(pdf)
    assert report.code in text
    assert "事后复盘报告" in text and "关键路径" in text  # the Chinese is real text, in a CJK font


@needs_chromium
def test_the_pdf_is_a_document_with_a_running_header_and_page_numbers(flood_incident: str) -> None:
    from pypdf import PdfReader

    report = report_of(flood_incident)
    pages = PdfReader(io.BytesIO(html_to_pdf(render_report_html(report, "zh")))).pages
    texts = [page.extract_text() or "" for page in pages]
    total = len(texts)
    assert total >= 2, texts
    # The first page is the report's opening, not a blank page before it.
    assert "事后复盘报告" in texts[0] and "暴雨内涝 复盘测试" in texts[0] and "灾情汇总" in texts[0]
    for number, text in enumerate(texts, start=1):
        flat = re.sub(r"\s+", "", text)
        assert f"第{number}页/共{total}页" in flat, (number, text[-300:])
        assert report.code in text and "复盘测试" in text, (number, text[:300])  # the running header
    english = PdfReader(io.BytesIO(html_to_pdf(render_report_html(report, "en")))).pages
    assert f"Page 1 of {len(english)}" in (english[0].extract_text() or "")


@needs_chromium
def test_no_page_of_the_pdf_ends_with_a_heading_or_a_chart_legend(flood_incident: str) -> None:
    """Wherever the timeline falls (a spacer before it moves it down the page in steps shorter than its chart), its
    heading and legend go with the chart to the next page rather than stay behind at the foot of one."""
    from pypdf import PdfReader

    report = report_of(flood_incident)
    html = render_report_html(report, "zh")
    headings = {re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<h2[^>]*>(.*?)</h2>", html)}
    assert "时间线" in headings
    anchor = '<section class="card" id="timeline">'
    assert anchor in html
    running = re.compile(r"第\s*\d+\s*页|" + re.escape(report.code))  # the running header and the page number
    endings, parted = [], []
    for spacer in range(0, 250, 25):  # millimetres; the timeline's chart is taller than a step
        moved = html.replace(anchor, f'<div style="height:{spacer}mm"></div>{anchor}')
        pages = [page.extract_text() or "" for page in PdfReader(io.BytesIO(html_to_pdf(moved))).pages]
        for text in pages[:-1]:
            lines = [line.strip() for line in text.splitlines()]
            body = [line for line in lines if line and not running.search(line)]
            endings.append((spacer, body[-1] if body else ""))
        # The handoffs chart's words (what a bar means) and the chart's scale ("200%+") share a page, wherever the
        # spacer pushed the section.
        words = [n for n, text in enumerate(pages) if "每条横条" in text.replace("\n", "")]
        scale = [n for n, text in enumerate(pages) if "200%+" in text]
        assert len(words) == 1 and len(scale) == 1, (spacer, words, scale)
        if words != scale:
            parted.append((spacer, words, scale))
    stranded = [(spacer, last) for spacer, last in endings if last in headings or "按时完成" in last]
    assert stranded == [], stranded
    assert parted == [], parted


def test_the_header_of_the_print_stylesheet_cannot_be_broken_out_of(flood_incident: str) -> None:
    from core.learning.after_action.text import ReportText

    quoted = ReportText().css_string('FLD-1 · 暴雨"; } body { display: none } </style><script>')
    assert quoted.startswith('"FLD-1 · 暴雨') and quoted.count('"') == 2
    assert "<" not in quoted and "}" not in quoted and ";" not in quoted


def test_a_missing_chromium_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PdfUnavailable, match="Chromium not found"):
        html_to_pdf("<p>x</p>", chromium=str(tmp_path / "no-chromium"))
    monkeypatch.setenv("BATON_CHROMIUM", str(tmp_path / "none"))
    with pytest.raises(PdfUnavailable):
        html_to_pdf("<p>x</p>")
    assert PdfUnavailable.http_status == 503


def test_a_hung_chromium_is_killed_at_the_timeout(tmp_path: Path) -> None:
    from core.reports.pdf import PdfFailed

    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    started = datetime.now(UTC)
    with pytest.raises(PdfFailed, match="within 1 s"):
        html_to_pdf("<p>x</p>", chromium=str(fake), timeout=1)
    assert datetime.now(UTC) - started < timedelta(seconds=15)


# -- API and pages ---------------------------------------------------------------------------------------------
@pytest.fixture
def tokens(baton: str) -> dict[str, str]:
    cast = {"office1": ("office", None), "boss1": ("manager", None), "root1": ("admin", None),
            "water1": ("department", "water_affairs")}
    for name, (role, department) in cast.items():
        make_user(name, role, department)
    return {name: issued_token(name) for name in cast}


def call(path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with TestClient(app) as client:
        return client.get(path, headers=headers)


def test_report_api_for_reviewers_only(flood_incident: str, tokens: dict[str, str]) -> None:
    for name in ("office1", "boss1", "root1"):
        response = call(f"/api/incidents/{flood_incident}/report", tokens[name])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["code"].startswith("FLD-") and body["critical_path"]["slowest_department"] == "water_affairs"
        assert body["counts"]["missed"] >= 1 and body["ledger"]["valid"] is True
        assert body["stages"][0] == {"stage": "warning", "entered_at": "2026-07-20T02:00:00+00:00",
                                     "left_at": "2026-07-20T07:20:00+00:00", "duration_s": 19200.0, "open": False}
    # A department's user (even one on the incident) is refused, as for the timeline; nobody logged in is 401.
    for path in (f"/api/incidents/{flood_incident}/report", f"/api/incidents/{flood_incident}/report.pdf"):
        refused = call(path, tokens["water1"])
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert call(path, None).status_code == 401
    missing = call("/api/incidents/no-such-incident/report", tokens["boss1"])
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@needs_chromium
def test_report_pdf_over_the_api(flood_incident: str, tokens: dict[str, str]) -> None:
    response = call(f"/api/incidents/{flood_incident}/report.pdf?lang=en", tokens["boss1"])
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    code = report_of(flood_incident).code
    assert f'filename="{code}-after-action-en.pdf"' in response.headers["content-disposition"]
    assert "After-action report" in pdf_text(response.content)
    assert call("/api/incidents/no-such-incident/report.pdf", tokens["boss1"]).status_code == 404


def test_report_pdf_without_chromium_is_503(flood_incident: str, tokens: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BATON_CHROMIUM", str(tmp_path / "none"))
    response = call(f"/api/incidents/{flood_incident}/report.pdf", tokens["office1"])
    assert response.status_code == 503 and response.json()["error"]["code"] == "pdf_unavailable"


def page_client(username: str) -> TestClient:
    from core.users.models import User
    from core.users.service import issue_token

    with session_scope() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        token = issue_token(session, user=user, kind="session").token
    return TestClient(app, cookies={"baton_session": token})


def test_report_page_for_reviewers(flood_incident: str, tokens: dict[str, str]) -> None:
    with page_client("boss1") as manager:
        response = manager.get(f"/review/incidents/{flood_incident}/report")
        assert response.status_code == 200
        html = response.text
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert " style=" not in html and "<style" not in html
        assert "事后复盘报告" in html and "关键路径" in html and "市水务局" in html
        assert f'href="/api/incidents/{flood_incident}/report.pdf?lang=zh"' in html
        assert html.count("<svg ") == 3
        review = manager.get(f"/review/incidents/{flood_incident}").text
        assert f'href="/review/incidents/{flood_incident}/report"' in review
        assert manager.get("/review/incidents/nothing-here/report").status_code == 404
    with page_client("water1") as department:
        assert department.get(f"/review/incidents/{flood_incident}/report").status_code == 404
    assert TestClient(app).get(f"/review/incidents/{flood_incident}/report",
                               follow_redirects=False).status_code == 303
