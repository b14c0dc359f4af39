"""叫应 reaches the communities whose areas the warning covers (issue 18, item 3): the administrative areas register
(辖区, one boundary polygon per sub-district or community, imported by the office) and the officials a red warning
calls. A community whose area the warning's polygon meets has its posts called, one whose area lies elsewhere does
not, one with no area on file still does (better a call too many than a missed one), and the headquarters'
commander always does. In process, on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import select

from core.platform.db import session_scope
from core.registers.models import AdministrativeArea
from tests import engine_driver as drive
from tests.api_server import Api, error_of, make_user, page_client
from tests.conftest import copy_plans
from tests.test_answers import kinds, reconcile
from tests.test_plan_registers import POLYGON
from tests.test_plan_registers import red_warning as red_warning_with_polygon

# The warning's polygon (POLYGON) is 23.10–23.15°N, 113.20–113.30°E. 东湖社区 lies inside it; 远郊社区 some 50 km
# away; the sub-district has no area on file.
INSIDE = [[113.22, 23.11], [113.24, 23.11], [113.24, 23.13], [113.22, 23.13], [113.22, 23.11]]
FAR = [[113.60, 23.50], [113.62, 23.50], [113.62, 23.52], [113.60, 23.52], [113.60, 23.50]]
OPEN_RING = [[113.40, 23.30], [113.42, 23.30], [113.42, 23.32], [113.40, 23.32]]  # does not close
OFFICIALS = ["commander@flood_control_hq", "sub_district_head@subdistrict", "evacuation_keeper@community",
             "evacuation_keeper@community_far", "grid_worker"]


@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    """The shipped flood plan and registry, with a second community (远郊社区) under the sub-district, and the
    plan's 叫应 naming the posts of both communities (one by a bare position, held anywhere)."""
    folder = copy_plans(tmp_path / "plans", "flood")
    registry = yaml.safe_load((folder / "departments.yaml").read_text(encoding="utf-8"))
    registry["departments"].append({"key": "community_far", "name": {"zh": "远郊社区居委会", "en": "Far Community"},
                                     "kind": "community", "supervisor": "subdistrict"})
    (folder / "departments.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True), encoding="utf-8")
    plan = yaml.safe_load((folder / "flood.yaml").read_text(encoding="utf-8"))
    plan["answering"] = {"officials": OFFICIALS}
    (folder / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def feature(organisation: str, name: str, ring: list[list[float]] | None = None,
            point: list[float] | None = None) -> dict[str, Any]:
    geometry = {"type": "Point", "coordinates": point} if point else {"type": "Polygon", "coordinates": [ring]}
    return {"type": "Feature", "geometry": geometry, "properties": {"organisation": organisation, "名称": name}}


def import_areas(api: Api, who: str, features: list[dict[str, Any]]) -> Any:
    document = {"type": "FeatureCollection", "features": features}
    return api.call(who, "POST", "/api/registers/area/import",
                    json={"filename": "areas.geojson", "content": json.dumps(document, ensure_ascii=False)})


def called(incident_id: str) -> set[str]:
    return {e.to_party for e in kinds(incident_id, "answer.requested")}


def test_a_red_warning_calls_only_the_communities_its_polygon_covers(api: Api) -> None:
    for name, ref in (("sd_head", "sub_district_head@subdistrict"), ("keeper_in", "evacuation_keeper@community"),
                      ("keeper_far", "evacuation_keeper@community_far"), ("grid_in", "grid_worker@community"),
                      ("grid_far", "grid_worker@community_far")):
        make_user(name, "department", ref.split("@")[1], positions=[ref])
    # The areas, as the office imports them: the two communities; the sub-district has none on file.
    areas = [feature("community", "东湖社区", INSIDE), feature("community_far", "远郊社区", FAR)]
    response = import_areas(api, "office", areas)
    assert response.status_code == 200 and response.json()["refused"] == [], response.text
    assert response.json()["added"] == 2 and import_areas(api, "office", areas).json()["unchanged"] == 2
    with session_scope() as session:
        kept = {a.organisation: a.code for a in session.exec(select(AdministrativeArea)).all()}
    assert kept == {"community": "community", "community_far": "community_far"}  # the code is the organisation's
    # Every signed-in user reads them; a department may not import them.
    listed = api.call("water_affairs", "GET", "/api/registers/area")
    assert listed.status_code == 200 and sorted(e["organisation"] for e in listed.json()) == ["community",
                                                                                              "community_far"]
    refused = import_areas(api, "water_affairs", [feature("community", "东湖社区", INSIDE)])
    error_of(refused, 403, "forbidden")

    incident_id = drive.open_("flood")  # no place of its own: the warning's only area is its polygon
    alert = red_warning_with_polygon(incident_id, polygon=POLYGON)
    assert alert.colour == "red" and f"<polygon>{POLYGON}</polygon>" in alert.xml
    opened = reconcile(incident_id)
    assert len(opened.opened) == 1
    # The commander always; the sub-district's head (no area on file); the covered community's keeper and grid
    # worker (by the post named with its organisation, and by the bare position held there). Not the far one's.
    assert called(incident_id) == {"user:commander", "user:sd_head", "user:keeper_in", "user:grid_in"}


def test_without_areas_or_without_a_warning_area_everyone_is_called(api: Api) -> None:
    for name, ref in (("keeper_in", "evacuation_keeper@community"), ("keeper_far", "evacuation_keeper@community_far")):
        make_user(name, "department", ref.split("@")[1], positions=[ref])
    response = import_areas(api, "office", [feature("community", "东湖社区", INSIDE)])
    assert response.status_code == 200 and response.json()["added"] == 1, response.text
    # The far community has no area on file: it is called, as is the covered one.
    incident_id = drive.open_("flood")
    red_warning_with_polygon(incident_id, polygon=POLYGON)
    reconcile(incident_id)
    assert {"user:keeper_in", "user:keeper_far", "user:commander"} <= called(incident_id)


def test_the_area_import_names_a_polygon_that_does_not_close_and_keeps_the_good_rows(api: Api) -> None:
    response = import_areas(api, "office", [feature("community", "东湖社区", INSIDE),
                                            feature("community_far", "远郊社区", OPEN_RING),
                                            feature("subdistrict", "街道", point=[113.25, 23.12]),
                                            feature("water_affairs", "水务局", INSIDE)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["added"] == 1
    assert [(p["row"], p["field"], p["code"]) for p in body["refused"]] == [
        (2, "geometry", "ring_not_closed"), (3, "geometry", "not_a_polygon"),
        (4, "organisation", "not_an_area_organisation")]
    assert "不闭合" in body["refused"][0]["message_zh"] or "未闭合" in body["refused"][0]["message_zh"]
    with session_scope() as session:
        assert [a.organisation for a in session.exec(select(AdministrativeArea)).all()] == ["community"]
    exported = api.call("office", "GET", "/api/registers/area/export?format=geojson")
    assert exported.status_code == 200
    [only] = exported.json()["features"]
    assert only["geometry"]["type"] == "Polygon" and only["properties"]["organisation"] == "community"
    page = page_client(api.server, "office").get("/registers?kind=area")
    assert page.status_code == 200 and 'data-code="community"' in page.text and "东湖社区" in page.text
