"""The pages in a real browser: headless Chromium (Playwright) against uvicorn on a loopback port, with a real Baton
worker advancing the incident's flow on a real Prefect server.

An office triggers a flood incident through the form; meteorology and water affairs complete their warning
steps through the task form as the worker hands them over; the office sees the next step (lifting the
warning) arrive; a manager reviews the timeline picture and the verified ledger. Screenshots of the pages on
a desk and on a phone go to /tmp/baton-shots/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, FilePayload, Page, ViewportSize, expect, sync_playwright
from sqlmodel import select

from core.incidents.engine import latest_tasks
from core.incidents.models import DepartmentTask, Incident
from core.platform.db import session_scope
from core.reports.pdf import chromium_path
from core.users.service import add_user
from tests import engine_driver as drive
from tests.fixtures.api import serve_api
from tests.servers import PrefectServer, stop_process

pytestmark = [pytest.mark.prefect, pytest.mark.chromium]

SHOTS = Path("/tmp/baton-shots")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PASSWORDS = {"office1": "office-secret-1", "met1": "meteo-secret-1", "water1": "water-secret-1",
             "boss1": "manager-secret-1"}
DESK: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# A 1×1 PNG: the photo water affairs attaches.
PHOTO = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415478"
                      "9c63f8cfc000000301010018dd8db00000000049454e44ae426082")
WAIT_MS = 60_000
# What the worker does (a Prefect flow run per incident) can take seconds on a busy machine: wait as long for a
# page to show it as for any other action (Playwright's assertions wait 5 s by default).
expect.set_options(timeout=WAIT_MS)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, 20)


@pytest.fixture
def site(baton: str, prefect_server: PrefectServer, tmp_path: Path) -> Iterator[str]:
    """uvicorn serving the app on a loopback port and one Baton worker, both on the test's database; yields the
    base URL."""
    env = dict(os.environ, PREFECT_API_URL=prefect_server.api_url, BATON_WORKER_ID="browser-worker")
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "flows.cli", "worker"], env=env, stdout=log.open("wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # The trigger form's incident is picked up at once by a worker that is running: wait until it is.
        deadline = time.monotonic() + 120
        while b"Baton worker browser-worker started" not in log.read_bytes():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.1)
        with serve_api() as server:
            yield server.url
            if "Traceback" in server.log_tail():
                print(f"--- web log ---\n{server.log_tail()}")
    finally:
        _stop(worker)
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Traceback" in text:
            print(f"--- worker log ---\n{text[-4000:]}")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Desk:
    """One person's browser (own cookies), remembering any Content-Security-Policy violation it saw."""

    def __init__(self, browser: Browser, base: str, username: str, problems: list[str]) -> None:
        self.base = base
        self.context = browser.new_context(viewport=DESK, locale="zh-CN", timezone_id="Asia/Shanghai")
        self.context.set_default_timeout(WAIT_MS)
        self.page: Page = self.context.new_page()

        def seen(message: ConsoleMessage) -> None:
            if message.type == "error":
                problems.append(f"{username}: {message.text} {message.location.get('url', '')}")

        self.page.on("console", seen)
        self.page.on("pageerror", lambda exc: problems.append(f"{username}: {exc}"))
        self.page.goto(f"{base}/login")
        self.page.fill("#username", username)
        self.page.fill("#password", PASSWORDS[username])
        self.page.click("form[action='/login'] button[type=submit]")
        self.page.wait_for_load_state()
        assert "/login" not in self.page.url, f"{username} could not log in"

    def go(self, path: str) -> Page:
        self.page.goto(f"{self.base}{path}")
        return self.page

    def shoot(self, name: str) -> None:
        """Screenshots on a desk and on a phone; on the phone nothing may overflow the screen's width."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.set_viewport_size(DESK)
        self.page.screenshot(path=str(SHOTS / f"{name}-desktop.png"), full_page=True)
        self.page.set_viewport_size(PHONE)
        self.page.screenshot(path=str(SHOTS / f"{name}-phone.png"), full_page=True)
        self.page.screenshot(path=str(SHOTS / f"{name}-phone-screen.png"))
        overflow = self.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name}: the page is {overflow}px wider than a phone's screen"
        self.page.set_viewport_size(DESK)


def task_ids(incident_id: str) -> dict[str, Any]:
    with session_scope() as session:
        return {key: (t.id, t.status, t.completed_by) for key, t in latest_tasks(session, incident_id).items()}


def test_a_flood_warning_stage_through_the_pages(site: str, browser: Browser) -> None:
    with session_scope() as session:
        add_user(session, username="office1", role="office", password=PASSWORDS["office1"], display_name="值班员小李")
        add_user(session, username="met1", role="department", department="meteorology", password=PASSWORDS["met1"])
        add_user(session, username="water1", role="department", department="water_affairs",
                 password=PASSWORDS["water1"])
        add_user(session, username="boss1", role="manager", password=PASSWORDS["boss1"])
    problems: list[str] = []

    # The office opens a level IV flood incident through the trigger form.
    office = Desk(browser, site, "office1", problems)
    page = office.page
    assert page.url == f"{site}/office"
    expect(page.locator("h1")).to_have_text("应急办工作台")
    page.select_option("#type", "flood")
    page.select_option("#level", "IV")
    page.fill("#title", "滨江路暴雨积水")
    page.fill("#description", "滨江路下穿隧道积水约40厘米，多辆车辆被困。")
    page.fill("#location_name", "滨江路下穿隧道")
    page.fill("#lat", "31.2304")
    page.fill("#lon", "121.4737")
    page.check("#drill")
    page.click("#trigger button[type=submit]")
    page.wait_for_url(re.compile(r".*/office/incidents/[0-9a-f-]{36}\?done=opened$"))
    incident_id = page.url.rsplit("/", 1)[1].split("?")[0]
    expect(page.locator("h1")).to_contain_text("滨江路暴雨积水")
    expect(page.locator("#notice")).to_contain_text("已启动事件 FLD-")
    # The worker picks it up and hands the forecast to meteorology; the progress table refreshes by itself.
    expect(page.locator('#progress tr[data-step="rainstorm_forecast"]')).to_have_attribute("data-status", "assigned")
    expect(page.locator("#progress")).to_have_attribute("data-polled", re.compile(r"\d+"))
    office.go("/office")
    expect(page.locator("#open-incidents li.item")).to_have_count(1)
    office.shoot("office-console")

    # Meteorology sees the step in its inbox, acknowledges it and completes it through the form.
    met = Desk(browser, site, "met1", problems)
    page = met.page
    assert page.url == f"{site}/inbox"
    page.click('#inbox li[data-step="rainstorm_forecast"] a.item-title')
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    page.click("#acknowledge button")
    page.wait_for_url(re.compile(r".*\?done=acknowledged$"))
    page.fill("#f_rainfall_1h", "60")
    page.fill("#f_rainfall_24h", "180")
    page.select_option("#f_warning_colour", "orange")
    page.fill("#f_valid_until", drive.VALID_UNTIL_LOCAL)
    page.fill("#note", "雷达回波持续增强")
    met.shoot("task-form")
    page.click("#complete button[type=submit]")
    # The answers come back to be confirmed before anything is sent.
    expect(page.locator('#confirm dd[data-field="rainfall_1h"]')).to_have_text("60 毫米")
    met.shoot("task-confirm")
    page.click('#confirm button[value="confirm"]')
    page.wait_for_url(re.compile(r".*\?done=completed$"))
    expect(page.locator(".alert.ok")).to_contain_text("已办结")
    expect(page.locator('#outputs dd[data-field="warning_colour"]')).to_have_text("橙色")

    # Water affairs sees the assessment appear in its inbox (the list refreshes itself) and completes it,
    # with the forecast shared beside the form.
    water = Desk(browser, site, "water1", problems)
    page = water.page
    item = page.locator('#inbox li[data-step="flood_risk_assessment"] a.item-title')
    expect(item).to_be_visible()
    item.click()
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    expect(page.locator('#shared-inputs .shared[data-step="rainstorm_forecast"]')).to_contain_text("60 毫米")
    page.fill("#f_hot_spots", "4")
    page.fill("#f_pumps_deployed", "12")
    page.check("#f_river_level_high")
    # The map is a photo: the file input opens the phone's back camera; here the browser is handed the picture.
    camera = page.locator("#f_hot_spot_map_file")
    expect(camera).to_have_attribute("capture", "environment")
    picture: FilePayload = {"name": "IMG_0718.png", "mimeType": "image/png", "buffer": PHOTO}
    camera.set_input_files(files=[picture])
    water.shoot("task-form-shared")
    page.click("#complete button[type=submit]")
    expect(page.locator('#confirm dd[data-field="hot_spot_map"] a.attachment-link')).to_be_visible()
    page.click('#confirm button[value="confirm"]')
    page.wait_for_url(re.compile(r".*\?done=completed$"))
    link = page.locator('#outputs dd[data-field="hot_spot_map"] a.attachment-link')
    href = link.get_attribute("href")
    assert href and href.startswith("/api/attachments/")
    photo = page.request.get(f"{site}{href}")
    assert photo.status == 200 and photo.body() == PHOTO and photo.headers["content-type"] == "image/png"

    tasks = task_ids(incident_id)
    assert tasks["rainstorm_forecast"][1:] == ("completed", "user:met1")
    assert tasks["flood_risk_assessment"][1:] == ("completed", "user:water1")
    with session_scope() as session:
        assessment = session.get(DepartmentTask, tasks["flood_risk_assessment"][0])
        assert assessment is not None and assessment.outputs is not None
        assert assessment.outputs["hot_spot_map"] == "attachment:" + href.rsplit("/", 1)[1]

    # The next handoff: lifting the warning comes to the emergency office.
    page = office.go(f"/office/incidents/{incident_id}")
    lift = page.locator('#progress tr[data-step="lift_warning"]')
    expect(lift).to_have_attribute("data-status", "assigned")
    expect(lift).to_have_attribute("data-department", "emergency_office")
    office.shoot("office-incident")
    office.go("/office")
    expect(page.locator('#office-tasks li[data-step="lift_warning"]')).to_be_visible()

    # A manager reviews: the flow run's link, the timeline picture with the completed steps, the ledger.
    boss = Desk(browser, site, "boss1", problems)
    page = boss.page
    assert page.url == f"{site}/review"
    with session_scope() as session:
        incident = session.exec(select(Incident).where(Incident.id == incident_id)).one()
        flow_run_id = incident.flow_run_id
    assert flow_run_id, "the worker did not create the flow run"
    row = page.locator(f'tr[data-incident="{incident.code}"]')
    expect(row.locator("a.flow-run")).to_have_attribute("href", re.compile(rf"/runs/flow-run/{flow_run_id}$"))
    row.locator(f'a:text-is("{incident.code}")').click()
    page.wait_for_url(re.compile(rf".*/review/incidents/{incident_id}$"))
    svg = page.locator("#timeline svg.timeline")
    expect(svg).to_be_visible()
    for step in ("rainstorm_forecast", "flood_risk_assessment"):
        expect(svg.locator(f'g.row[data-step="{step}"]')).to_have_attribute("data-status", "completed")
        expect(svg.locator(f'g.row[data-step="{step}"] rect.bar')).to_have_count(1)
    expect(svg.locator('g.row[data-step="rainstorm_forecast"] path.ack')).to_have_count(1)
    expect(svg.locator('g.row[data-step="lift_warning"]')).to_have_attribute("data-status", "assigned")
    expect(page.locator("#ledger .ledger-status")).to_have_class(re.compile(r"\bverified\b"))
    expect(page.locator('#ledger tr[data-kind="task.completed"]')).to_have_count(2)
    expect(page.locator('#deadlines tr[data-department="meteorology"] td.met')).to_have_text("1")
    boss.shoot("review-timeline")

    # Everything ran under the Content-Security-Policy: no blocked script or style, no script error.
    assert problems == []


SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def reload_until(page: Page, selector: str, timeout: float = 60) -> None:
    """Reload until `selector` is on the page: what the worker does in the background reaches a part of the page
    that is not polled on the next load."""
    deadline = time.monotonic() + timeout
    while page.locator(selector).count() == 0:
        assert time.monotonic() < deadline, f"{selector} never appeared on {page.url}"
        time.sleep(0.5)
        page.reload()


def _pdf_pages_to_png(pdf: bytes, name: str, width: int) -> int:
    """The report PDF's first two pages as PNG images `width` pixels wide (pypdfium2), for the docs."""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        for index in range(min(2, len(document))):
            page = document[index]
            image = page.render(scale=width / page.get_width()).to_pil()
            image.save(SHOTS / f"{name}-{index + 1}-{width}.png")
        return len(document)
    finally:
        document.close()


def test_a_public_warning_is_drafted_reviewed_signed_and_a_hand_back_is_routed_through_the_pages(
        site: str, browser: Browser) -> None:
    """Issue 16's walk: meteorology drafts (−5 mm refused in Chinese), the office reviews, the bureau's director
    signs off from the inbox, the public page shows the red warning in words with its expiry; water affairs' 2.5
    points refused; housing's hand-back alerts the office, which reassigns it; the office leaves the
    warning stage only after confirming the open work with a reason."""
    from core.learning.after_action.compute import build_report
    from core.learning.after_action.render import render_report_html
    from core.reports.pdf import html_to_pdf
    from tests.fixtures.api import make_user

    PASSWORDS.update({"director1": "director-secret-1", "housing1": "housing-secret-1"})
    with session_scope() as session:
        add_user(session, username="office1", role="office", password=PASSWORDS["office1"], display_name="值班员小李")
        add_user(session, username="met1", role="department", department="meteorology", password=PASSWORDS["met1"])
        add_user(session, username="water1", role="department", department="water_affairs",
                 password=PASSWORDS["water1"])
        add_user(session, username="housing1", role="department", department="housing",
                 password=PASSWORDS["housing1"])
        add_user(session, username="boss1", role="manager", password=PASSWORDS["boss1"])
    make_user("director1", "department", "meteorology", password=PASSWORDS["director1"],
              positions=["bureau_director@meteorology"])
    problems: list[str] = []

    office = Desk(browser, site, "office1", problems)
    page = office.page
    page.select_option("#type", "flood")
    page.select_option("#level", "III")
    page.fill("#title", "滨江区强降雨")
    page.fill("#location_name", "滨江区")
    page.fill("#lat", "31.2304")
    page.fill("#lon", "121.4737")
    page.click("#trigger button[type=submit]")
    page.wait_for_url(re.compile(r".*/office/incidents/[0-9a-f-]{36}\?done=opened$"))
    incident_id = page.url.split("?")[0].rsplit("/", 1)[1]
    expect(page.locator(".alert.ok")).to_contain_text("已启动")

    # Meteorology: −5 mm is refused beside the field, in Chinese; then a red signal, confirmed.
    met = Desk(browser, site, "met1", problems)
    page = met.page
    page.click('#inbox li[data-step="rainstorm_forecast"] a.item-title')
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    page.fill("#f_rainfall_1h", "-5")
    page.fill("#f_rainfall_24h", "180")
    page.select_option("#f_warning_colour", "red")
    page.fill("#f_valid_until", drive.VALID_UNTIL_LOCAL)
    # The browser itself stops it (the input carries the plan's bounds); past a browser that does not, the
    # server refuses it beside the field.
    assert page.evaluate("document.querySelector('#f_rainfall_1h').validity.rangeUnderflow")
    page.evaluate("document.querySelectorAll('form').forEach(f => f.noValidate = true)")
    page.click("#complete button[type=submit]")
    expect(page.locator("#err-rainfall_1h")).to_have_text("不能小于 0 毫米。")
    page.fill("#f_rainfall_1h", "60")
    page.click("#complete button[type=submit]")
    page.click('#confirm button[value="confirm"]')
    page.wait_for_url(re.compile(r".*\?done=completed$"))

    # The worker drafts the warning; nothing is public until the office reviews and a leader signs it off.
    page = office.go(f"/office/incidents/{incident_id}")
    reload_until(page, '#warning-release li[data-state="draft"]')
    draft = page.locator('#warning-release li[data-state="draft"]')
    expect(draft).to_contain_text("暴雨红色预警信号")
    assert "暴雨红色" not in office.go("/public/warnings").content()
    page = office.go(f"/office/incidents/{incident_id}")
    page.locator('#warning-release li[data-state="draft"] form[action$="/review"] button').click()
    expect(page.locator('#warning-release li[data-state="reviewed"]')).to_have_count(1)
    director = Desk(browser, site, "director1", problems)
    page = director.page
    expect(page.locator("#to-sign li.item")).to_contain_text("暴雨红色预警信号")
    director.shoot("inbox-to-sign")
    page.click("#to-sign button[type=submit]")
    page.wait_for_url(re.compile(r".*/inbox\?done=signed$"))
    page = director.go("/public/warnings")
    published = page.locator("body")
    expect(published).to_contain_text("发布暴雨红色预警信号")
    text = published.inner_text()
    assert not re.search(r"\bred\b", text), "a raw colour value on the public page"
    for raw in ("False", "True", "None"):
        assert raw not in text
    with session_scope() as session:
        from core.sharing.models import CapAlert

        alert = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).one()
        assert (alert.colour, alert.state, alert.published) == ("red", "issued", True)
        assert "<expires>" in alert.xml and "<status>Actual</status>" in alert.xml
    director.shoot("public-warnings")

    # Water affairs: 2.5 risk points is not a count.
    water = Desk(browser, site, "water1", problems)
    page = water.page
    page.click('#inbox li[data-step="flood_risk_assessment"] a.item-title')
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    page.fill("#f_hot_spots", "2.5")
    page.fill("#f_pumps_deployed", "12")
    assert page.evaluate("document.querySelector('#f_hot_spots').validity.stepMismatch")
    page.evaluate("document.querySelectorAll('form').forEach(f => f.noValidate = true)")
    page.click("#complete button[type=submit]")
    expect(page.locator("#err-hot_spots")).to_contain_text("整数")
    page.fill("#f_hot_spots", "3")
    page.click("#complete button[type=submit]")
    page.click('#confirm button[value="confirm"]')
    page.wait_for_url(re.compile(r".*\?done=completed$"))

    # Housing hands the basement check back: the office is alerted with the reason and reassigns it.
    housing = Desk(browser, site, "housing1", problems)
    page = housing.page
    page.click('#inbox li[data-step="underground_space_check"] a.item-title')
    page.wait_for_url(re.compile(r".*/tasks/[0-9a-f-]{36}$"))
    page.fill("#hand-back-reason", "地下车库归人防办管理，非本局职责")
    page.click('#hand-back button[value="hand-back"]')
    page = office.go(f"/office/incidents/{incident_id}")
    reload_until(page, '#handback-alerts li[data-step="underground_space_check"]')
    alert_item = page.locator('#handback-alerts li[data-step="underground_space_check"]')
    expect(alert_item).to_contain_text("地下车库归人防办管理，非本局职责")
    office.shoot("office-handback-alert")
    alert_item.locator("summary").first.click()
    alert_item.locator('select[name="department"]').select_option("water_affairs")
    alert_item.locator('form[action$="/reassign"] textarea').fill("水务局排涝队伍在现场")
    alert_item.locator('form[action$="/reassign"] button').click()
    expect(page.locator("#handback-alerts")).to_have_count(0)
    expect(water.go("/inbox").locator('#inbox li[data-step="underground_space_check"]')).to_be_visible()

    # Lifting the warning would cancel the reassigned notification: listed, confirmed with a reason.
    page = office.go(f"/office/incidents/{incident_id}")
    expect(page.locator('#progress tr[data-step="lift_warning"]')).to_have_attribute("data-status", "assigned")
    lift_id = task_ids(incident_id)["lift_warning"][0]
    page = office.go(f"/tasks/{lift_id}")
    page.select_option("#f_decision", "respond")
    page.click("#complete button[type=submit]")
    page.click('#confirm button[value="confirm"]')
    expect(page.locator('#open-work li[data-open-step="underground_space_check"]')).to_contain_text("地下空间")
    page.check("#confirm-open-work")
    page.fill("#open-work-reason", "地下空间检查转入响应阶段由水务局排涝队伍跟进")
    page.click("#complete button[type=submit]")
    page.click('#confirm button[value="confirm"]')
    page.wait_for_url(re.compile(r".*\?done=completed$"))
    with session_scope() as session:
        from core.ledger.models import LedgerEntry

        kinds = [e.kind for e in session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id))]
    assert {"warning.reviewed", "warning.signed", "task.handed_back", "task.reassign_ordered",
            "stage.open_work_confirmed"} <= set(kinds), kinds

    # The office screen, the board and the report, on a desk and on a phone, for the README.
    page = office.go(f"/office/incidents/{incident_id}")
    office.shoot("office-screen")
    office.go(f"/incidents/{incident_id}/board")
    office.shoot("board")
    # 中英对照, chosen in the page header: the same screen with each text's English under it, still fitting a phone.
    page = office.go(f"/office/incidents/{incident_id}")
    page.click('form[action="/lang"] button[value="zh-en"]')
    expect(page.locator("small.subtitle", has_text="Log out")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    office.shoot("office-screen-zh-en")
    page.click('form[action="/lang"] button[value="zh"]')
    expect(page.locator("small.subtitle")).to_have_count(0)
    boss = Desk(browser, site, "boss1", problems)
    boss.go(f"/review/incidents/{incident_id}/report")
    boss.shoot("report")
    with session_scope() as session:
        pdf = html_to_pdf(render_report_html(build_report(session, incident_id=incident_id), "zh"))
    assert _pdf_pages_to_png(pdf, "report-pdf", 1280) >= 2 and _pdf_pages_to_png(pdf, "report-pdf", 390) >= 2
    # The refusals this walk provokes (422 for the bad values, 409 for the open work) are the only console errors.
    expected = re.compile(r"status of (422|409) .*/tasks/[0-9a-f-]{36}/complete$")
    assert [p for p in problems if not expected.search(p)] == [], problems
    assert len(problems) == 3, problems
