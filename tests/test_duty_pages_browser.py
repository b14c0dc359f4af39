"""The duty roster and the analytics page on a phone, in a real browser (headless Chromium, 390 px), read in Chinese
and in English: the office imports a roster file with one bad row on the roster page, sees that row refused by
number, field and why, and the good rows on duty; then marks the holder away and the stand-in holds the duty. A
manager reads the minutes a declined task had no owner on the analytics page. Screenshots go to /tmp/baton-shots/."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import select

from core.incidents import handoffs
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.users.models import DutyAbsence, RosterShift
from tests.api_server import flood
from tests.fixtures.api import make_user, serve_api
from tests.fixtures.clock import Clock
from tests.test_browser import PHONE, browser  # noqa: F401  (the fixture: one Chromium for the test)
from tests.test_desk_browser import fits

pytestmark = [pytest.mark.chromium]

PASSWORD = "duty-pages-secret-1"
ZONE = ZoneInfo("Asia/Shanghai")
LOCALES = {"zh": "zh-CN", "en": "en-US"}
# What each reader reads: the refused row's reason, the stand-in's badge, the ownerless section's heading.
READS = {"zh": {"refused": "water_affairs没有“night_watchman”这一岗位", "stand_in": "替岗", "away": "已登记离岗",
                "ownerless": "各事件无人负责时长（分钟）"},
         "en": {"refused": "unknown position 'night_watchman' in water_affairs", "stand_in": "stand-in",
                "away": "Marked away", "ownerless": "Minutes without an owner, by incident"}}


def signed_in(chromium: Browser, base: str, username: str, lang: str, problems: list[str]) -> Page:
    """A phone's browser in the reader's locale, logged in through the form; an English reader then switches the
    pages to English with the header's button, as a person would."""
    context = chromium.new_context(viewport=PHONE, locale=LOCALES[lang], timezone_id="Asia/Shanghai",
                                   is_mobile=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"{username}: {exc}"))
    page.on("console", lambda m: problems.append(f"{username}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text else None)
    page.goto(f"{base}/login?lang={lang}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, f"{username} could not log in"
    if lang == "en":
        page.click("form[action='/lang'] button[value=en]")
        page.wait_for_load_state()
    expect(page.locator("html")).to_have_attribute("lang", LOCALES[lang] if lang == "zh" else "en")
    return page


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_office_imports_a_roster_with_a_bad_row_and_marks_the_holder_away_on_a_phone(
        baton: str, browser: Browser, tmp_path: Path, lang: str) -> None:  # noqa: F811
    make_user("office1", "office", password=PASSWORD)
    for name in ("wa_zhang", "wa_li"):
        make_user(name, "department", "water_affairs")
    today = utcnow().astimezone(ZONE).date()
    roster = tmp_path / "值班表.csv"
    # Row 2: wa_zhang holds the water bureau's duty round the clock from yesterday to tomorrow, wa_li the stand-in;
    # row 3 names a position the bureau does not have.
    roster.write_text("department,position,holder,stand_in,from,to,days,start,end\n"
                      f"water_affairs,duty_officer,wa_zhang,wa_li,{today - timedelta(days=1)},"
                      f"{today + timedelta(days=1)},all,08:00,08:00\n"
                      f"water_affairs,night_watchman,wa_zhang,,{today},{today},all,20:00,08:00\n", encoding="utf-8")
    reads = READS[lang]
    problems: list[str] = []
    with serve_api() as server:
        office = signed_in(browser, server.url, "office1", lang, problems)
        office.goto(f"{server.url}/roster")
        fits(office, f"roster-{lang}")
        office.set_input_files("#roster_file", str(roster))
        office.click("#import-form button[type=submit]")
        result = office.locator("#import-result")
        expect(result).to_have_attribute("data-added", "3")
        expect(result).to_have_attribute("data-refused", "1")
        refused = result.locator("tr[data-row='3'][data-field='position']")
        expect(refused).to_contain_text(reads["refused"])
        expect(refused.locator("td").nth(0)).to_have_text("3")
        duty = office.locator("section[data-department='water_affairs'] tr[data-position='duty_officer']")
        expect(duty.locator(".on-duty")).to_contain_text("wa_zhang")
        fits(office, f"roster-imported-{lang}")
        with session_scope() as session:
            assert len(session.exec(select(RosterShift)).all()) == 3

        # wa_zhang is called away until tomorrow: the stand-in holds the duty now.
        office.fill("#username", "wa_zhang")
        until = (utcnow() + timedelta(days=1)).astimezone(ZONE).strftime("%Y-%m-%dT%H:%M")
        office.fill("#ends_at", until)
        office.fill("#reason", "病假" if lang == "zh" else "sick leave")
        office.click("#mark-away button[type=submit]")
        office.wait_for_url("**/roster?done=away")
        expect(office.locator(".alert.ok")).to_contain_text(reads["away"])
        expect(duty.locator(".on-duty")).to_contain_text("wa_li")
        expect(duty.locator(".on-duty .badge")).to_have_text(reads["stand_in"])
        fits(office, f"roster-away-{lang}")
        with session_scope() as session:
            assert len(session.exec(select(DutyAbsence)).all()) == 1
    assert not problems, problems


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_manager_reads_the_minutes_a_declined_task_had_no_owner_on_the_analytics_page_on_a_phone(
        baton: str, browser: Browser, clock: Clock, lang: str) -> None:  # noqa: F811
    make_user("boss1", "manager", password=PASSWORD)
    incident = flood("assessment")
    with session_scope() as session:
        handoffs.decline(session, task_id=incident.tasks["flood_risk_assessment"], actor="user:water_affairs",
                         code="wrong_area", reason="积水点在邻区，非本辖区")
    clock.advance(minutes=12)
    problems: list[str] = []
    with serve_api() as server:
        manager = signed_in(browser, server.url, "boss1", lang, problems)
        manager.goto(f"{server.url}/review/analytics")
        section = manager.locator("#ownerless")
        expect(section.locator("h2")).to_have_text(READS[lang]["ownerless"])
        row = section.locator(f"tr[data-incident='{incident.code}']")
        expect(row).to_be_visible()
        minutes = float(row.get_attribute("data-ownerless-minutes") or "nan")
        assert 11.9 <= minutes <= 12.2, minutes
        expect(row.locator("td").nth(2)).to_have_text(f"{minutes:.1f}")
        total = float(manager.locator(".ownerless-total").get_attribute("data-ownerless-minutes") or "nan")
        assert 11.9 <= total <= 12.2, total
        water = manager.locator("#by-department tr[data-key='water_affairs'] td.ownerless")
        assert 11.9 <= float(water.get_attribute("data-ownerless-minutes") or "nan") <= 12.2
        row.scroll_into_view_if_needed()
        fits(manager, f"analytics-ownerless-{lang}")
        manager.click(f"#ownerless a[href='/review/incidents/{incident.id}']")
        manager.wait_for_url(f"**/review/incidents/{incident.id}")
        review = float(manager.locator(".ownerless").get_attribute("data-ownerless-minutes") or "nan")
        assert 11.9 <= review <= 12.3, review
    assert not problems, problems
