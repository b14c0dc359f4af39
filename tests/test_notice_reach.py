"""Notification steps reach the communities inside the warning area (issue 18, item 3), as 叫应 does: a
`notify_department` step addressed to a sub-district or community queues its notice only when that organisation's
administrative area (辖区) meets the area of the incident's warnings in force; one whose area lies elsewhere is not
notified (the step finishes, saying so), one with no area on file still is. In process, on a real SQLite database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import select

from core.outbox.models import OutboundDelivery
from core.platform.db import session_scope
from tests import engine_driver as drive
from tests.api_server import Api
from tests.conftest import copy_plans
from tests.test_plan_registers import ASSESSMENT, POLYGON
from tests.test_plan_registers import red_warning as red_warning_with_polygon

# The warning's polygon (POLYGON) is 23.10–23.15°N, 113.20–113.30°E: the sub-district's area lies inside it, the far
# community's some 50 km away; the community of the affected area has no area on file.
INSIDE = [[113.22, 23.11], [113.24, 23.11], [113.24, 23.13], [113.22, 23.13], [113.22, 23.11]]
FAR = [[113.60, 23.50], [113.62, 23.50], [113.62, 23.52], [113.60, 23.52], [113.60, 23.50]]


@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    """The shipped flood plan and registry, with a second community (远郊社区); the plan's notice to the sub-districts
    sent once the risk is assessed (after the red warning is in force), and the same notice to the community and
    to the far community beside it."""
    folder = copy_plans(tmp_path / "plans", "flood")
    registry = yaml.safe_load((folder / "departments.yaml").read_text(encoding="utf-8"))
    registry["departments"].append({"key": "community_far", "name": {"zh": "远郊社区居委会", "en": "Far Community"},
                                     "kind": "community", "supervisor": "subdistrict", "endpoint": "community_far"})
    (folder / "departments.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True), encoding="utf-8")
    plan = yaml.safe_load((folder / "flood.yaml").read_text(encoding="utf-8"))
    steps = plan["stages"]["warning"]["steps"]
    notice = next(s for s in steps if s["key"] == "notify_subdistricts")
    notice["depends_on"] = ["flood_risk_assessment"]
    for key, department in (("notify_community", "community"), ("notify_far", "community_far")):
        steps.append({**notice, "key": key, "department": department})
    (folder / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def area(organisation: str, ring: list[list[float]]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"organisation": organisation, "名称": organisation}}


def test_a_notice_reaches_only_the_communities_the_warning_area_meets(api: Api) -> None:
    document = {"type": "FeatureCollection", "features": [area("subdistrict", INSIDE), area("community_far", FAR)]}
    imported = api.call("office", "POST", "/api/registers/area/import",
                        json={"filename": "areas.geojson", "content": json.dumps(document, ensure_ascii=False)})
    assert imported.status_code == 200 and imported.json()["refused"] == [], imported.text
    incident_id = drive.open_("flood")
    red_warning_with_polygon(incident_id, polygon=POLYGON)
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment", ASSESSMENT)
    drive.step(incident_id, real_actions=True)

    with session_scope() as session:
        notified = {d.target for d in session.exec(select(OutboundDelivery).where(
            OutboundDelivery.incident_id == incident_id, OutboundDelivery.purpose == "notice")).all()}
    # inside the area: notified; no area on file: notified as before; the far community: not
    assert notified == {"subdistrict", "community"}
    tasks = drive.tasks(incident_id)
    far = tasks["notify_far"]
    assert far.status == "completed" and far.outputs == {"delivery_id": None, "target": "community_far",
                                                         "outside_warning_area": True}
    for reached in ("notify_subdistricts", "notify_community"):
        assert (tasks[reached].outputs or {}).get("delivery_id"), reached
