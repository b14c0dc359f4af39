"""叫应 calls the heads of the affected sub-districts, towns and communities (issue 17, item 3): the registry has a
town (乡镇) kind with its head (乡镇长) and a community's (village's) head (社区（村）主任); a plan that names nobody
calls them by default, each only where its administrative area (the `area` register) meets the warning's, and for
the post of their own organisation, so that an unanswered village head's call goes up to that town's head. In
process, on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.plans.store import registry
from process_defs.law_rules import position_ref_problem
from process_defs.schema import Answering, DepartmentKind
from tests.api_server import Api, make_user
from tests.conftest import copy_plans
from tests.fixtures.clock import Clock
from tests.test_answers import POLYGON, kinds, reconcile, red_warning

# 南湖镇 and its village 南湖村 lie inside the warning's polygon (23.10–23.15°N, 113.20–113.30°E); 远郊社区, under
# the shipped sub-district, some 50 km away.
AREAS = {
    "nanhu_town": ("town", "南湖镇人民政府", "Nanhu Town", "city_government",
                   [[113.21, 23.11], [113.29, 23.11], [113.29, 23.14], [113.21, 23.14], [113.21, 23.11]]),
    "nanhu_village": ("community", "南湖村村民委员会", "Nanhu Village", "nanhu_town",
                      [[113.22, 23.12], [113.24, 23.12], [113.24, 23.13], [113.22, 23.13], [113.22, 23.12]]),
    "community_far": ("community", "远郊社区居委会", "Far Community", "subdistrict",
                      [[113.60, 23.50], [113.62, 23.50], [113.62, 23.52], [113.60, 23.52], [113.60, 23.50]]),
}
PEOPLE = {"town_head_in": "town_head@nanhu_town", "village_head_in": "community_head@nanhu_village",
          "town_keeper_in": "evacuation_keeper@nanhu_town", "community_head_far": "community_head@community_far",
          "keeper_far": "evacuation_keeper@community_far"}


@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    """The shipped flood plan (no `answering.officials`: the defaults) and registry, with the town, its village
    and a far community as organisations of their own."""
    folder = copy_plans(tmp_path / "plans", "flood")
    document = yaml.safe_load((folder / "departments.yaml").read_text(encoding="utf-8"))
    for key, (kind, zh, en, supervisor, _) in AREAS.items():
        document["departments"].append({"key": key, "name": {"zh": zh, "en": en}, "kind": kind,
                                         "supervisor": supervisor})
    (folder / "departments.yaml").write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    plan = yaml.safe_load((folder / "flood.yaml").read_text(encoding="utf-8"))
    assert "answering" not in plan
    return folder


def test_the_registry_has_town_and_community_heads_and_the_default_officials_name_them() -> None:
    shipped = registry()
    town, head = shipped.position("town_head"), shipped.position("community_head")
    assert town is not None and head is not None
    assert (town.name.zh, town.name.en) == ("乡镇长", "Town (township) head")
    assert (head.name.zh, head.name.en) == ("社区（村）主任", "Head of the community (village) committee")
    assert town.held_in == [DepartmentKind.town] and head.held_in == [DepartmentKind.community]
    generic = shipped.department("town")
    assert generic is not None and generic.kind is DepartmentKind.town
    assert shipped.position_name("town_head@town") == "属地乡镇人民政府乡镇长"
    assert shipped.position_name("community_head@community", "en") == ("Head of the community (village) "
                                                                        "committee, Community Residents' "
                                                                        "Committee (affected area)")
    # A town has keepers and a duty desk too; a town's head is held in no sub-district, a community's nowhere else.
    for ref in ("town_head@town", "community_head@community", "evacuation_keeper@town", "duty_officer@town"):
        assert position_ref_problem(ref, shipped) is None, ref
    assert position_ref_problem("town_head@subdistrict", shipped) is not None
    assert position_ref_problem("community_head@town", shipped) is not None
    # 叫应 by default: the headquarters' commander, and the heads and keepers of whatever sub-district, town or
    # community the warning reaches (bare positions, held in any of them).
    assert Answering().positions("flood_control_hq") == ["commander@flood_control_hq", "sub_district_head",
                                                         "town_head", "community_head", "evacuation_keeper"]


def test_a_red_warning_calls_the_town_and_village_heads_inside_it_and_a_silent_village_head_goes_to_the_town_head(
        api: Api, clock: Clock) -> None:
    for name, ref in PEOPLE.items():
        make_user(name, "department", ref.split("@")[1], positions=[ref])
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                 "properties": {"organisation": key, "名称": zh}} for key, (_, zh, _, _, ring) in AREAS.items()]
    response = api.call("office", "POST", "/api/registers/area/import", json={
        "filename": "areas.geojson", "content": json.dumps({"type": "FeatureCollection", "features": features},
                                                           ensure_ascii=False)})
    # A town's boundary is an administrative area like a sub-district's.
    assert response.status_code == 200 and response.json()["refused"] == [], response.text
    assert response.json()["added"] == 3
    bureau = {"type": "Feature", "geometry": features[0]["geometry"],
              "properties": {"organisation": "water_affairs", "名称": "水务局"}}
    refused = api.call("office", "POST", "/api/registers/area/import", json={
        "filename": "bureau.geojson", "content": json.dumps({"type": "FeatureCollection", "features": [bureau]})})
    assert refused.status_code == 200, refused.text
    [why] = refused.json()["refused"]
    assert why["code"] == "not_an_area_organisation" and "乡镇" in why["message_zh"] and "town" in why["message"]
    incident_id, alert = red_warning(POLYGON)
    assert f"<polygon>{POLYGON}</polygon>" in alert.xml
    opened = reconcile(incident_id)
    assert len(opened.opened) == 1
    requested = {e.to_party: e.details["position"] for e in kinds(incident_id, "answer.requested")}
    # The town's head, its village's head and its keeper, each for their own post; not the far community's.
    assert requested == {"user:commander": "commander@flood_control_hq", "user:town_head_in": "town_head@nanhu_town",
                         "user:village_head_in": "community_head@nanhu_village",
                         "user:town_keeper_in": "evacuation_keeper@nanhu_town"}
    # Nobody answers; the village head has no stand-in: at the limit, the head one level up, the town's, is called.
    clock.advance(minutes=15, seconds=1)
    reconcile(incident_id)
    [up] = [e for e in kinds(incident_id, "answer.escalated") if e.from_party == "user:village_head_in"]
    assert (up.to_party, up.details["rung"]) == ("user:town_head_in", "above")
    above = [e for e in kinds(incident_id, "answer.requested") if e.details["rung"] == "above"
             and e.to_party == "user:town_head_in"]
    assert above and {e.details["position"] for e in above} == {"town_head@nanhu_town"}  # for the village, the keeper


def test_without_a_warning_area_every_holder_is_called_for_their_own_post(api: Api) -> None:
    for name, ref in PEOPLE.items():
        make_user(name, "department", ref.split("@")[1], positions=[ref])
    incident_id, _ = red_warning()  # no polygon, and no areas on file: better a call too many than a missed one
    reconcile(incident_id)
    requested = {e.to_party: e.details["position"] for e in kinds(incident_id, "answer.requested")}
    assert requested == {"user:commander": "commander@flood_control_hq",
                         **{f"user:{name}": ref for name, ref in PEOPLE.items()}}
