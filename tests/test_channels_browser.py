"""叫应 on a phone, in a real browser (headless Chromium, 390 px): the emergency office adds a WeCom drill channel
and an official's mobile number on its channels page; a drill's red warning calls the official through a local
receiver speaking WeCom's robot protocol; the official opens the answer link on a phone, sees the confirm page
(opening it records nothing), presses confirm, and the board's 叫应 panel shows 1/1 answered. No worker is needed:
the test runs the call's reconciliation and the delivery as the flow does. Screenshots go to /tmp/baton-shots/."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlmodel import select

from core.outbox.models import NotifyChannel
from core.platform.db import session_scope
from core.sharing.models import AnswerRequest
from core.users.service import add_user
from tests.channel_receivers import running
from tests.fixtures.api import make_user, serve_api
from tests.test_answers import LINK, reconcile, red_warning, send_pending
from tests.test_browser import PHONE, browser  # noqa: F401  (the fixture: one Chromium for the test)

pytestmark = [pytest.mark.chromium]

SHOTS = Path("/tmp/baton-shots")
PASSWORD = "office-secret-1"
WECOM_KEY = "wecom-drill-robot-key-0001"
T = TypeVar("T")


def off_the_loop(work: Callable[[], T]) -> T:
    """Run what drives the flow's steps (which runs event loops of its own) beside Playwright's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


def on_phone(chromium: Browser, problems: list[str], who: str) -> Page:
    context = chromium.new_context(viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai", is_mobile=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"{who}: {exc}"))
    page.on("console", lambda m: problems.append(f"{who}: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text else None)
    return page


def fits(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name}: the page is {overflow}px wider than a phone's screen"


def test_the_office_adds_a_wecom_drill_channel_and_an_official_answers_on_a_phone(
        baton: str, browser: Browser) -> None:  # noqa: F811
    with session_scope() as session:
        add_user(session, username="office1", role="office", password=PASSWORD, display_name="值班员小李")
    make_user("keeper_a", "department", "community", positions=["evacuation_keeper@community"])
    problems: list[str] = []
    with running("wecom", WECOM_KEY) as robot, serve_api() as server:
        office = on_phone(browser, problems, "office1")
        office.goto(f"{server.url}/login")
        office.fill("#username", "office1")
        office.fill("#password", PASSWORD)
        office.click("form[action='/login'] button[type=submit]")
        office.wait_for_load_state()
        office.goto(f"{server.url}/office")
        office.click("#channels-link")
        office.wait_for_url("**/office/channels")
        office.fill("#name", "防汛演练群")
        office.select_option("#kind", "wecom")
        office.fill("#url", robot.url)
        office.fill("#token", WECOM_KEY)
        office.check("#for_drills")
        office.click("#channel-form button[type=submit]")
        row = office.locator("tr[data-channel='防汛演练群']")
        expect(row).to_have_attribute("data-drills", "1")
        expect(row.locator(".masked")).to_contain_text("••••0001")
        assert WECOM_KEY not in office.content()  # the key is never shown back in full
        office.select_option("#contact_channel", label="防汛演练群 · 企业微信机器人")
        office.fill("#contact_username", "keeper_a")
        office.fill("#contact_address", "13900001111")
        office.click("#contact-form button[type=submit]")
        expect(office.locator(".alert.ok")).to_contain_text("已保存通知地址")
        expect(row.locator("td").nth(3)).to_have_text("1")
        fits(office, "channels")
        with session_scope() as session:
            channel = session.exec(select(NotifyChannel)).one()
            assert (channel.kind, channel.for_drills, channel.token) == ("wecom", True, WECOM_KEY)

        # A drill's red warning calls the official over the drill channel, stamped 演练, with the answer link.
        incident_id, _ = off_the_loop(lambda: red_warning(drill=True))
        assert len(off_the_loop(lambda: reconcile(incident_id)).deliveries) == 1
        assert off_the_loop(lambda: send_pending(incident_id)) == ["delivered"]
        [(mobile, text)] = robot.messages()
        assert mobile == "13900001111" and text.startswith("【演练】")
        link = LINK.search(text)
        assert link is not None, text

        official = on_phone(browser, problems, "keeper_a")
        official.goto(f"{server.url}/answer/{link.group(1)}")
        expect(official.locator("#confirm-answer")).to_be_visible()
        expect(official.locator("p.badge").first).to_have_text("演练")  # said once, not 演练 · 演练
        fits(official, "answer-confirm")
        with session_scope() as session:  # opening the link answered nothing
            assert session.exec(select(AnswerRequest)).one().answered_at is None
        official.click("#confirm-answer")
        expect(official.locator(".alert.ok")).to_contain_text("已记录")
        fits(official, "answer-done")

        office.goto(f"{server.url}/incidents/{incident_id}/board")
        expect(office.locator("#board-answers .answer-tally")).to_have_text("1/1")
        fits(office, "board-answers")
    assert not problems, problems
