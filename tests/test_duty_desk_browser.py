"""The duty desk's other walks on a phone, in a real browser (headless Chromium, 390 px), each read in Chinese and
in English: a department clerk declines a task (退单) with a reason code and the office reassigns it; the office
records a leader's instruction (批示), the department reports its part done from its inbox (which shows who is on
duty), the office closes it; the duty officer notes and hands over the shift's duty log and prints it; the duty
leader merges, files and returns event record sheets. Markup typed into a reason or a note comes out literally.
No worker: the engine is stepped by the test where a page waits on it. Screenshots go to /tmp/baton-shots/."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import select

from core.desk import sheets
from core.desk.models import DutyLog, EventSheet, Instruction
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.users.rosters import import_roster
from tests import engine_driver as drive
from tests.api_server import flood
from tests.fixtures.api import make_user, serve_api
from tests.test_browser import browser  # noqa: F401  (the fixture: one Chromium for the test)
from tests.test_channels_browser import off_the_loop
from tests.test_duty_pages_browser import PASSWORD, fits, signed_in

pytestmark = [pytest.mark.chromium]

ZONE = ZoneInfo("Asia/Shanghai")
HOSTILE = "<script>alert(1)</script>"
LEADER_REF = "duty_leader@emergency_office"
# What each reader reads on the pages walked here.
READS = {
    "zh": {
        "declined": "已退单。应急办须将任务另行派发。",
        "wrong_area": "非本辖区",
        "declined_badge": "已退单",
        "declined_because": "退单原因",
        "declined_by": "退单人",
        "reassign": "改派其他部门",
        "on_duty": "当前值班",
        "next_handover": "下次交接班",
        "reported": "已报告：本单位的批示落实任务已完成。",
        "instructions": "领导批示",
        "done": "已落实",
        "closed": "已关闭",
        "duty_log": "值班日志",
        "handed_over_by": "交班人",
        "handover": "交接",
        "not_officer": "请填写应急办在岗用户（值班员）的用户名。",
        "merged": "已合并",
        "waiting": "待审核",
        "filed": "已存档",
        "returned": "退回补充",
        "reason_needed": "请填写原因。",
        "pick_department": "请至少选择一个承办部门。",
    },
    "en": {
        "declined": "Declined. The emergency office must route the task to another department.",
        "wrong_area": "Not our area",
        "declined_badge": "Declined",
        "declined_because": "Declined because",
        "declined_by": "Declined by",
        "reassign": "Reassign to another department",
        "on_duty": "On duty now",
        "next_handover": "Next handover",
        "reported": "Reported: your part of the instruction is done.",
        "instructions": "Leaders' instructions",
        "done": "Done",
        "closed": "Closed",
        "duty_log": "Duty log",
        "handed_over_by": "Handed over by",
        "handover": "Handover",
        "not_officer": "Name an active user of the emergency office: a duty officer.",
        "merged": "Merged",
        "waiting": "Awaiting review",
        "filed": "Filed",
        "returned": "Returned for details",
        "reason_needed": "Give a reason.",
        "pick_department": "Choose at least one department.",
    },
}


def literal(page: Page) -> None:
    """Markup typed in came out as text: no element was made of it (and no alert ran: the problems list)."""
    assert page.locator("script:has-text('alert(1)')").count() == 0
    assert HOSTILE in page.locator("body").inner_text()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_clerk_declines_a_task_and_the_office_reassigns_it_on_a_phone(
        baton: str, browser: Browser, lang: str) -> None:  # noqa: F811
    make_user("office1", "office", password=PASSWORD)
    make_user("water1", "department", "water_affairs", password=PASSWORD)
    make_user("police1", "department", "public_security", password=PASSWORD)
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    reads = READS[lang]
    problems: list[str] = []
    with serve_api() as server:
        clerk = signed_in(browser, server.url, "water1", lang, problems)
        clerk.goto(f"{server.url}/tasks/{task_id}")
        fits(clerk, f"task-decline-{lang}")
        clerk.select_option("#decline-code", "wrong_area")
        clerk.fill("#decline-reason", f"积水点在邻区 {HOSTILE}")
        clerk.click("#decline button[type=submit]")
        clerk.wait_for_url("**?done=declined")
        expect(clerk.locator(".alert.ok")).to_have_text(reads["declined"])
        expect(clerk.locator("#decline")).to_have_count(0)  # nothing left to act on
        facts = clerk.locator("dl.facts").first
        expect(facts).to_contain_text(reads["wrong_area"])
        expect(facts).to_contain_text(reads["declined_because"])  # not "handed back": it was declined
        literal(clerk)
        fits(clerk, f"task-declined-{lang}")

        office = signed_in(browser, server.url, "office1", lang, problems)
        office.goto(f"{server.url}/office/incidents/{incident.id}")
        alert = office.locator("#handback-alerts li[data-step='flood_risk_assessment']")
        expect(alert).to_have_attribute("data-kind", "declined")
        expect(alert.locator(".decline-code")).to_have_text(reads["wrong_area"])
        expect(alert.locator(".handback-reason")).to_have_text(f"积水点在邻区 {HOSTILE}")
        literal(office)
        alert.locator("summary", has_text=reads["reassign"]).click()
        fits(office, f"office-declined-{lang}")
        alert.locator("select[name=department]").select_option("public_security")
        alert.locator("textarea[id^=reassign-reason]").fill(f"公安负责 {HOSTILE}")
        alert.locator("form[action$='/reassign'] button[type=submit]").click()
        office.wait_for_url(f"**/office/incidents/{incident.id}")
        expect(office.locator("#handback-alerts")).to_have_count(0)

        off_the_loop(lambda: drive.step(incident.id))  # the engine assigns the next attempt
        new = off_the_loop(lambda: drive.open_tasks(incident.id))["flood_risk_assessment"]
        assert (new.department, new.attempt) == ("public_security", 2)
        police = signed_in(browser, server.url, "police1", lang, problems)
        police.goto(f"{server.url}/tasks/{new.id}")
        history = police.locator("#task-history")
        expect(history.locator("li[data-attempt='1']")).to_contain_text(reads["declined_badge"])
        expect(history.locator("li[data-attempt='1'] .decline-code")).to_have_text(reads["wrong_area"])
        expect(history.locator("li[data-attempt='1']")).to_contain_text(reads["declined_by"])
        expect(police.locator("#decline")).to_be_visible()  # the new department may act on it
        literal(police)
        fits(police, f"task-reassigned-{lang}")
    assert not problems, problems


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_instruction_is_recorded_reported_done_from_the_inbox_and_closed_on_a_phone(
        baton: str, browser: Browser, lang: str) -> None:  # noqa: F811
    make_user("office1", "office", password=PASSWORD)
    make_user("water1", "department", "water_affairs", password=PASSWORD)
    incident = flood("assessment")
    today = utcnow().astimezone(ZONE).date()
    with session_scope() as session:  # water1 holds the bureau's duty round the clock: the inbox says so
        import_roster(session, rows=[(2, {"department": "water_affairs", "position": "duty_officer",
                                          "holder": "water1", "stand_in": "", "from": str(today - timedelta(days=1)),
                                          "to": str(today + timedelta(days=1)), "days": "all", "start": "08:00",
                                          "end": "08:00"})], source="test", actor="test:setup")
    reads = READS[lang]
    problems: list[str] = []
    with serve_api() as server:
        office = signed_in(browser, server.url, "office1", lang, problems)
        office.goto(f"{server.url}/incidents/{incident.id}/instructions")
        expect(office.locator("h1")).to_contain_text(reads["instructions"])
        fits(office, f"instructions-{lang}")
        office.fill("#leader", "王市长")
        office.fill("#text", f"立即组织排查低洼地带 {HOSTILE}")
        office.click("#record-instruction button[type=submit]")  # no department named: refused, in the language
        expect(office.locator("#record-instruction .alert.error[data-field='departments']")).to_have_text(
            reads["pick_department"])
        expect(office.locator(".instruction")).to_have_count(0)
        office.fill("#leader", "王市长")
        office.fill("#text", f"立即组织排查低洼地带 {HOSTILE}")
        office.check("input[name=departments][value=water_affairs]")
        due = (utcnow() + timedelta(hours=2)).astimezone(ZONE).strftime("%Y-%m-%dT%H:%M")
        office.fill("#due_at", due)
        office.click("#record-instruction button[type=submit]")
        item = office.locator(".instruction[data-status='open']")
        expect(item.locator("p.pre")).to_have_text(f"立即组织排查低洼地带 {HOSTILE}")
        expect(item.locator("form[action$='/close'] button")).to_be_disabled()  # water affairs has not reported
        literal(office)
        fits(office, f"instruction-recorded-{lang}")

        clerk = signed_in(browser, server.url, "water1", lang, problems)
        clerk.goto(f"{server.url}/inbox")
        duty = clerk.locator("#on-duty")
        expect(duty.locator("h2")).to_have_text(reads["on_duty"])
        expect(duty.locator("li[data-position='duty_officer']")).to_have_attribute("data-on-duty", "water1")
        expect(duty.locator(".next-handover")).to_contain_text(reads["next_handover"])
        task = clerk.locator("#instruction-tasks li[data-instruction-task]")
        expect(task.locator("p.pre")).to_have_text(f"立即组织排查低洼地带 {HOSTILE}")
        literal(clerk)
        fits(clerk, f"inbox-instruction-{lang}")
        task.locator("textarea[name=reply]").fill(f"已排查低洼点12处 {HOSTILE}")
        task.locator("button[type=submit]").click()
        clerk.wait_for_url("**/inbox?done=instruction*")
        expect(clerk.locator(".alert.ok")).to_have_text(reads["reported"])
        expect(clerk.locator("#instruction-tasks")).to_have_count(0)
        fits(clerk, f"inbox-reported-{lang}")

        office.reload()
        part = office.locator(".instruction li[data-department='water_affairs']")
        expect(part).to_have_attribute("data-task-status", "done")
        expect(part).to_contain_text(reads["done"])
        expect(part).to_contain_text(f"已排查低洼点12处 {HOSTILE}")
        office.fill(".instruction input[name=note]", f"落实完毕 {HOSTILE}")
        office.click(".instruction form[action$='/close'] button")
        closed = office.locator(".instruction[data-status='closed']")
        expect(closed.locator(".status-closed")).to_have_text(reads["closed"])
        literal(office)
        fits(office, f"instruction-closed-{lang}")
        with session_scope() as session:
            assert session.exec(select(Instruction)).one().status == "closed"
    assert not problems, problems


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_duty_officer_notes_and_hands_over_the_duty_log_and_prints_it_on_a_phone(
        baton: str, browser: Browser, lang: str) -> None:  # noqa: F811
    make_user("office1", "office", password=PASSWORD)
    make_user("night1", "office", password=PASSWORD)
    make_user("water1", "department", "water_affairs", password=PASSWORD)
    reads = READS[lang]
    problems: list[str] = []
    with serve_api() as server:
        officer = signed_in(browser, server.url, "office1", lang, problems)
        officer.goto(f"{server.url}/desk")
        log = officer.locator("#duty-log")
        expect(log.locator("h2")).to_have_text(reads["duty_log"])
        log.locator("form[action='/desk/logs'] button[type=submit]").click()
        officer.fill("#note-text", f"18:30 市气象台来电 {HOSTILE}")
        log.locator("form[action$='/notes'] button[type=submit]").click()
        expect(log.locator(".log-entries li[data-kind='note']")).to_contain_text(f"18:30 市气象台来电 {HOSTILE}")
        # A department's user is no duty officer: refused, in the reader's language, and the shift stays on.
        officer.fill("#incoming", "water1")
        officer.fill("#handover-note", f"解放路积水仍在处置 {HOSTILE}")
        officer.click("#handover-form button[type=submit]")
        expect(log.locator(".alert.error[data-field='incoming']")).to_have_text(reads["not_officer"])
        fits(officer, f"desk-log-{lang}")
        officer.fill("#incoming", "night1")
        officer.fill("#handover-note", f"解放路积水仍在处置 {HOSTILE}")
        officer.click("#handover-form button[type=submit]")
        officer.wait_for_url("**/desk#duty-log")
        with session_scope() as session:
            first = session.exec(select(DutyLog).where(DutyLog.officer == "office1")).one()
            assert (first.incoming, first.ended_at is not None) == ("night1", True)

        # The incoming officer finds the shift theirs, and what they must know on the desk.
        night = signed_in(browser, server.url, "night1", lang, problems)
        night.goto(f"{server.url}/desk")
        log = night.locator("#duty-log")
        expect(log.locator("p").first).to_contain_text("night1")
        received = log.locator(".handover-received")
        expect(received).to_have_attribute("data-from", "office1")
        expect(received).to_contain_text(reads["handed_over_by"])
        expect(received.locator("p.pre")).to_have_text(f"解放路积水仍在处置 {HOSTILE}")
        literal(night)
        fits(night, f"desk-handed-over-{lang}")

        officer = night
        received.locator(f"a[href='/desk/logs/{first.id}/print']").click()
        officer.wait_for_url(f"**/desk/logs/{first.id}/print")
        expect(officer.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-CN")
        expect(officer.locator("h1")).to_have_text(reads["duty_log"])
        expect(officer.locator("tr[data-kind='note'] td.pre")).to_have_text(f"18:30 市气象台来电 {HOSTILE}")
        handover = officer.locator(".handover")
        expect(handover.locator("h2")).to_have_text(reads["handover"])
        expect(handover.locator("p.pre")).to_have_text(f"解放路积水仍在处置 {HOSTILE}")
        expect(handover.locator(".signatures")).to_contain_text("night1")
        literal(officer)
        fits(officer, f"desk-log-print-{lang}")
    assert not problems, problems


def _sheet(what: str) -> str:
    with session_scope() as session:
        sheet = sheets.record(session, given=sheets.SheetInput(
            source="phone", caller="李女士", callback="138 0000 1234", place="城东区解放路地下通道",
            occurred_at=utcnow() - timedelta(minutes=10), what=what, lat=None, lon=None, dead=0, injured=0, missing=0,
            trapped=0), actor="user:office1")
        return sheet.id


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_duty_leader_merges_files_and_returns_sheets_on_a_phone(
        baton: str, browser: Browser, lang: str) -> None:  # noqa: F811
    make_user("office1", "office", password=PASSWORD)
    make_user("leader1", "office", password=PASSWORD, positions=[LEADER_REF])
    target = flood("forecast")
    second, alarm, thin = _sheet("同一积水点，第二次来电"), _sheet("闻到煤气味"), _sheet("有情况")
    reads = READS[lang]
    problems: list[str] = []
    with serve_api() as server:
        boss = signed_in(browser, server.url, "leader1", lang, problems)
        boss.goto(f"{server.url}/desk/sheets/{second}")
        fits(boss, f"sheet-review-{lang}")
        boss.select_option("#merge-form select[name=incident_id]", target.id)
        boss.fill("#merge-note", f"第二次来电 {HOSTILE}")
        boss.click("#merge-form button[type=submit]")
        expect(boss.locator(".sheet-status")).to_have_text(reads["merged"])
        expect(boss.locator("#sheet-incident")).to_contain_text(target.code)
        fits(boss, f"sheet-merged-{lang}")

        boss.goto(f"{server.url}/desk/sheets/{alarm}")
        boss.fill("#file-reason", "   ")  # blanks pass the browser's check, not the server's
        boss.click("#file-form button[type=submit]")
        expect(boss.locator(".alert.error[data-field='reason']")).to_have_text(reads["reason_needed"])
        expect(boss.locator(".sheet-status")).to_have_text(reads["waiting"])  # nothing changed
        boss.fill("#file-reason", f"燃气公司核实为误报 {HOSTILE}")
        boss.click("#file-form button[type=submit]")
        expect(boss.locator(".sheet-status")).to_have_text(reads["filed"])
        expect(boss.locator("#sheet dd.pre").last).to_have_text(f"燃气公司核实为误报 {HOSTILE}")
        literal(boss)
        fits(boss, f"sheet-filed-{lang}")

        boss.goto(f"{server.url}/desk/sheets/{thin}")
        boss.fill("#return-reason", f"请补充具体情况 {HOSTILE}")
        boss.click("#return-form button[type=submit]")
        expect(boss.locator(".sheet-status")).to_have_text(reads["returned"])
        expect(boss.locator("#amend")).to_be_visible()
        literal(boss)
        fits(boss, f"sheet-returned-{lang}")

        officer = signed_in(browser, server.url, "office1", lang, problems)
        officer.goto(f"{server.url}/desk")
        back = officer.locator("#sheets-waiting li[data-sheet]")
        expect(back).to_have_count(1)
        expect(back).to_contain_text(f"请补充具体情况 {HOSTILE}")
        reviewed = officer.locator("#sheets-reviewed")
        expect(reviewed.locator(".status-merged")).to_have_text(reads["merged"])
        expect(reviewed.locator(".status-filed")).to_have_text(reads["filed"])
        literal(officer)
        fits(officer, f"desk-reviewed-{lang}")
        with session_scope() as session:
            statuses = {s.id: s.status for s in session.exec(select(EventSheet)).all()}
            assert statuses == {second: "merged", alarm: "filed", thin: "returned"}
    assert not problems, problems
