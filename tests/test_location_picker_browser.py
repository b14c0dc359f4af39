"""A location field takes a point on a map as well as text, in real Chromium: the office's open-incident form, the
duty desk's event record sheet and a returned sheet's amend form each show the task form's picker
(pages/_location.html) under their latitude and longitude, a click on its small map fills both with numbers inside
the city, typing still works, and what the forms post (`lat`, `lon`) reaches the incident and the sheet as
before. No tile server is set and every request for another host is refused: the map draws the shipped district
boundaries from Baton's own API. No console error (a Content-Security-Policy violation is one); without script
the map's box stays hidden and the typed fields work alone. Screenshots go to /tmp/baton-shots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Position, Route, expect
from sqlmodel import select

from core.desk import sheets
from core.desk.models import EventSheet
from core.incidents.models import Incident
from core.maps import layers
from core.platform.db import session_scope
from core.users.models import User
from tests.fixtures.api import make_user, serve_api
from tests.test_browser import PASSWORDS, Desk, browser  # noqa: F401  (the browser fixture)

pytestmark = pytest.mark.chromium

LEADER_REF = "duty_leader@emergency_office"
COORDINATE = re.compile(r"^-?\d+\.\d{6}$")


def _points(coordinates: Any) -> Iterator[tuple[float, float]]:
    if isinstance(coordinates[0], (int, float)):
        yield float(coordinates[0]), float(coordinates[1])
        return
    for part in coordinates:
        yield from _points(part)


def city_box() -> tuple[float, float, float, float]:
    """The shipped district boundaries' extent: (south, west, north, east)."""
    points = [p for f in layers.boundaries()["features"] for p in _points(f["geometry"]["coordinates"])]
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return min(lats), min(lons), max(lats), max(lons)


def guard(desk: Desk, outside: list[str]) -> None:
    """Every request of this desk's browser to a host but Baton's own is recorded and refused."""
    own = urlsplit(desk.base).netloc

    def route(r: Route) -> None:
        parts = urlsplit(r.request.url)
        if parts.scheme in ("data", "blob", "about") or parts.netloc == own:
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    desk.context.route("**/*", route)


def pick(page: Page, name: str, lat_id: str, lon_id: str, box: tuple[float, float, float, float],
         position: Position | None = None) -> tuple[float, float]:
    """A click on picker `name`'s map (its centre unless `position`): the latitude and longitude inputs hold the
    point, six decimals each, inside the city; the picker's marker is drawn there."""
    picker = page.locator(f"#{name}_map")
    expect(page.locator(f"#{name}_pick")).to_be_visible()
    expect(picker).to_be_visible()
    expect(picker).to_have_attribute("data-loaded", "1")
    expect(picker.locator("path.map-boundary").first).to_be_attached()  # the shipped boundaries, no tiles
    expect(page.locator(f"#{name}_pick_hint")).to_be_visible()
    before = page.locator(f"#{lat_id}").input_value(), page.locator(f"#{lon_id}").input_value()
    picked = picker.get_attribute("data-picked")
    if position is None:
        size = picker.bounding_box()
        assert size is not None
        position = {"x": size["width"] / 2, "y": size["height"] / 2}
    picker.click(position=position)  # away from the zoom buttons (top left)
    if picked is None:
        expect(picker).to_have_attribute("data-picked", re.compile(r"."))
    else:
        expect(picker).not_to_have_attribute("data-picked", picked)
    expect(page.locator(f"#{lat_id}")).to_have_value(COORDINATE)
    expect(page.locator(f"#{lon_id}")).to_have_value(COORDINATE)
    after = page.locator(f"#{lat_id}").input_value(), page.locator(f"#{lon_id}").input_value()
    assert after != before, after
    lat, lon = float(after[0]), float(after[1])
    south, west, north, east = box
    assert south - 0.05 <= lat <= north + 0.05 and west - 0.05 <= lon <= east + 0.05, (lat, lon, box)
    expect(picker).to_have_attribute("data-picked", ",".join(after))
    expect(picker.locator("path.map-pick")).to_have_count(1)
    return lat, lon


def test_the_office_and_the_duty_desk_take_a_place_from_a_map(baton: str, browser: Browser) -> None:  # noqa: F811
    PASSWORDS.update({"pick_office": "pick-office-secret-1", "pick_leader": "pick-leader-secret-1"})
    make_user("pick_office", "office", password=PASSWORDS["pick_office"])
    make_user("pick_leader", "office", password=PASSWORDS["pick_leader"], positions=[LEADER_REF])
    box = city_box()
    problems: list[str] = []
    outside: list[str] = []
    with serve_api() as server:
        office = Desk(browser, server.url, "pick_office", problems)
        guard(office, outside)

        # The office's open-incident form: a click on the map fills latitude and longitude; it opens the incident
        # there (the fields it posts are the ones it posted before).
        page = office.go("/office")
        expect(page.locator("head script[src='/static/vendor/leaflet/leaflet.js']")).to_have_count(1)
        expect(page.locator("head link[href='/static/vendor/leaflet/leaflet.css']")).to_have_count(1)
        expect(page.locator("#location_map")).to_have_attribute("data-lat", "lat")
        lat, lon = pick(page, "location", "lat", "lon", box)
        # Typing still works, and the marker follows what is typed; a second click replaces it.
        page.fill("#lat", "30.2741")
        page.fill("#lon", "120.1551")
        page.locator("#lon").dispatch_event("change")
        expect(page.locator("#location_map path.map-pick")).to_have_count(1)
        lat, lon = pick(page, "location", "lat", "lon", box, position={"x": 90, "y": 170})
        office.shoot("office-location-picker")  # 1280 and 390 px; on the phone nothing overflows
        page.fill("#title", "地图选点测试")
        page.fill("#location_name", "地图上的一点")
        page.check("#drill")
        page.click("form[action='/office/incidents'] button[type=submit]")
        page.wait_for_url(re.compile(r".*/office/incidents/[0-9a-f-]{36}\?done=opened$"))
        with session_scope() as session:
            incident = session.exec(select(Incident).where(Incident.title == "地图选点测试")).one()
            assert (incident.location_name, incident.lat, incident.lon) == ("地图上的一点", lat, lon)

        # The duty desk's record sheet: the same picker under its latitude and longitude.
        page = office.go("/desk")
        expect(page.locator("#place_map")).to_have_attribute("data-lat", "lat")
        lat, lon = pick(page, "place", "lat", "lon", box)
        office.shoot("desk-location-picker")
        page.fill("#caller", "李女士")
        page.fill("#place", "地图上的一个路口")
        page.fill("#what", "路口积水，车辆无法通行")
        page.click("#sheet-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/desk/sheets/[0-9a-f-]{36}\?done=recorded$"))
        with session_scope() as session:
            sheet = session.exec(select(EventSheet).where(EventSheet.place == "地图上的一个路口")).one()
            assert (sheet.lat, sheet.lon) == (lat, lon)
            sheet_id = sheet.id
        # A sheet under review has no form to fill: no map on its page.
        expect(page.locator("[data-picker]")).to_have_count(0)
        expect(page.locator("head script[src='/static/baton-map.js']")).to_have_count(0)

        # Returned for details, its amend form opens on the point it holds, and a click moves it.
        with session_scope() as session:
            leader = session.exec(select(User).where(User.username == "pick_leader")).one()
            sheets.return_(session, sheet_id=sheet_id, user=leader, reason="补充准确位置")
        page = office.go(f"/desk/sheets/{sheet_id}")
        expect(page.locator("#place_map")).to_have_attribute("data-loaded", "1")
        expect(page.locator("#place_map path.map-pick")).to_have_count(1)  # the point the sheet holds
        expect(page.locator("#lat")).to_have_value(str(lat))
        moved = pick(page, "place", "lat", "lon", box, position={"x": 200, "y": 60})
        page.click("#amend button[type=submit]")
        page.wait_for_url(re.compile(r".*/desk/sheets/[0-9a-f-]{36}\?done=amended$"))
        with session_scope() as session:
            amended = session.get(EventSheet, sheet_id)
            assert amended is not None and (amended.lat, amended.lon) == moved

        # Without script: no map, its box hidden; the typed fields are there as before.
        context = browser.new_context(java_script_enabled=False)
        try:
            plain = context.new_page()
            plain.goto(f"{server.url}/login")
            plain.fill("#username", "pick_office")
            plain.fill("#password", PASSWORDS["pick_office"])
            plain.click("form[action='/login'] button[type=submit]")
            plain.wait_for_load_state()
            for path, name in (("/office", "location"), ("/desk", "place")):
                plain.goto(f"{server.url}{path}")
                expect(plain.locator(f"#{name}_pick")).to_be_hidden()
                expect(plain.locator("input#lat[name=lat]")).to_be_editable()
                expect(plain.locator("input#lon[name=lon]")).to_be_editable()
        finally:
            context.close()
    assert outside == [], outside
    assert problems == [], problems
