"""The duty desk in a real browser on a phone (headless Chromium, 390 px): the duty officer records a phone report
as an event record sheet, the duty leader opens it and opens an incident from it. The web process only writes the
incident (no worker is needed: a worker would start its flow). Screenshots go to /tmp/baton-shots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlmodel import select

from core.desk.models import EventSheet
from core.incidents.models import Incident
from core.platform.db import session_scope
from core.reports.pdf import chromium_path
from core.users.positions import grant
from core.users.service import add_user
from tests.fixtures.api import serve_api
from tests.test_browser import CHROMIUM_ARGS, PHONE

pytestmark = [pytest.mark.chromium]

SHOTS = Path("/tmp/baton-shots")
PASSWORDS = {"officer1": "officer-secret-1", "leader1": "leader-secret-1"}


@pytest.fixture
def phone_browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def phone(browser: Browser, base: str, username: str, problems: list[str]) -> Page:
    context = browser.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai", is_mobile=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"{username}: {exc}"))
    page.on("console", lambda m: problems.append(f"{username}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text else None)
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORDS[username])
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url, f"{username} could not log in"
    return page


def fits(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name}: the page is {overflow}px wider than a phone's screen"


def test_a_phone_report_is_recorded_and_the_duty_leader_opens_an_incident_from_it_on_a_phone(
        baton: str, phone_browser: Browser) -> None:
    with session_scope() as session:
        add_user(session, username="officer1", role="office", password=PASSWORDS["officer1"], display_name="值班员小李")
        leader = add_user(session, username="leader1", role="office", password=PASSWORDS["leader1"],
                          display_name="带班领导王主任")
        grant(session, user_id=leader.id, ref="duty_leader@emergency_office", actor="test:setup")
    problems: list[str] = []
    with serve_api() as server:
        officer = phone(phone_browser, server.url, "officer1", problems)
        officer.goto(f"{server.url}/desk")
        fits(officer, "desk")
        officer.select_option("#source", "hotline_12345")
        officer.fill("#caller", "李女士")
        officer.fill("#callback", "138 0000 1234")
        officer.fill("#place", "城东区解放路地下通道")
        officer.fill("#what", "地下通道积水约1米，有车辆被困")
        officer.fill("#trapped", "2")
        officer.fill("#injured", "-1")  # a slip of the finger: refused, the field named, nothing recorded
        officer.evaluate("document.querySelector('#injured').removeAttribute('min')")
        officer.click("#sheet-form button[type=submit]")
        expect(officer.locator("#sheet-form .field.has-error #injured")).to_be_visible()
        with session_scope() as session:
            assert session.exec(select(EventSheet)).first() is None
        officer.fill("#injured", "1")
        officer.click("#sheet-form button[type=submit]")
        expect(officer.locator(".alert.ok")).to_contain_text("已登记并送带班领导审核")
        with session_scope() as session:
            sheet = session.exec(select(EventSheet)).one()
            assert (sheet.status, sheet.trapped, sheet.injured, sheet.source) == ("submitted", 2, 1, "hotline_12345")
        # The officer is not the duty leader: the page says so and nothing changes.
        officer.click("#open-form button[type=submit]")
        expect(officer.locator("body")).to_contain_text("403")

        boss = phone(phone_browser, server.url, "leader1", problems)
        boss.goto(f"{server.url}/desk")
        expect(boss.locator(f"[data-sheet='{sheet.number}']")).to_be_visible()
        boss.click(f"[data-sheet='{sheet.number}'] a")
        fits(boss, "desk-sheet")
        boss.select_option("#type", "flood")
        boss.select_option("#level", "III")
        boss.fill("#title", "解放路地下通道积水")
        boss.click("#open-form button[type=submit]")
        boss.wait_for_url("**/office/incidents/**")
        expect(boss.locator("h1")).to_contain_text("解放路地下通道积水")
        fits(boss, "desk-opened")
        with session_scope() as session:
            incident = session.exec(select(Incident)).one()
            sheet = session.exec(select(EventSheet)).one()
            assert (incident.level, incident.type, sheet.status, sheet.incident_id) == ("III", "flood", "opened",
                                                                                        incident.id)
        boss.goto(f"{server.url}/desk/sheets/{sheet.id}")
        expect(boss.locator("#sheet-incident")).to_contain_text(incident.code)
    assert not problems, problems
