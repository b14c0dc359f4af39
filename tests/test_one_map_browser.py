"""Issue 18's "Done when" world on one map (一张图), in real Chromium at 1280 and 390 px.

Everything the issue builds lands on the same map: flood risk points imported from an XLSX through the register
import (a bad row named and left out), the season's 汛前检查 with an inspection answered by a finding that opened a
rectification (the prevention layer), a drill flood whose red rainstorm warning was redrawn as a CAP polygon,
shelters inside and outside that polygon, water affairs' sand-bag reserve and a rescue team. The office's map
shows each layer's features (the polygon drawn as a polygon, where it is), each popup worded for people, the
toggles hide and show, a department sees only what it may, nothing overflows a phone's screen, and the page asks
no host but Baton's own for anything: every request of the browser is routed through a guard that records and
refuses any other host.

The Binjiang (滨江区) flood is at 30.2084°N 120.2120°E; the warning's polygon is 30.19–30.23°N, 120.19–120.24°E.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route, expect
from sqlmodel import select

from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.prevention import service as prevention_service
from core.prevention.models import PreventionKind, PreventionTask
from core.sharing import warnings as release
from core.sharing.models import CapAlert
from core.users.models import User
from flows import prevention
from tests import engine_driver as drive
from tests.fixtures.api import Api, make_user
from tests.test_browser import PASSWORDS, PHONE, Desk, browser  # noqa: F401  (the browser fixture)
from tests.test_registers import RISK_HEADER, xlsx

pytestmark = pytest.mark.chromium

BINJIANG = (30.2084, 120.2120)
POLYGON = "30.19,120.19 30.19,120.24 30.23,120.24 30.23,120.19 30.19,120.19"
FORECAST = {"rainfall_1h": 80, "rainfall_24h": 200, "warning_colour": "red", "valid_until": drive.VALID_UNTIL}
# Four flood risk points (three 积水点 and a 地质灾害隐患点, each for its department) and a row in the Pacific.
RISK_ROWS = [
    ["W-01", "江南大道下穿通道", "积水点", "water_affairs", 120.205, 30.200, "较大", 120],
    ["W-02", "滨盛路低洼段", "积水点", "water_affairs", 120.228, 30.214, "一般", 40],
    ["W-03", "文三路易涝点", "积水点", "urban_management", 120.130, 30.280, "一般", 30],
    ["G-01", "转塘山体隐患点", "地质灾害隐患点", "natural_resources", 120.080, 30.150, "较大", 12],
    ["W-99", "太平洋某点", "积水点", "water_affairs", 160.0, 10.0, "一般", 1],
]
SHELTERS = ("code,name_zh,name_en,kind,capacity,occupancy,is_open,organisation,lon,lat\n"
            "S-IN,滨江体育馆,Binjiang Stadium,emergency,3000,120,是,emergency_office,120.215,30.205\n"
            "S-OUT,西湖文化广场,Xihu Culture Square,short_term,800,0,否,emergency_office,120.165,30.275\n")
RESERVES = ("code,name_zh,category,unit,quantity,safety_stock,warehouse,organisation,lon,lat\n"
            "SB-1,编织袋,3010101,条,20000,5000,滨江防汛物资仓库,water_affairs,120.198,30.222\n")
TEAMS = ("编号,名称,责任单位,专业,人数,装备,是否备勤,经度,纬度\n"
         "DW-1,滨江区防汛抢险队,water_affairs,防汛抢险,60,冲锋舟6艘,是,120.236,30.196\n")
FINDING = "排水口被垃圾堵塞"


def post(api: Api, kind: str, body: dict[str, str]) -> dict[str, Any]:
    response = api.call("office", "POST", f"/api/registers/{kind}/import", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def load_registers(api: Api) -> None:
    """The registers through the import the office uses (POST /api/registers/{kind}/import): the risk points from
    an XLSX (the Pacific row named by row and field, the four others kept), the rest from CSV."""
    data = xlsx(RISK_HEADER, RISK_ROWS)
    risks = post(api, "risk_point", {"filename": "flood.xlsx", "content_base64": base64.b64encode(data).decode()})
    assert risks["added"] == 4, risks
    assert [(p["row"], p["field"], p["code"]) for p in risks["refused"]] == [(6, "lon", "outside_china")]
    for kind, content in (("shelter", SHELTERS), ("reserve", RESERVES), ("team", TEAMS)):
        answer = post(api, kind, {"filename": f"{kind}.csv", "content": content})
        assert answer["refused"] == [], answer


def flood_with_polygon_warning() -> tuple[str, str]:
    """A drill flood in Binjiang; meteorology's red rainstorm warning, returned by the office to be redrawn as the
    polygon, reviewed and signed off: in force. (incident id, alert id)."""
    incident_id = drive.open_("flood", level="IV", location_name="滨江区浦沿街道", lat=BINJIANG[0], lon=BINJIANG[1],
                              drill=True)
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id, real_actions=True)
    with session_scope() as session:
        alert_id = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).one().id
    with session_scope() as session:
        release.return_draft(session, incident_id=incident_id, alert_id=alert_id, actor="user:office",
                             reason="画出预警区域")
    with session_scope() as session:
        release.redraft(session, incident_id=incident_id, alert_id=alert_id, actor="user:meteorology",
                        department="meteorology", polygons=[POLYGON])
    with session_scope() as session:
        release.review(session, incident_id=incident_id, alert_id=alert_id, actor="user:office")
    make_user("om_director", "department", "meteorology", positions=["bureau_director@meteorology"])
    with session_scope() as session:
        signer = session.exec(select(User).where(User.username == "om_director")).one()
        alert = release.sign(session, incident_id=incident_id, alert_id=alert_id, signer=signer)
        assert f"<polygon>{POLYGON}</polygon>" in alert.xml
    return incident_id, alert_id


def precheck_with_a_finding() -> str:
    """This season's 汛前检查: an inspection per flood risk point for its department; water affairs found W-01's
    outfall blocked, which opened its rectification (its id)."""
    prevention.run_slot("flood_precheck", utcnow())
    with session_scope() as session:
        made = session.exec(select(PreventionTask).where(PreventionTask.kind == PreventionKind.inspection)).all()
        assert sorted((t.entry_code, t.department) for t in made) == [
            ("G-01", "natural_resources"), ("W-01", "water_affairs"), ("W-02", "water_affairs"),
            ("W-03", "urban_management")]
        w1 = next(t for t in made if t.entry_code == "W-01")
        fix = prevention_service.answer_inspection(session, task_id=w1.id, actor="user:water_affairs",
                                                   hazard_found=True, finding=FINDING)
        assert fix is not None and fix.due_at is not None
        return fix.id


class Guarded:
    """A desk whose every request goes through a guard: Baton's own host passes, any other is recorded and
    refused (the page must work with no network but the server)."""

    def __init__(self, browser: Browser, base: str, username: str, problems: list[str]) -> None:  # noqa: F811
        self.own = urlsplit(base).netloc
        self.outside: list[str] = []
        self.seen: list[str] = []
        self.desk = Desk(browser, base, username, problems)
        context: BrowserContext = self.desk.context
        context.route("**/*", self._guard)
        context.on("request", lambda request: self._note(request.url))

    def _note(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            return
        self.seen.append(url)
        if parts.netloc != self.own and url not in self.outside:
            self.outside.append(url)

    def _guard(self, route: Route) -> None:
        if urlsplit(route.request.url).netloc == self.own:
            route.continue_()
        else:
            self._note(route.request.url)
            route.abort("blockedbyclient")

    def go(self, path: str) -> Page:
        return self.desk.go(path)


def features(page: Page, layer: str) -> Locator:
    return page.locator(f"#map path.map-layer-{layer}")


def toggle(page: Page, title: str) -> Locator:
    return page.locator(".leaflet-control-layers-overlays label", has_text=title).locator("input")


def popup_of(page: Page, item: Locator, layer: str) -> Locator:
    """A feature's popup, opened by a click event on the feature itself (others drawn in the same SVG may lie over
    its centre at this zoom). The popup open before is closed first and waited out: Leaflet fades a closing popup
    over a moment, and two of one layer on the page at once made the locator ambiguous (seen in a CI run)."""
    close = page.locator(".leaflet-popup-close-button")
    if close.count():
        close.first.dispatch_event("click")
    expect(page.locator(".leaflet-popup")).to_have_count(0)
    item.dispatch_event("click")
    found = page.locator(f".leaflet-popup .map-popup[data-layer='{layer}']")
    expect(found).to_be_visible()
    return found


def centre(item: Locator) -> tuple[float, float]:
    box = item.bounding_box()
    assert box is not None
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def polygons(page: Page, layer: str) -> Locator:
    """The layer's features drawn as polygons: an SVG path of straight lines, closed (a circle is drawn with arcs)."""
    return page.locator(f"#map path.map-layer-{layer}[d$='z']:not([d*='a'])")


SHOWN_AT_FIRST = ("incidents", "warning_areas", "register_risk_point", "register_shelter")


def api_counts(api: Api, name: str) -> dict[str, int]:
    """How many features of each layer `GET /api/map/layers` gives the user."""
    response = api.call(name, "GET", "/api/map/layers")
    assert response.status_code == 200, response.text
    return {layer["key"]: len(layer["data"]["features"]) for layer in response.json()["layers"]}


@pytest.fixture
def one_map_world(loopback_api: Api) -> tuple[Api, str, str, str]:
    load_registers(loopback_api)
    fix_id = precheck_with_a_finding()
    incident_id, alert_id = flood_with_polygon_warning()
    return loopback_api, incident_id, alert_id, fix_id


def test_the_done_when_world_on_one_map_in_chromium(one_map_world: tuple[Api, str, str, str],
                                                    browser: Browser) -> None:  # noqa: F811
    api, incident_id, alert_id, fix_id = one_map_world
    PASSWORDS.update({"om_office": "office-secret-1", "om_water": "water-secret-1", "om_police": "police-secret-1"})
    make_user("om_office", "office", password=PASSWORDS["om_office"])
    make_user("om_water", "department", "water_affairs", password=PASSWORDS["om_water"])
    make_user("om_police", "department", "public_security", password=PASSWORDS["om_police"])
    problems: list[str] = []

    office = Guarded(browser, api.url, "om_office", problems)
    page = office.go("/map")
    expect(page.locator("#map")).to_have_attribute("data-loaded", "1")

    # What the map opens with: the incident, its warning's areas, the risk points and the shelters.
    expect(features(page, "incidents")).to_have_count(1)
    expect(polygons(page, "warning_areas")).to_have_count(1)
    expect(features(page, "register_risk_point")).to_have_count(4)
    expect(features(page, "register_shelter")).to_have_count(2)
    for off in ("register_reserve", "register_team", "prevention"):
        expect(features(page, off)).to_have_count(0)

    # The polygon is drawn where it is: the shelter inside it on screen inside its box, the other outside.
    area = polygons(page, "warning_areas").bounding_box()
    assert area is not None
    inside_x, inside_y = centre(features(page, "register_shelter").nth(0))
    outside_x, outside_y = centre(features(page, "register_shelter").nth(1))
    assert area["x"] < inside_x < area["x"] + area["width"] and area["y"] < inside_y < area["y"] + area["height"]
    assert not (area["x"] < outside_x < area["x"] + area["width"]
                and area["y"] < outside_y < area["y"] + area["height"])
    warning = popup_of(page, polygons(page, "warning_areas"), "warning_areas")
    expect(warning).to_contain_text("暴雨红色预警")
    expect(warning.locator("a.map-popup-link")).to_have_attribute("href", f"/office/incidents/{incident_id}")

    # Popups worded for people: names and words, never the stored keys.
    risk = popup_of(page, features(page, "register_risk_point").nth(1), "register_risk_point")  # by code: W-01
    expect(risk).to_contain_text("江南大道下穿通道")
    expect(risk).to_contain_text("积水点")
    expect(risk).not_to_contain_text("waterlogging")
    shelter = popup_of(page, features(page, "register_shelter").nth(0), "register_shelter")
    expect(shelter).to_contain_text("滨江体育馆")
    expect(shelter).to_contain_text("3000")
    expect(shelter).to_contain_text("紧急避难场所")
    expect(shelter).not_to_contain_text("emergency")

    # The toggles: the warning's areas off and on again; the reserves, teams and prevention work turned on.
    toggle(page, "预警区域").uncheck()
    expect(features(page, "warning_areas")).to_have_count(0)
    expect(features(page, "incidents")).to_have_count(1)
    toggle(page, "预警区域").check()
    expect(polygons(page, "warning_areas")).to_have_count(1)
    toggle(page, "应急物资").check()
    toggle(page, "救援队伍").check()
    toggle(page, "检查与整改").check()
    expect(features(page, "register_reserve")).to_have_count(1)
    expect(features(page, "register_team")).to_have_count(1)
    # W-01's rectification, the inspections of W-02, W-03 and G-01 (W-01's was answered).
    expect(features(page, "prevention")).to_have_count(4)
    reserve = popup_of(page, features(page, "register_reserve"), "register_reserve")
    for said in ("编织袋", "3010101（工程材料与机械加工设备）", "20000", "条", "5000", "滨江防汛物资仓库"):
        expect(reserve).to_contain_text(said)
    team = popup_of(page, features(page, "register_team"), "register_team")
    for said in ("滨江区防汛抢险队", "60", "是"):
        expect(team).to_contain_text(said)
    expect(team).not_to_contain_text("true")
    # A shelter outside the warning's polygon is on the map all the same, with its occupancy.
    outside = popup_of(page, features(page, "register_shelter").nth(1), "register_shelter")
    for said in ("西湖文化广场", "短期避难场所", "800", "否"):
        expect(outside).to_contain_text(said)
    expect(page.locator("#map-status")).to_contain_text("检查与整改 4")

    # A phone: the same map, nothing wider than the screen, the layer control folded and inside it when opened.
    office.desk.shoot("one-map")
    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("#map")).to_have_attribute("data-loaded", "1")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
    box = page.locator("#map").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box
    expect(polygons(page, "warning_areas")).to_have_count(1)
    expect(features(page, "register_shelter")).to_have_count(2)
    control = page.locator(".leaflet-control-layers")
    expect(control).not_to_have_class(re.compile(r"leaflet-control-layers-expanded"))
    page.mouse.move(*centre(page.locator(".leaflet-control-layers-toggle")))  # the pointer over it opens it
    expect(control).to_have_class(re.compile(r"leaflet-control-layers-expanded"))
    opened = control.bounding_box()
    assert opened is not None and opened["x"] >= 0 and opened["x"] + opened["width"] <= PHONE["width"], opened
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 1
    toggle(page, "应急物资").check()
    reserve = popup_of(page, features(page, "register_reserve"), "register_reserve")
    expect(reserve).to_contain_text("滨江防汛物资仓库")
    # Leaflet pans the map to bring an opened popup inside it, with an animation: measure once it has settled.
    deadline = time.monotonic() + 10
    while True:
        shown = page.locator(".leaflet-popup").bounding_box()
        fits = shown is not None and shown["x"] >= 0 and shown["x"] + shown["width"] <= PHONE["width"]
        if fits or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    assert fits, shown

    # Water affairs sees the registers everyone reads and its own prevention work, no other department's; what
    # its map draws is what the API gives it.
    water = Guarded(browser, api.url, "om_water", problems)
    page = water.go("/map")
    expect(page.locator("#map")).to_have_attribute("data-loaded", "1")
    for layer, count in api_counts(api, "water_affairs").items():
        if layer in SHOWN_AT_FIRST:
            expect(features(page, layer)).to_have_count(count)
    toggle(page, "检查与整改").check()
    expect(features(page, "prevention")).to_have_count(2)  # W-01's rectification and W-02's inspection
    expect(features(page, "register_risk_point")).to_have_count(4)
    fix = popup_of(page, page.locator("#map path.map-layer-prevention").nth(0), "prevention")
    expect(fix.locator("a.map-popup-link")).to_have_attribute("href", f"/prevention/tasks/{fix_id}")
    expect(fix).to_contain_text(FINDING)
    assert "文三路易涝点" not in page.locator(".leaflet-popup").inner_text()

    # Public security is not on the flood: neither the incident nor its warning, and no prevention work.
    police = Guarded(browser, api.url, "om_police", problems)
    page = police.go("/map")
    expect(page.locator("#map")).to_have_attribute("data-loaded", "1")
    expect(features(page, "incidents")).to_have_count(0)
    expect(features(page, "warning_areas")).to_have_count(0)
    toggle(page, "检查与整改").check()
    expect(features(page, "prevention")).to_have_count(0)
    expect(features(page, "register_shelter")).to_have_count(2)
    assert alert_id not in page.content()

    # No host but Baton's own was asked for anything, and the guard saw the page's own requests.
    for guarded in (office, water, police):
        assert guarded.outside == [], guarded.outside
        assert any(u.endswith("/api/map/layers") for u in guarded.seen), guarded.seen
        assert any("/static/vendor/leaflet/leaflet.js" in u for u in guarded.seen), guarded.seen
    assert problems == [], problems


def test_the_guard_records_and_refuses_a_request_to_another_host(loopback_api: Api,
                                                                 browser: Browser) -> None:  # noqa: F811
    """The request guard itself: a request to another host is recorded and refused, never sent."""
    PASSWORDS["om_office"] = "office-secret-1"
    make_user("om_office", "office", password=PASSWORDS["om_office"])
    guarded = Guarded(browser, loopback_api.url, "om_office", [])
    page = guarded.desk.context.new_page()
    with pytest.raises(Exception, match="ERR_BLOCKED_BY_CLIENT"):
        page.goto("http://tiles.example.invalid/1/2/3.png")
    assert guarded.outside == ["http://tiles.example.invalid/1/2/3.png"]
