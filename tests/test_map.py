"""The one map (一张图): its layers for each reader through `GET /api/map/layers` (in process), and the page in
real Chromium at 1280 and 390 px: markers and areas drawn, a layer toggled off, a department's map without what it
may not read, a task's location field filled by a click on its picker map, and the prevention campaigns' open
inspections and rectifications (a finding written to hurt shown as the text it is).

The world: a drill flood in Binjiang (滨江区) whose red rainstorm warning was drafted, reviewed and signed off (a
5 km circle in force), and a level III epidemic in Xihu whose CDC case report gives the first case's location,
shared (restricted) with the health commission, the office and three others, not with education, which is on the
incident (told to stand schools by) and so sees the incident but not the place.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Dialog, expect
from sqlmodel import select

from core.incidents.models import DepartmentTask
from core.learning.simulation import sample_outputs
from core.maps import incident_layers
from core.plans.store import plan_for_version, registry
from core.plans.wording import Wording
from core.platform.clock import as_utc, utcnow
from core.platform.db import session_scope
from core.prevention import service as prevention_service
from core.registers.columns import columns
from core.registers.files import read_rows
from core.registers.importing import import_rows
from core.registers.models import RegisterKind, RiskPoint
from core.sharing import warnings as release
from core.sharing.models import CapAlert
from core.sharing.notice import zone
from core.users.models import User
from flows import prevention
from tests import engine_driver as drive
from tests.fixtures.api import Api, ApiWith, issued_token, make_user, page_client, serve_api
from tests.fixtures.clock import Clock
from tests.fixtures.database import clear_settings_caches
from tests.test_browser import PASSWORDS, PHONE, Desk, browser  # noqa: F401  (the browser fixture)
from tests.test_prevention import FLOOD_POINTS, add_points
from tests.test_prevention import tasks as prevention_tasks
from tests.test_registers import RESIDENTS

ROOT = Path(__file__).resolve().parent.parent
BINJIANG = (30.2084, 120.2120)
FIRST_CASE: dict[str, Any] = {"name": "文三路某小区", "lat": 30.2741, "lon": 120.1551}


@dataclass(frozen=True)
class World:
    flood: str
    epidemic: str
    alert: str


def flood_warning() -> tuple[str, str]:
    """A flood drill at Binjiang whose red rainstorm warning, valid for six hours, is released (reviewed and signed):
    the incident's and the warning's ids."""
    valid_until = (utcnow() + timedelta(hours=6)).astimezone(zone()).replace(second=0, microsecond=0)
    flood = drive.open_("flood", level="IV", location_name="滨江区浦沿街道", lat=BINJIANG[0], lon=BINJIANG[1],
                        drill=True)
    drive.step(flood)
    drive.complete_step(flood, "rainstorm_forecast", {"rainfall_1h": 80, "rainfall_24h": 200, "warning_colour": "red",
                                                      "valid_until": valid_until.isoformat()})
    drive.step(flood, real_actions=True)
    signer = drive.person("met_director", "bureau_director@meteorology", role="department", department="meteorology")
    with session_scope() as session:
        alert = session.exec(select(CapAlert).where(CapAlert.incident_id == flood)).one()
        release.review(session, incident_id=flood, alert_id=alert.id, actor="user:office")
        release.sign(session, incident_id=flood, alert_id=alert.id, signer=signer)
        return flood, alert.id


def build_world() -> World:
    """The two incidents, the flood's warning in force and the epidemic's first case reported."""
    flood, alert_id = flood_warning()
    epidemic = drive.open_("epidemic", level="III", location_name="西湖区", lat=30.2741, lon=120.1551)
    drive.step(epidemic)
    with session_scope() as session:
        plan = plan_for_version(session, drive.incident(epidemic).plan_version_id)
        report = sample_outputs(plan.step("case_report"), random.Random(7))
    drive.complete_step(epidemic, "case_report", {**report, "first_case_location": FIRST_CASE})
    for _ in range(6):  # on through the warning stage until education is told to stand the schools by
        drive.step(epidemic)
        with session_scope() as session:
            if session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == epidemic,
                                                         DepartmentTask.department == "education")).first():
                break
        for key in sorted(drive.open_tasks(epidemic)):
            if key != "lift_warning":
                drive.complete_step(epidemic, key)
    return World(flood=flood, epidemic=epidemic, alert=alert_id)


def layers(api: Api, name: str | None) -> dict[str, list[dict[str, Any]]]:
    response = api.call(name, "GET", "/api/map/layers")
    assert response.status_code == 200, response.text
    return {layer["key"]: layer["data"]["features"] for layer in response.json()["layers"]}


REGISTER_LAYERS = ["register_risk_point", "register_shelter", "register_reserve", "register_team",
                   "register_expert", "register_vulnerable_resident", "register_area"]
SHELTERS = ("code,name_zh,kind,capacity,occupancy,organisation,lon,lat\n"
            "BN-1,滨江公园避难场所,emergency,800,120,emergency_office,120.21,30.21\n")


def test_the_registers_are_on_the_map_with_their_own_scope(api: Api) -> None:
    """Shelters (with occupancy) reach every reader; vulnerable residents only their community and the office,
    on the map as in the registers (`core.registers.service.readable`)."""
    make_user("community_grid", "department", "community")
    api.tokens["community_grid"] = issued_token("community_grid")
    for kind, content in (("shelter", SHELTERS), ("vulnerable_resident", RESIDENTS)):
        imported = api.call("office", "POST", f"/api/registers/{kind}/import",
                            json={"filename": f"{kind}.csv", "content": content})
        assert imported.status_code == 200 and not imported.json()["refused"], imported.text
    office = layers(api, "office")
    [shelter] = office["register_shelter"]
    assert shelter["geometry"] == {"type": "Point", "coordinates": [120.21, 30.21]}
    assert shelter["properties"]["name"]["zh"] == "滨江公园避难场所"
    rows = {row[0]["en"]: row[1] for row in shelter["properties"]["rows"]}
    assert rows["Capacity"] == 800 and rows["Occupancy"] == 120
    assert {f["properties"]["code"] for f in office["register_vulnerable_resident"]} == {"R-1", "R-2"}
    assert len(layers(api, "community_grid")["register_vulnerable_resident"]) == 2
    for outsider in ("meteorology", "manager"):
        theirs = layers(api, outsider)
        assert theirs["register_vulnerable_resident"] == [] and len(theirs["register_shelter"]) == 1, outsider
        assert "李阿婆" not in api.call(outsider, "GET", "/api/map/layers").text


def test_a_register_popup_names_its_stored_choices_in_both_languages(api: Api) -> None:
    """A risk point's kind, a shelter's kind and a resident's category are stored as keys (waterlogging, short_term,
    elderly_alone): the popup names them; a reserve's GB/T 38565 code comes with its class's name."""
    files = {"risk_point": ("code,name_zh,kind,organisation,lon,lat\n"
                            "W-1,江南大道下穿通道,积水点,water_affairs,120.2,30.2\n"),
             "shelter": SHELTERS.replace(",emergency,", ",short_term,"),
             "reserve": ("code,name_zh,category,unit,quantity,warehouse,organisation,lon,lat\n"
                         "SB-1,编织袋,3010101,条,20000,防汛物资仓库,water_affairs,120.2,30.22\n"),
             "vulnerable_resident": RESIDENTS}
    for kind, content in files.items():
        imported = api.call("office", "POST", f"/api/registers/{kind}/import",
                            json={"filename": f"{kind}.csv", "content": content})
        assert imported.status_code == 200 and not imported.json()["refused"], imported.text
    office = layers(api, "office")
    assert facts(office["register_risk_point"][0])["Type"] == {"zh": "积水点", "en": "waterlogging point"}
    assert facts(office["register_shelter"][0])["Type"] == {"zh": "短期避难场所", "en": "short-term shelter"}
    assert facts(office["register_reserve"][0])["Category code"] == {
        "zh": "3010101（工程材料与机械加工设备）", "en": "3010101 (engineering materials and machinery)"}
    residents = {f["properties"]["code"]: facts(f)["Category"] for f in office["register_vulnerable_resident"]}
    assert residents == {"R-1": {"zh": "独居老人", "en": "elderly living alone"},
                         "R-2": {"zh": "失能卧床", "en": "bedridden"}}


def test_a_register_popup_labels_its_rows_as_people_read_them(api: Api) -> None:
    """Each row of a register's popup is named by its column's own names (core.registers.columns), in English as in
    Chinese: "People at risk", "Safety stock", never the stored key lower-cased ("people at risk")."""
    files = {"risk_point": ("code,name_zh,kind,level,people_at_risk,organisation,lon,lat\n"
                            "W-1,江南大道下穿通道,积水点,较大,120,water_affairs,120.2,30.2\n"),
             "reserve": ("code,name_zh,category,unit,quantity,safety_stock,warehouse,organisation,lon,lat\n"
                         "SB-1,编织袋,3010101,条,20000,5000,防汛物资仓库,water_affairs,120.2,30.22\n")}
    for kind, content in files.items():
        imported = api.call("office", "POST", f"/api/registers/{kind}/import",
                            json={"filename": f"{kind}.csv", "content": content})
        assert imported.status_code == 200 and not imported.json()["refused"], imported.text
    office = layers(api, "office")
    [point] = office["register_risk_point"]
    assert [label for label, _ in point["properties"]["rows"]] == [
        {"zh": "类型", "en": "Type"}, {"zh": "等级", "en": "Risk level"}, {"zh": "威胁人数", "en": "People at risk"}]
    assert facts(point)["People at risk"] == 120
    [reserve] = office["register_reserve"]
    assert [label["en"] for label, _ in reserve["properties"]["rows"]] == [
        "Category code", "Unit", "Quantity", "Safety stock", "Warehouse"]
    assert facts(reserve)["Safety stock"] == 5000
    # Every column of every register has English of its own, written as a label is (not its key re-spelt).
    for kind in RegisterKind:
        for column in columns(kind):
            assert column.en[:1].isupper() and column.en != column.key.replace("_", " "), (kind, column)


def test_a_warning_popup_says_its_expiry_in_the_citys_time_as_every_popup_does(
        baton: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning's expiry is worded by Baton in the city's time zone (Wording.when, as the inspection and
    rectification popups word their due time), not left to the time zone of the browser that opens the map."""
    _, alert_id = flood_warning()
    with session_scope() as session:
        alert = session.get(CapAlert, alert_id)
        assert alert is not None and alert.expires_at is not None
        expires = as_utc(alert.expires_at)
        [area] = incident_layers.warning_areas(session, None)
    beijing = expires.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M")
    assert area["properties"]["expires"] == {"zh": beijing, "en": beijing}
    assert beijing != expires.strftime("%Y-%m-%d %H:%M")  # eight hours on from UTC: not the server's clock either
    # Another city's configured zone words it there.
    monkeypatch.setenv("BATON_TIMEZONE", "Asia/Kathmandu")
    clear_settings_caches()
    with session_scope() as session:
        [area] = incident_layers.warning_areas(session, None)
    kathmandu = expires.astimezone(ZoneInfo("Asia/Kathmandu")).strftime("%Y-%m-%d %H:%M")
    assert area["properties"]["expires"]["en"] == kathmandu and kathmandu != beijing
    # The page shows what Baton worded and formats no time of its own.
    script = (ROOT / "api" / "static" / "baton-map.js").read_text(encoding="utf-8")
    assert 'row(list, label("expires"), text(p.expires, lang))' in script
    assert "toLocaleString" not in script and "new Date(" not in script


@pytest.fixture
def world(baton: str) -> World:
    return build_world()


def test_the_map_layers_follow_each_readers_scope(api: Api, world: World) -> None:
    for name, department in (("cdc", "cdc"), ("education", "education"), ("health", "health_commission")):
        make_user(name, "department", department)
        api.tokens[name] = issued_token(name)

    # Nobody logged in gets nothing, in the API's words.
    response = api.call(None, "GET", "/api/map/layers")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"
    assert api.call(None, "GET", "/api/map/boundaries").status_code == 401

    # The office sees both incidents, the warning's 5 km circle in force and the first case's place.
    office = layers(api, "office")
    assert list(office) == ["warning_areas", "incidents", "task_locations", *REGISTER_LAYERS, "prevention"]
    assert {f["properties"]["id"] for f in office["incidents"]} == {world.flood, world.epidemic}
    flood = next(f for f in office["incidents"] if f["properties"]["id"] == world.flood)
    assert flood["geometry"] == {"type": "Point", "coordinates": [BINJIANG[1], BINJIANG[0]]}  # GeoJSON: lon, lat
    [area] = office["warning_areas"]
    assert area["properties"]["id"] == world.alert and area["properties"]["colour"] == "red"
    assert area["properties"]["radius_m"] == 5000 and area["properties"]["exercise"] is True  # a drill's warning
    assert "暴雨红色预警" in area["properties"]["headline"]["zh"]
    [place] = office["task_locations"]
    assert place["geometry"]["coordinates"] == [FIRST_CASE["lon"], FIRST_CASE["lat"]]
    assert place["properties"]["place"] == FIRST_CASE["name"] and place["properties"]["department"] == "cdc"
    assert layers(api, "manager") == office

    # The CDC reported it and the health commission is named in its share: both see the place, not the flood.
    for name in ("cdc", "health"):
        mine = layers(api, name)
        assert [f["properties"]["id"] for f in mine["incidents"]] == [world.epidemic], name
        assert mine["warning_areas"] == [] and len(mine["task_locations"]) == 1, name
    # Education is on the epidemic but not named in the restricted share: the incident, never the place.
    education = layers(api, "education")
    assert [f["properties"]["id"] for f in education["incidents"]] == [world.epidemic]
    assert education["task_locations"] == []
    assert FIRST_CASE["name"] not in api.call("education", "GET", "/api/map/layers").text
    # Meteorology is on the flood only: its warning area, nothing of the epidemic.
    meteorology = layers(api, "meteorology")
    assert [f["properties"]["id"] for f in meteorology["incidents"]] == [world.flood]
    assert len(meteorology["warning_areas"]) == 1 and meteorology["task_locations"] == []

    # A cancelled warning is no longer in force: its area leaves the map.
    with session_scope() as session:
        from core.users.models import User

        office_user = session.exec(select(User).where(User.username == "office")).one()
        release.cancel(session, incident_id=world.flood, user=office_user, key="map-test", reason="雨停")
    assert layers(api, "office")["warning_areas"] == []

    # The base layer: Hangzhou's districts, Binjiang among them, holding the demo incident's point.
    base = api.call("meteorology", "GET", "/api/map/boundaries").json()
    names = {f["properties"]["name"] for f in base["features"]}
    assert len(names) == 13 and {"滨江区", "西湖区", "萧山区"} <= names
    binjiang = next(f for f in base["features"] if f["properties"]["name"] == "滨江区")
    assert any(_inside(BINJIANG, polygon[0]) for polygon in binjiang["geometry"]["coordinates"])


def _inside(point: tuple[float, float], ring: list[list[float]]) -> bool:
    """Ray casting: whether (lat, lon) is inside a GeoJSON ring of [lon, lat]."""
    lat, lon = point
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def test_a_city_tile_server_is_used_and_allowed_by_the_pages_policy(api_with: ApiWith) -> None:
    template = "https://tiles.hangzhou.example.gov.cn/{z}/{x}/{y}.png"
    make_user("desk", "department", "meteorology")
    with api_with({"BATON_MAP_TILE_URL": template}) as server, page_client(server, "desk") as client:
        response = client.get("/map")
        policy = response.headers["content-security-policy"]
    assert response.status_code == 200
    assert f'data-tiles="{template}"' in response.text
    assert "img-src 'self' data: https://tiles.hangzhou.example.gov.cn;" in policy
    assert re.search(r'src="/static/vendor/leaflet/leaflet\.js"', response.text)


@pytest.mark.chromium
def test_the_map_and_the_location_picker_in_chromium(world: World, browser: Browser) -> None:  # noqa: F811
    """The office's map at 1280 and 390 px (markers, the warning's circle, the districts; a layer toggled off),
    education's map without the first case's place, and fire & rescue's alarm form whose address is set by a
    click on its map."""
    fire = drive.open_("highrise_fire", level="IV", location_name="滨江区江南大道", lat=30.2081, lon=120.2105)
    drive.step(fire)
    PASSWORDS.update({"office1": "office-secret-1", "edu1": "edu-secret-1", "fire1": "fire-secret-1"})
    make_user("office1", "office", password=PASSWORDS["office1"])
    make_user("edu1", "department", "education", password=PASSWORDS["edu1"])
    make_user("fire1", "department", "fire_rescue", password=PASSWORDS["fire1"])
    alarm = drive.open_tasks(fire)["fire_alarm"].id
    make_user("community1", "department", "community")
    with session_scope() as session:  # a shelter for everyone, two residents for their community and the office
        office_user = session.exec(select(User).where(User.username == "office1")).one()
        for kind, content in ((RegisterKind.shelter, SHELTERS.replace("120.21,30.21", "120.17,30.19")),
                              (RegisterKind.vulnerable_resident, RESIDENTS)):
            data = content.encode()
            imported = import_rows(session, kind=kind, rows=read_rows(kind, f"{kind.value}.csv", data),
                                   source=f"{kind.value}.csv", data=data, user=office_user)
            assert not imported.problems, imported.problems
    with session_scope() as session:
        alert = session.get(CapAlert, world.alert)
        assert alert is not None
        expiry = Wording("zh").when(alert.expires_at)
    problems: list[str] = []
    with serve_api() as server:
        office = Desk(browser, server.url, "office1", problems)
        page = office.go("/map")
        expect(page.locator("nav.main-nav a[href='/map']")).to_have_attribute("aria-current", "page")
        expect(page.locator("#map")).to_have_attribute("data-loaded", "1")
        expect(page.locator("#map path.map-boundary")).to_have_count(13)
        expect(page.locator("#map path.map-layer-incidents")).to_have_count(3)
        expect(page.locator("#map path.map-layer-warning_areas")).to_have_count(1)
        expect(page.locator("#map path.map-layer-task_locations")).to_have_count(1)
        expect(page.locator("#map-status")).to_contain_text("事件 3")
        # A marker says what it is and links to the incident's screen.
        # A click event on the marker itself (a shelter drawn in the same SVG may lie over its centre at this zoom).
        page.locator("#map path.map-layer-task_locations").dispatch_event("click")
        popup = page.locator(".leaflet-popup .map-popup[data-layer='task_locations']")
        expect(popup).to_contain_text(FIRST_CASE["name"])
        expect(popup.locator("a.map-popup-link")).to_have_attribute("href", f"/office/incidents/{world.epidemic}")
        # The warning's expiry as Baton words it in the city's time (as an inspection's due time), not the browser's.
        page.locator("#map path.map-layer-warning_areas").dispatch_event("click")
        expect(page.locator(".leaflet-popup .map-popup[data-layer='warning_areas']")).to_contain_text(expiry)
        # The layer control's toggle hides a layer and shows it again.
        toggle = page.locator(".leaflet-control-layers-overlays label", has_text="任务位置").locator("input")
        toggle.uncheck()
        expect(page.locator("#map path.map-layer-task_locations")).to_have_count(0)
        expect(page.locator("#map path.map-layer-incidents")).to_have_count(3)
        toggle.check()
        expect(page.locator("#map path.map-layer-task_locations")).to_have_count(1)
        # The registers: shelters shown at once, vulnerable residents (the office reads them) when toggled on.
        expect(page.locator("#map path.map-layer-register_shelter")).to_have_count(1)
        expect(page.locator("#map path.map-layer-register_vulnerable_resident")).to_have_count(0)
        page.locator(".leaflet-control-layers-overlays label", has_text="重点人群").locator("input").check()
        expect(page.locator("#map path.map-layer-register_vulnerable_resident")).to_have_count(2)
        office.shoot("map")  # 1280 and 390 px; on the phone nothing overflows
        page.set_viewport_size(PHONE)
        page.reload()
        expect(page.locator("#map")).to_have_attribute("data-loaded", "1")
        box = page.locator("#map").bounding_box()
        assert box is not None and box["width"] <= PHONE["width"] and box["height"] >= 300, box
        expect(page.locator("#map path.map-layer-warning_areas")).to_have_count(1)
        expect(page.locator(".leaflet-control-layers")).to_have_class(re.compile(r"leaflet-control-layers"))

        # Education is on the epidemic, not on the flood or the fire, and not named in the first case's share.
        education = Desk(browser, server.url, "edu1", problems)
        page = education.go("/map")
        expect(page.locator("#map")).to_have_attribute("data-loaded", "1")
        expect(page.locator("#map path.map-layer-incidents")).to_have_count(1)
        expect(page.locator("#map path.map-layer-warning_areas")).to_have_count(0)
        expect(page.locator("#map path.map-layer-task_locations")).to_have_count(0)
        expect(page.locator("#map path.map-layer-register_shelter")).to_have_count(1)
        page.locator(".leaflet-control-layers-overlays label", has_text="重点人群").locator("input").check()
        expect(page.locator("#map path.map-layer-register_vulnerable_resident")).to_have_count(0)
        assert "李阿婆" not in page.content()

        # Fire & rescue sets the alarm's address with a click on the picker map under the field.
        firefighter = Desk(browser, server.url, "fire1", problems)
        page = firefighter.go(f"/tasks/{alarm}")
        picker = page.locator("#f_address_map")
        expect(picker).to_be_visible()
        expect(picker).to_have_attribute("data-loaded", "1")
        expect(page.locator("#f_address_lat")).to_have_value("")
        picker.click(position={"x": 120, "y": 100})
        expect(page.locator("#f_address_lat")).to_have_value(re.compile(r"^\d+\.\d{6}$"))
        lat, lon = (float(page.locator(f"#f_address_{p}").input_value()) for p in ("lat", "lon"))
        # Near the incident's place, where the picker opened (zoom 13: the box is a few kilometres wide).
        assert abs(lat - 30.2081) < 0.05 and abs(lon - 120.2105) < 0.05, (lat, lon)
        expect(page.locator("#f_address_map path.map-pick")).to_have_count(1)
        firefighter.shoot("task-location-picker")
    assert problems == [], problems


# -- prevention work: the campaigns' open inspections and rectifications -------------------------------------------

PREVENTION_PLACES = {"W-001": (30.21, 120.21), "W-002": (30.25, 120.16), "W-003": (30.28, 120.13),
                     "G-001": (30.10, 120.05), "C-001": (30.30, 120.30)}
FINDING = '<img src=x onerror="alert(1)"><script>alert(2)</script> & 排水口堵塞 \'"'
# What a popup must never show: the stored keys and values behind the words.
RAW = {"inspection", "rectification", "assigned", "escalated", "completed", "flood_precheck", "water_affairs",
       "urban_management", "natural_resources", "emergency_office", "risk_point", "True", "False", "None", "null"}
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}|[+-]\d{2}:\d{2}$|Z$")


def prevention_world() -> str:
    """The season's 汛前检查 on four flood risk points, each at a place of its own (and a chemical plant it does not
    cover); water affairs found W-001's outfall blocked, in words written to hurt, which opened its rectification
    (returned)."""
    ids = add_points(FLOOD_POINTS)
    with session_scope() as session:
        for code, (lat, lon) in PREVENTION_PLACES.items():
            row = session.get(RiskPoint, ids[code])
            assert row is not None
            row.lat, row.lon = lat, lon
            session.add(row)
    prevention.run_slot("flood_precheck", utcnow())
    by_code = {t.entry_code: t for t in prevention_tasks()}
    with session_scope() as session:
        fix = prevention_service.answer_inspection(session, task_id=by_code["W-001"].id, actor="user:water_affairs",
                                                   hazard_found=True, finding=FINDING)
        assert fix is not None
        return fix.id


def facts(feature: dict[str, Any]) -> dict[str, Any]:
    """A popup's rows by their English label."""
    return {label["en"]: value for label, value in feature["properties"]["rows"]}


def leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def renew_tokens(api: Api) -> None:
    """Tokens last hours: after the clock has moved on days, each user signs in again."""
    for name in api.tokens:
        api.tokens[name] = issued_token(name)


def test_prevention_work_is_on_the_map_where_its_point_is_for_its_own_department_worded_for_people(
        api: Api, clock: Clock) -> None:
    make_user("urban", "department", "urban_management")
    api.tokens["urban"] = issued_token("urban")
    fix_id = prevention_world()

    response = api.call("office", "GET", "/api/map/layers")
    [layer] = [item for item in response.json()["layers"] if item["key"] == "prevention"]
    assert layer["title"] == {"zh": "检查与整改", "en": "Inspections and rectifications"} and layer["shown"] is False
    office = layers(api, "office")["prevention"]
    # W-001's inspection was answered: its rectification is open in its place; the other three await inspection.
    # The chemical plant is not the 汛前检查's.
    assert [f["properties"]["code"] for f in office] == ["W-001", "G-001", "W-002", "W-003"]  # soonest due first
    by_code = {f["properties"]["code"]: f for f in office}
    for code, feature in by_code.items():
        lat, lon = PREVENTION_PLACES[code]
        assert feature["geometry"] == {"type": "Point", "coordinates": [lon, lat]}, code
    fix = by_code["W-001"]["properties"]
    assert fix["id"] == fix_id and fix["url"] == f"/prevention/tasks/{fix_id}"
    assert fix["name"] == {"zh": "W-001号积水点", "en": "Point W-001"}
    water = registry().department("water_affairs")
    assert water is not None
    rows = facts(by_code["W-001"])
    assert rows["Task"] == {"zh": "汛前检查 · 整改", "en": "Pre-flood-season inspection · rectification"}
    assert rows["Status"] == {"zh": "待完成", "en": "Due"} and fix["overdue"] is False
    assert rows["Responsible"] == water.name.model_dump() and rows["Code"] == "W-001"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", rows["Due"]["zh"]), rows["Due"]
    # The finding is plain data: the very string the department wrote, neither escaped nor taken apart.
    assert rows["Hazard found"] == FINDING
    assert "&lt;" not in response.text and "\\u003c" not in response.text
    assert facts(by_code["W-002"])["Task"] == {"zh": "汛前检查 · 检查",
                                               "en": "Pre-flood-season inspection · inspection"}
    assert "Hazard found" not in facts(by_code["W-002"])
    assert layers(api, "manager")["prevention"] == office

    # A department sees its own prevention points, not another's; a department with none sees none.
    assert sorted(f["properties"]["code"] for f in layers(api, "water_affairs")["prevention"]) == ["W-001", "W-002"]
    assert [f["properties"]["code"] for f in layers(api, "urban")["prevention"]] == ["W-003"]
    assert layers(api, "public_security")["prevention"] == []
    assert "W-003号积水点" not in api.call("water_affairs", "GET", "/api/map/layers").text

    # Sixteen days on, the rectification (15 days) is overdue and marked so; the inspections (30 days) are not yet.
    clock.advance(days=16)
    renew_tokens(api)
    by_code = {f["properties"]["code"]: f for f in layers(api, "office")["prevention"]}
    assert facts(by_code["W-001"])["Status"] == {"zh": "已逾期", "en": "Overdue"}
    assert by_code["W-001"]["properties"]["overdue"] is True and by_code["W-001"]["properties"]["colour"]
    assert facts(by_code["W-002"])["Status"] == {"zh": "待完成", "en": "Due"}
    assert "colour" not in by_code["W-002"]["properties"]
    # A month on, the unanswered inspections are overdue too, before and after the sweep escalates them.
    clock.advance(days=15)
    renew_tokens(api)
    late = layers(api, "water_affairs")["prevention"]
    assert [(f["properties"]["code"], f["properties"]["overdue"]) for f in late] == [("W-001", True), ("W-002", True)]
    with session_scope() as session:
        assert len(prevention_service.sweep(session).escalated) == 4
    escalated = {f["properties"]["code"]: f for f in layers(api, "water_affairs")["prevention"]}
    inspection = facts(escalated["W-002"])
    assert inspection["Status"] == {"zh": "已逾期", "en": "Overdue"}
    office_name = registry().department("emergency_office")
    assert office_name is not None and inspection["Escalated to"] == office_name.name.model_dump()

    # Worded for people: no stored key, Python value or ISO time stamp in any row.
    for feature in layers(api, "office")["prevention"]:
        for leaf in leaves(feature["properties"]["rows"]):
            assert isinstance(leaf, str) and leaf, feature
            assert leaf not in RAW and not ISO.search(leaf), (leaf, feature["properties"]["code"])


@pytest.mark.chromium
def test_prevention_work_on_the_map_in_chromium_shows_a_hostile_finding_as_text(
        baton: str, clock: Clock, browser: Browser) -> None:  # noqa: F811
    """The office turns the prevention layer on: the overdue rectification is drawn in the overdue colour, its
    popup shows the finding as the text it is (no element made of it, no script run) and links to its page."""
    fix_id = prevention_world()
    clock.advance(days=16)  # the rectification is overdue, the inspections not yet
    PASSWORDS["office1"] = "office-secret-1"
    make_user("office1", "office", password=PASSWORDS["office1"])
    problems: list[str] = []
    with serve_api() as server:
        office = Desk(browser, server.url, "office1", problems)
        page = office.go("/map")

        def dialog(opened: Dialog) -> None:
            problems.append(f"a dialog: {opened.message}")
            opened.dismiss()

        page.on("dialog", dialog)
        expect(page.locator("#map")).to_have_attribute("data-loaded", "1")
        expect(page.locator("#map path.map-layer-prevention")).to_have_count(0)  # off when the map opens
        page.locator(".leaflet-control-layers-overlays label", has_text="检查与整改").locator("input").check()
        expect(page.locator("#map path.map-layer-prevention")).to_have_count(4)
        overdue = page.locator("#map path.map-layer-prevention[fill='#c62828']")
        expect(overdue).to_have_count(1)
        overdue.dispatch_event("click")
        popup = page.locator(".leaflet-popup .map-popup[data-layer='prevention']")
        expect(popup).to_contain_text(FINDING)
        expect(popup).to_contain_text("已逾期")
        expect(popup.locator("img, script")).to_have_count(0)
        expect(popup.locator("a.map-popup-link")).to_have_attribute("href", f"/prevention/tasks/{fix_id}")
        page.wait_for_timeout(300)  # a script made of the finding would have run by now
    assert problems == [], problems
