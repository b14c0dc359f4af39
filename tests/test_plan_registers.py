"""Plans use the registers (issue 18 item 3): a step's `registers:` asks for the entries inside the incident's warning
area; when the step is assigned the engine resolves them (the CAP polygons and circles of the warnings in force,
point in polygon by `core.geo`, scope by `core.registers.service.readable`), keeps them with the task, and the task's
page and API show them and pre-fill the evacuation form. Done when: a red rainstorm warning's polygon pre-fills the
evacuation step with the shelters inside it. In process, on the clock the test moves."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from sqlmodel import select

from core.incidents.engine import latest_tasks, shared_inputs
from core.ledger.chain import digest_of, verify_incident
from core.ledger.models import LedgerEntry
from core.plans.store import plan_for_version
from core.platform.db import session_scope
from core.registers import service as registers
from core.registers.models import RegisterKind
from core.sharing import warnings as release
from core.sharing.models import CapAlert
from core.users.models import User
from process_defs.schema import REGISTER_KINDS
from process_defs.validation import check_paths
from tests import engine_driver as drive
from tests.api_server import Api, make_user, page_client
from tests.fixtures.api import issued_token
from tests.fixtures.clock import Clock

SHELTERS = ("code,name_zh,name_en,organisation,capacity,occupancy,address,lon,lat\n"
            "S-1,天河体育馆,Tianhe Stadium,emergency_office,3000,120,天河路299号,113.25,23.12\n"
            "S-2,华景小学,Huajing School,emergency_office,800,0,华景路1号,113.28,23.13\n"
            "S-3,远郊中学,Far School,emergency_office,600,10,从化区,113.60,23.50\n")
RISKS = ("code,name_zh,kind,organisation,lon,lat\n"
         "JS-1,天河路隧道,积水点,water_affairs,113.26,23.125\n"
         "JS-2,从化低洼地,积水点,water_affairs,113.61,23.51\n")
RESIDENTS = ("code,name_zh,category,organisation,address,contact_phone,keeper_name,lon,lat\n"
             "R-1,李阿婆,独居老人,community,幸福里3栋501,13800000001,王网格员,113.26,23.13\n")
# 23.10–23.15°N, 113.20–113.30°E: S-1, S-2 and JS-1 inside; S-3 and JS-2 some 50 km away.
POLYGON = "23.10,113.20 23.10,113.30 23.15,113.30 23.15,113.20 23.10,113.20"
FORECAST = {"rainfall_1h": 80, "rainfall_24h": 200, "warning_colour": "red", "valid_until": drive.VALID_UNTIL}
ASSESSMENT = {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True}


def load_registers(api: Api, *, residents: bool = False) -> None:
    for kind, content in (("shelter", SHELTERS), ("risk_point", RISKS)):
        response = api.call("office", "POST", f"/api/registers/{kind}/import",
                            json={"filename": f"{kind}.csv", "content": content})
        assert response.status_code == 200 and response.json()["refused"] == [], response.text
    if residents:
        response = api.call("office", "POST", "/api/registers/vulnerable_resident/import",
                            json={"filename": "r.csv", "content": RESIDENTS})
        assert response.status_code == 200, response.text


def red_warning(incident_id: str, *, polygon: str | None) -> CapAlert:
    """Meteorology's red rainstorm warning: drafted by the plan's action, (redrawn with `polygon` after the office
    returns it), reviewed by the office, signed off by the bureau's director: released."""
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id, real_actions=True)
    with session_scope() as session:
        alert = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).one()
        alert_id = alert.id
    if polygon is not None:
        with session_scope() as session:
            release.return_draft(session, incident_id=incident_id, alert_id=alert_id, actor="user:office",
                                 reason="画出预警区域")
        with session_scope() as session:
            release.redraft(session, incident_id=incident_id, alert_id=alert_id, actor="user:meteorology",
                            department="meteorology", polygons=[POLYGON])
    with session_scope() as session:
        release.review(session, incident_id=incident_id, alert_id=alert_id, actor="user:office")
    make_user("met_director", "department", "meteorology", positions=["bureau_director@meteorology"])
    with session_scope() as session:
        signer = session.exec(select(User).where(User.username == "met_director")).one()
        return release.sign(session, incident_id=incident_id, alert_id=alert_id, signer=signer)


def to_evacuation(incident_id: str) -> str:
    """On to the response stage, where the sub-district's evacuation step is assigned; its task's id."""
    drive.step(incident_id)
    drive.complete_step(incident_id, "flood_risk_assessment", ASSESSMENT)
    drive.step(incident_id)
    drive.complete_step(incident_id, "lift_warning", {"decision": "respond"})
    drive.step(incident_id)
    drive.complete_step(incident_id, "activate_command")
    drive.step(incident_id)
    task = drive.open_tasks(incident_id)["evacuate_residents"]
    return task.id


def handed_codes(handed: dict[str, Any] | None, register: str) -> list[str]:
    return [e["code"] for e in (handed or {}).get("entries") or [] if e["register"] == register]


def test_a_red_warning_polygon_pre_fills_the_evacuation_step_with_the_shelters_inside(api: Api) -> None:
    load_registers(api)
    incident_id = drive.open_("flood")  # no place of its own: the warning's only area is the polygon drawn
    alert = red_warning(incident_id, polygon=POLYGON)
    assert f"<polygon>{POLYGON}</polygon>" in alert.xml and "<circle>" not in alert.xml
    task_id = to_evacuation(incident_id)

    # The task's stored inputs: exactly the two shelters inside, as they stood, and the risk point inside.
    stored = drive.tasks(incident_id)["evacuate_residents"].registers
    with session_scope() as session:
        entry = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == f"{task_id}:assigned")).one()
    assert stored is not None and stored["note"] is None and stored["within"] == "warning_area"
    assert stored["warnings"] == [{"id": alert.id, "identifier": alert.identifier, "colour": "red"}]
    shelters = {e["code"]: e for e in stored["entries"] if e["register"] == "shelter"}
    assert sorted(shelters) == ["S-1", "S-2"]
    assert (shelters["S-1"]["capacity"], shelters["S-1"]["occupancy"]) == (3000, 120)
    assert (shelters["S-2"]["capacity"], shelters["S-2"]["occupancy"]) == (800, 0)
    assert shelters["S-1"]["name"] == {"zh": "天河体育馆", "en": "Tianhe Stadium"}
    assert shelters["S-1"]["address"] == "天河路299号"
    assert handed_codes(stored, "risk_point") == ["JS-1"]
    # What the department was shown is on record: the assignment's ledger entry digests it, and the chain holds.
    incident = drive.incident(incident_id)
    with session_scope() as session:
        assert verify_incident(session, incident_id).valid
        plan = plan_for_version(session, incident.plan_version_id)
        handed = shared_inputs(plan, plan.step("evacuate_residents"), latest_tasks(session, incident_id),
                               holder="subdistrict")
    assert entry.digest == digest_of({"inputs": handed, "registers": stored})

    # The API shows them and the answers they suggest.
    body = api.call("office", "GET", f"/api/tasks/{task_id}").json()
    assert handed_codes(body["registers"], "shelter") == ["S-1", "S-2"]
    # and the risk points inside the area pre-fill the points cleared of residents
    assert body["prefill"] == {"shelters_named": "天河体育馆\n华景小学", "shelters_open": 2,
                               "risk_points_cleared": "天河路隧道"}

    # The sub-district's page: the table and the pre-filled form.
    make_user("sd_duty", "department", "subdistrict")
    with page_client(api.server, "sd_duty") as client:
        page = client.get(f"/tasks/{task_id}")
    assert page.status_code == 200, page.text[:500]
    text = html.unescape(page.text)
    table = text[text.index('id="register-entries"'):]
    table = table[:table.index("</section>")]
    assert re.findall(r'data-code="([^"]+)"', table) == ["S-1", "S-2", "JS-1"]
    assert 'data-capacity="3000" data-occupancy="120"' in table and "天河路299号" in table
    assert "S-3" not in table and "远郊中学" not in table and "JS-2" not in table
    assert re.search(r'<textarea id="f_shelters_named"[^>]*>天河体育馆\n华景小学</textarea>', text)
    assert re.search(r'id="f_shelters_open" name="f_shelters_open" value="2"', text)
    assert re.search(r'<textarea id="f_risk_points_cleared"[^>]*>天河路隧道</textarea>', text)


def test_a_circle_area_finds_the_shelters_within_its_radius(api: Api) -> None:
    load_registers(api)
    # The incident's place gives the warning a 5 km circle: S-1 (about 3 km off) and JS-1 (4 km) inside, S-2 (6 km
    # east) and the far ones not.
    incident_id = drive.open_("flood", location_name="天河区", lat=23.125, lon=113.22)
    alert = red_warning(incident_id, polygon=None)
    assert "<circle>23.1250,113.2200 5.0</circle>" in alert.xml and "<polygon>" not in alert.xml
    task_id = to_evacuation(incident_id)
    body = api.call("office", "GET", f"/api/tasks/{task_id}").json()
    assert handed_codes(body["registers"], "shelter") == ["S-1"]
    assert handed_codes(body["registers"], "risk_point") == ["JS-1"]
    assert body["prefill"] == {"shelters_named": "天河体育馆", "shelters_open": 1, "risk_points_cleared": "天河路隧道"}


def test_with_no_warning_area_yet_the_step_says_so_and_nothing_is_pre_filled(api: Api, clock: Clock) -> None:
    load_registers(api)
    incident_id = drive.open_("flood")
    alert = red_warning(incident_id, polygon=POLYGON)
    assert alert.expires_at is not None
    # The warning expires (a day and more on the clock) before the evacuation step is assigned: no area in force.
    clock.advance(hours=30)
    task_id = to_evacuation(incident_id)
    api.tokens["office"] = issued_token("office")  # the day-old token has expired with the clock
    stored = drive.tasks(incident_id)["evacuate_residents"].registers
    assert stored is not None and stored["note"] == registers.NO_WARNING_AREA
    assert stored["entries"] == [] and stored["warnings"] == []
    body = api.call("office", "GET", f"/api/tasks/{task_id}").json()
    assert body["registers"]["note"] == "no_warning_area" and body["prefill"] == {}
    make_user("sd_duty", "department", "subdistrict")
    with page_client(api.server, "sd_duty") as client:
        text = client.get(f"/tasks/{task_id}").text
    assert 'data-note="no_warning_area"' in text
    assert re.search(r'<textarea id="f_shelters_named"[^>]*></textarea>', text)
    assert re.search(r'<textarea id="f_risk_points_cleared"[^>]*></textarea>', text)


def test_an_unreleased_warning_has_no_area_in_force(api: Api) -> None:
    load_registers(api)
    incident_id = drive.open_("flood", lat=23.125, lon=113.22)
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", FORECAST)
    drive.step(incident_id, real_actions=True)  # drafted, never signed off
    task_id = to_evacuation(incident_id)
    body = api.call("office", "GET", f"/api/tasks/{task_id}").json()
    assert body["registers"]["note"] == "no_warning_area" and body["registers"]["entries"] == []


def test_a_department_is_handed_only_the_entries_it_may_read(api: Api) -> None:
    """Vulnerable residents reach their own community's task and the office, never another department or the
    manager: resolved by `readable` for the holder, and filtered again for whoever reads the task."""
    make_user("community_grid", "department", "community")
    api.tokens["community_grid"] = issued_token("community_grid")
    load_registers(api, residents=True)
    incident_id = drive.open_("flood")
    red_warning(incident_id, polygon=POLYGON)
    kinds = ["shelter", "vulnerable_resident"]
    with session_scope() as session:
        from core.platform.clock import utcnow

        now = utcnow()
        for_community = registers.entries_for_task(session, incident_id=incident_id, kinds=kinds,
                                                   within="warning_area", department="community", now=now)
        for_subdistrict = registers.entries_for_task(session, incident_id=incident_id, kinds=kinds,
                                                     within="warning_area", department="subdistrict", now=now)
        assert handed_codes(for_community, "vulnerable_resident") == ["R-1"]
        assert handed_codes(for_subdistrict, "vulnerable_resident") == []
        assert handed_codes(for_subdistrict, "shelter") == ["S-1", "S-2"]
        readers = {u.username: u for u in session.exec(select(User)).all()}
        for who, sees in (("office", ["R-1"]), ("community_grid", ["R-1"]), ("manager", []), ("admin", []),
                          ("water_affairs", [])):
            shown = registers.readable_handed(session, for_community, user=readers[who])
            assert handed_codes(shown, "vulnerable_resident") == sees, who
            assert handed_codes(shown, "shelter") == ["S-1", "S-2"], who


def test_the_plan_language_knows_the_registers(tmp_path: Path) -> None:
    assert set(REGISTER_KINDS) == {k.value for k in RegisterKind}
    source = (Path(__file__).resolve().parents[1] / "process_defs" / "flood.yaml").read_text(encoding="utf-8")
    marker = "          kinds: [shelter, risk_point]\n"
    assert source.count(marker) == 1
    line = source[:source.index(marker)].count("\n") + 1
    broken = source.replace(marker + "          within: warning_area\n",
                            "          kinds: [shelter, sandbags]\n          within: river_basin\n")
    fill = "fill: {shelters_named: shelter, shelters_open: shelter, risk_points_cleared: risk_point}"
    assert broken.count(fill) == 1
    broken = broken.replace(fill, "fill: {shelters_named: shelter, people_evacuated: team, notes: shelter}")
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "flood.yaml").write_text(broken, encoding="utf-8")
    problems = [str(p) for p in check_paths([plans / "flood.yaml"]).problems]
    unknown = [p for p in problems if "unknown register 'sandbags'" in p]
    assert len(unknown) == 1 and f"flood.yaml:{line}" in unknown[0] and "registers.kinds[1]" in unknown[0], problems
    assert any("unknown area 'river_basin'" in p and "registers.within" in p for p in problems), problems
    assert any("'team' is not among the registers" in p and "registers.fill.people_evacuated" in p
               for p in problems), problems
    assert any("the step's form has no field 'notes'" in p for p in problems), problems


def test_restricted_registers_only_for_a_community_step(tmp_path: Path) -> None:
    source = (Path(__file__).resolve().parents[1] / "process_defs" / "flood.yaml").read_text(encoding="utf-8")
    broken = source.replace("          kinds: [shelter, risk_point]\n",
                            "          kinds: [shelter, risk_point, vulnerable_resident]\n")
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "flood.yaml").write_text(broken, encoding="utf-8")
    problems = [str(p) for p in check_paths([plans / "flood.yaml"]).problems]
    assert any("'vulnerable_resident' is read only by the owning community" in p and "registers.kinds[2]" in p
               for p in problems), problems


def test_the_typhoon_evacuation_is_pre_filled_with_the_risk_points_too() -> None:
    """As flood's: the typhoon plan's evacuation step (危险区域人员转移安置) names the risk points inside the warning
    area (危旧房, 地质灾害隐患点 …) beside the shelters, in an optional field, the plan at its version."""
    from process_defs.validation import PLAN_DIR, REGISTRY_FILE, load_registry, parse_plan

    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    plan, problems = parse_plan((PLAN_DIR / "typhoon.yaml").read_text(encoding="utf-8"), "typhoon.yaml", registry)
    assert plan is not None and problems == [], problems
    assert plan.version == 2
    step = plan.step("evacuate_residents")
    cleared = step.field("risk_points_cleared")
    assert cleared is not None and not cleared.required
    handed = {"entries": [{"register": "shelter", "code": "S-1", "name": {"zh": "天河体育馆"}},
                          {"register": "risk_point", "code": "WF-1", "name": {"zh": "沙河危旧房"}},
                          {"register": "risk_point", "code": "DZ-2", "name": {"zh": "白云山滑坡点"}}]}
    assert registers.prefill(step, handed) == {"shelters_named": "天河体育馆", "shelters_open": 1,
                                               "risk_points_cleared": "沙河危旧房\n白云山滑坡点"}
