"""Public warnings are released, not leaked (审核签发): the issuing agency's draft publishes nothing until the
emergency office has reviewed it and a leader holding a signer's position has signed it off; its colour is the
agency's signal, its words a public notice's in Chinese and English, its CAP valid 1.2 with an expiry; it is
returned for redrafting, updated and cancelled; a drill's (and the demo's) is an Exercise that never reaches the
public. Through the API in process, with the public page read as anyone reads it."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import xmlschema
from sqlmodel import select

from core.ledger import chain as ledger
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.sharing.cap import CAP_SCHEMA
from core.sharing.models import CapAlert
from core.sharing.notice import zone
from core.sharing.warnings import draft
from process_defs.actions import PublishWarningParams
from process_defs.schema import Text
from process_defs.validation import load_registry, parse_plan
from tests import engine_driver as drive
from tests.api_server import (  # noqa: F401
    Api,
    api_fixture,
    api_server_fixture,
    csrf_of,
    error_of,
    issued_token,
    make_user,
    page_client,
)

NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}
RAW = re.compile(r"\b(red|orange|True|False|None)\b|\{|\}|'|\d{4}-\d\d-\d\dT")


def _leader(api: Api, name: str = "met_director", position: str = "bureau_director@meteorology") -> None:
    make_user(name, "department", "meteorology", positions=[position])
    api.tokens[name] = issued_token(name)


def _flood_draft(colour: str = "red", level: str = "IV", **opened: Any) -> tuple[str, CapAlert, str]:
    """A flood incident whose meteorology form chose `colour`, valid for three more hours, and the warning step
    run: its draft, and the forecast's validity as entered."""
    valid_until = (utcnow() + timedelta(hours=3)).astimezone(zone()).replace(second=0, microsecond=0)
    incident_id = drive.open_("flood", level=level, **opened)
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 80, "rainfall_24h": 200,
                                                            "warning_colour": colour,
                                                            "valid_until": valid_until.isoformat()})
    drive.step(incident_id, real_actions=True)
    with session_scope() as session:
        alert = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).one()
    return incident_id, alert, valid_until.isoformat()


def _public(api: Api) -> str:
    response = api.call(None, "GET", "/public/warnings")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    return response.text


def _kinds(incident_id: str) -> list[str]:
    with session_scope() as session:
        return [e.kind for e in ledger.read_chain(session, incident_id)]


def _path(incident_id: str, alert_id: str, act: str) -> str:
    return f"/api/incidents/{incident_id}/warnings/{alert_id}/{act}"


def _infos(xml: str) -> dict[str, ElementTree.Element]:
    root = ElementTree.fromstring(xml.encode("utf-8"))
    return {(i.findtext("cap:language", "", NS) or "")[:2]: i for i in root.findall("cap:info", NS)}


def test_a_red_forecast_publishes_nothing_until_reviewed_and_signed_off(api: Api) -> None:
    incident_id, alert, valid_until = _flood_draft("red", level="IV", location_name="滨江区", lat=30.21,
                                                   lon=120.21)
    assert (alert.state, alert.published, alert.colour) == ("draft", False, "red")  # the agency's signal, not IV's
    assert alert.signers == ["bureau_director@meteorology", "deputy_director@meteorology", "duty_leader@meteorology"]
    # Nothing public: not the page, not the feed, not the XML, not the warning's own page.
    assert alert.identifier not in _public(api) and "暴雨" not in _public(api)
    assert alert.identifier not in api.call(None, "GET", "/public/warnings.atom").text
    assert api.call(None, "GET", f"/public/warnings/{alert.id}.xml").status_code == 404
    assert api.call(None, "GET", f"/public/warnings/{alert.identifier}").status_code == 404
    _leader(api)
    # A leader may not sign a draft the office has not reviewed.
    error_of(api.call("met_director", "POST", _path(incident_id, alert.id, "sign")), 409, "warning_not_reviewed")
    # Only the office reviews.
    error_of(api.call("meteorology", "POST", _path(incident_id, alert.id, "review")), 403)
    assert api.call("office", "POST", _path(incident_id, alert.id, "review")).json()["state"] == "reviewed"
    error_of(api.call("office", "POST", _path(incident_id, alert.id, "review")), 409, "warning_state_conflict")
    # Signing off is by position: the office, a meteorology user and the flood commander hold none of the
    # meteorology bureau's leaders' posts.
    for who in ("office", "meteorology", "commander"):
        refused = error_of(api.call(who, "POST", _path(incident_id, alert.id, "sign")), 403, "position_required")
        assert refused["details"]["needs"] == alert.signers
    assert "暴雨" not in _public(api)
    signed = api.call("met_director", "POST", _path(incident_id, alert.id, "sign"))
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert (body["state"], body["published"], body["signed_position"]) == ("issued", True,
                                                                           "bureau_director@meteorology")
    error_of(api.call("met_director", "POST", _path(incident_id, alert.id, "sign")), 409, "warning_state_conflict")
    with session_scope() as session:
        stored = session.get(CapAlert, alert.id)
        assert stored is not None
        xml = stored.xml
    xmlschema.XMLSchema(str(CAP_SCHEMA)).validate(xml)
    root = ElementTree.fromstring(xml.encode("utf-8"))
    assert root.findtext("cap:status", "", NS) == "Actual"
    infos = _infos(xml)
    assert set(infos) == {"zh", "en"}
    for info in infos.values():
        assert info.findtext("cap:eventCode[cap:valueName='warningColour']/cap:value", "", NS) == "red"
        assert info.findtext("cap:severity", "", NS) == "Extreme"
        assert info.findtext("cap:expires", "", NS) == valid_until  # the forecast's validity, Beijing time
    zh, en = infos["zh"], infos["en"]
    assert zh.findtext("cap:headline", "", NS) == "市气象台发布暴雨红色预警信号"
    assert en.findtext("cap:headline", "", NS) == ("Municipal Meteorological Observatory issues the Red rainstorm "
                                                   "warning")
    local = utcnow().astimezone(zone()) + timedelta(hours=3)
    zh_text, en_text = zh.findtext("cap:description", "", NS), en.findtext("cap:description", "", NS)
    assert zh_text.startswith("预计未来3小时内滨江区最大小时雨量可达80毫米，24小时累计雨量可达200毫米，")
    assert f"本预警信号有效期至{local.month}月{local.day}日" in zh_text
    assert "in the next 3 hours 滨江区 may see up to 80 mm of rain in an hour and 200 mm in 24 hours".lower() \
        in en_text.lower() and "(Beijing time)" in en_text
    for text in (zh_text, en_text, zh.findtext("cap:headline", "", NS), en.findtext("cap:headline", "", NS)):
        assert not RAW.search(text), text  # no raw values: colours, booleans, dicts, ISO times
    # Now public: the page (Chinese with English), the warning's own page, the feed.
    page = _public(api)
    assert "市气象台发布暴雨红色预警信号" in page and "issues the Red rainstorm warning" in page
    assert 'class="badge warning-colour colour-red"' in page and "<svg" in page and "<circle" in page
    assert f"{local.month}月{local.day}日" in page
    assert api.call(None, "GET", f"/public/warnings/{alert.identifier}").status_code == 200
    assert alert.identifier in api.call(None, "GET", "/public/warnings.atom").text
    kinds = _kinds(incident_id)
    assert [k for k in kinds if k.startswith("warning.")] == ["warning.drafted", "warning.reviewed",
                                                              "warning.signed", "warning.published"]


def test_the_office_returns_a_draft_and_the_meteorology_bureau_redrafts_it(api: Api) -> None:
    incident_id, alert, _ = _flood_draft("red")
    _leader(api)
    error_of(api.call("office", "POST", _path(incident_id, alert.id, "return"), json={"reason": " "}), 422)
    returned = api.call("office", "POST", _path(incident_id, alert.id, "return"),
                        json={"reason": "雨量与水文监测不符，请核实后重新拟稿"})
    assert returned.status_code == 200 and returned.json()["state"] == "returned"
    assert returned.json()["returned_reason"] == "雨量与水文监测不符，请核实后重新拟稿"
    error_of(api.call("met_director", "POST", _path(incident_id, alert.id, "sign")), 409, "warning_not_reviewed")
    error_of(api.call("office", "POST", _path(incident_id, alert.id, "review")), 409, "warning_state_conflict")
    # Another department does not redraft the meteorology bureau's warning.
    error_of(api.call("water_affairs", "POST", _path(incident_id, alert.id, "redraft"), json={"colour": "orange"}),
             404)
    redrafted = api.call("meteorology", "POST", _path(incident_id, alert.id, "redraft"), json={"colour": "orange"})
    assert redrafted.status_code == 200, redrafted.text
    body = redrafted.json()
    assert (body["state"], body["colour"], body["revision"]) == ("draft", "orange", 2)
    assert body["texts"]["headline"] == {"zh": "市气象台发布暴雨橙色预警信号",
                                         "en": "Municipal Meteorological Observatory issues the Orange rainstorm "
                                               "warning"}
    assert api.call("office", "POST", _path(incident_id, alert.id, "review")).status_code == 200
    signed = api.call("met_director", "POST", _path(incident_id, alert.id, "sign"))
    assert signed.status_code == 200 and signed.json()["colour"] == "orange"
    assert "暴雨橙色预警信号" in _public(api) and "暴雨红色预警信号" not in _public(api)
    assert [k for k in _kinds(incident_id) if k.startswith("warning.")] == [
        "warning.drafted", "warning.returned", "warning.redrafted", "warning.reviewed", "warning.signed",
        "warning.published"]


def _released(api: Api) -> tuple[str, CapAlert]:
    incident_id, alert, _ = _flood_draft("red")
    _leader(api)
    assert api.call("office", "POST", _path(incident_id, alert.id, "review")).status_code == 200
    assert api.call("met_director", "POST", _path(incident_id, alert.id, "sign")).status_code == 200
    return incident_id, alert


def test_a_released_warning_is_updated_and_cancelled_in_one_action_each(api: Api) -> None:
    incident_id, alert = _released(api)
    base = f"/api/incidents/{incident_id}/warnings"
    # Neither the office nor a signer: refused for want of the position.
    for who in ("water_affairs", "meteorology"):
        error_of(api.call(who, "POST", f"{base}/update", json={"colour": "orange"}), 403, "position_required")
    error_of(api.call("public_security", "POST", f"{base}/update", json={"colour": "orange"}), 404)  # not on it
    error_of(api.call("office", "POST", f"{base}/update", json={}), 422, "warning_invalid")
    update = api.call("met_director", "POST", f"{base}/update", json={"colour": "orange"})
    assert update.status_code == 201, update.text
    updated = update.json()
    assert (updated["msg_type"], updated["state"], updated["colour"], updated["published"]) == (
        "Update", "issued", "orange", True)
    assert alert.identifier in updated["references"]
    page = _public(api)
    assert "暴雨橙色预警信号" in page and "暴雨红色预警信号" not in page  # the update replaced the alert
    cancel = api.call("office", "POST", f"{base}/cancel", json={"reason": "降雨已明显减弱，暴雨预警解除。"})
    assert cancel.status_code == 201, cancel.text
    cancelled = cancel.json()
    assert cancelled["msg_type"] == "Cancel" and updated["identifier"] in cancelled["references"]
    assert cancelled["texts"]["headline"]["zh"] == "市气象台解除暴雨橙色预警"
    assert "暴雨" not in _public(api) and 'id="no-warnings"' in _public(api)
    error_of(api.call("office", "POST", f"{base}/cancel", json={"reason": "again"}), 409, "warning_state_conflict")
    schema = xmlschema.XMLSchema(str(CAP_SCHEMA))
    with session_scope() as session:
        for row in session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).all():
            schema.validate(row.xml)
            assert ElementTree.fromstring(row.xml.encode()).find("cap:info/cap:expires", NS) is not None
    kinds = _kinds(incident_id)
    assert kinds.count("warning.updated") == 1 and kinds.count("warning.cancelled") == 1


@pytest.mark.parametrize("how", ["drill", "demo"])
def test_a_drills_and_the_demos_warning_is_an_exercise_never_public(api: Api, how: str) -> None:
    if how == "demo":
        from flows.demo import open_demo_incident

        with session_scope() as session:
            incident_id = open_demo_incident(session, "II").id
        drive.step(incident_id)
        drive.complete_step(incident_id, "rainstorm_forecast", {
            "rainfall_1h": 80, "rainfall_24h": 200, "warning_colour": "red",
            "valid_until": (utcnow() + timedelta(hours=3)).isoformat()})
        drive.step(incident_id, real_actions=True)
        with session_scope() as session:
            alert = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).one()
    else:
        incident_id, alert, _ = _flood_draft("red", drill=True)
    _leader(api)
    assert api.call("office", "POST", _path(incident_id, alert.id, "review")).status_code == 200
    signed = api.call("met_director", "POST", _path(incident_id, alert.id, "sign"))
    assert signed.status_code == 200, signed.text
    assert (signed.json()["status"], signed.json()["published"], signed.json()["state"]) == ("Exercise", False,
                                                                                             "issued")
    with session_scope() as session:
        stored = session.get(CapAlert, alert.id)
        assert stored is not None
        xml = stored.xml
    xmlschema.XMLSchema(str(CAP_SCHEMA)).validate(xml)
    assert ElementTree.fromstring(xml.encode()).findtext("cap:status", "", NS) == "Exercise"
    assert "暴雨" not in _public(api) and alert.identifier not in api.call(None, "GET", "/public/warnings.atom").text
    assert api.call(None, "GET", f"/public/warnings/{alert.identifier}").status_code == 404


def test_a_plan_that_names_no_colour_source_warns_in_its_levels_colour(baton: str) -> None:
    incident_id = drive.open_("flood", level="II")
    params = PublishWarningParams(event=Text(zh="暴雨", en="Rainstorm"),
                                  headline=Text(zh="{issuer}发布暴雨{colour}预警", en="{issuer}: {colour} warning"),
                                  instruction=Text(zh="远离低洼地带", en="Keep away from low ground"))
    with session_scope() as session:
        alert = draft(session, incident_id=incident_id, params=params, department="emergency_office",
                      actor="test", key="no-source")
        assert alert is not None
        assert alert.colour == "orange" and alert.content["colour_source"] == "level"
        assert alert.content["headline"]["zh"] == "市应急管理局（应急指挥部办公室）发布暴雨橙色预警"
        assert alert.expires_at is not None and alert.expires_at - alert.sent_at == timedelta(hours=24)


DEFS = Path(__file__).resolve().parents[1] / "process_defs"


@pytest.mark.parametrize(("old", "new", "says"), [
    ("colour_from: rainstorm_forecast.warning_colour", "colour_from: no_such_step.warning_colour",
     "unknown step 'no_such_step'"),
    ("colour_from: rainstorm_forecast.warning_colour", "colour_from: rainstorm_forecast.no_field",
     "has no form field 'no_field'"),
    ("colour_from: rainstorm_forecast.warning_colour", "colour_from: rainstorm_forecast.rainfall_1h",
     "is a number field; this needs choice"),
    ("colour_from: rainstorm_forecast.warning_colour", "colour_from: flood_risk_assessment.river_level_high",
     "neither an earlier stage's step nor among this step's dependencies"),
    ("expires_from: rainstorm_forecast.valid_until", "expires_from: rainstorm_forecast.rainfall_24h",
     "needs datetime"),
    ('"{issuer}发布暴雨{colour}预警信号"', '"{issuer}发布暴雨{colour}预警信号{flood_risk_assessment.hot_spots}"',
     "neither an earlier stage's step"),
    ('"{issuer}发布暴雨{colour}预警信号"', '"{issuer}发布{nonsense}"', "unknown placeholder {nonsense}"),
    ("valid_for: PT6H", "valid_for: soon", "not an ISO 8601 duration"),
])
def test_the_plan_check_refuses_warning_sources_that_do_not_exist_or_come_later(old: str, new: str,
                                                                                says: str) -> None:
    registry, _ = load_registry(DEFS / "departments.yaml")
    text = (DEFS / "flood.yaml").read_text(encoding="utf-8")
    assert old in text
    plan, problems = parse_plan(text.replace(old, new, 1), "flood.yaml", registry)
    assert plan is None and any(says in p.message for p in problems), [p.message for p in problems]


def test_the_plan_check_refuses_a_text_that_shows_an_internal_value(baton: str) -> None:
    registry, _ = load_registry(DEFS / "departments.yaml")
    text = (DEFS / "hazmat_leak.yaml").read_text(encoding="utf-8")
    old = '"{issuer}发布危险化学品泄漏{colour}预警"'
    assert old in text
    plan, problems = parse_plan(text.replace(old, '"{issuer}发布预警，隔离区{hazard_assessment.isolation_zone}"'),
                                "hazmat_leak.yaml", registry)
    assert plan is None and any("is not shared with the public" in p.message for p in problems)


def test_the_office_releases_a_warning_on_its_incident_page(api: Api) -> None:
    incident_id, alert, _ = _flood_draft("red")
    # The office's duty leader holds a meteorology leader's post here (an office user signing on the page).
    make_user("duty_signer", "office", positions=["duty_leader@meteorology"])
    office, signer = page_client(api.server, "office"), page_client(api.server, "duty_signer")
    page = office.get(f"/office/incidents/{incident_id}")
    assert page.status_code == 200 and 'id="warning-release"' in page.text and "已拟稿，待审核" in page.text
    assert "市气象台发布暴雨红色预警信号" in page.text
    token = csrf_of(office, f"/office/incidents/{incident_id}")
    base = f"/office/incidents/{incident_id}/warnings/{alert.id}"
    assert office.post(f"{base}/sign", data={"csrf": token}).status_code == 409  # not reviewed
    assert office.post(f"{base}/review", data={"csrf": token}).status_code == 303
    assert office.post(f"{base}/sign", data={"csrf": token}).status_code == 403  # the office holds no signer post
    page = signer.get(f"/office/incidents/{incident_id}")
    assert "已审核，待签发" in page.text and f'action="{base}/sign"' in page.text
    assert signer.post(f"{base}/sign", data={"csrf": csrf_of(signer, f"/office/incidents/{incident_id}")}
                       ).status_code == 303
    assert "市气象台发布暴雨红色预警信号" in _public(api)
    cancel = office.post(f"/office/incidents/{incident_id}/warning-cancel", data={"csrf": token, "reason": "雨停"})
    assert cancel.status_code == 303 and "暴雨红色" not in _public(api)


def test_the_meteorology_bureaus_director_signs_off_from_the_inbox(api: Api) -> None:
    """A department's leader has no office page: the reviewed drafts they may sign wait in their inbox."""
    incident_id, alert, _ = _flood_draft("orange")
    _leader(api)
    make_user("met_clerk", "department", "meteorology")
    office, director, clerk = (page_client(api.server, name) for name in ("office", "met_director", "met_clerk"))
    assert 'id="to-sign"' not in director.get("/inbox").text  # not reviewed yet: nothing to sign
    office.post(f"/office/incidents/{incident_id}/warnings/{alert.id}/review",
                data={"csrf": csrf_of(office, f"/office/incidents/{incident_id}")})
    inbox = director.get("/inbox").text
    assert 'id="to-sign"' in inbox and "待我签发的预警" in inbox and "市气象台发布暴雨橙色预警信号" in inbox
    assert 'id="to-sign"' not in clerk.get("/inbox").text  # a clerk holds no signer's post
    refused = clerk.post(f"/warnings/{alert.id}/sign", data={"csrf": csrf_of(clerk, "/inbox")})
    assert refused.status_code == 403 and "暴雨橙色" not in _public(api)
    done = director.post(f"/warnings/{alert.id}/sign", data={"csrf": csrf_of(director, "/inbox")})
    assert done.status_code == 303 and done.headers["location"] == "/inbox?done=signed"
    assert "预警已签发" in director.get("/inbox?done=signed").text
    assert "市气象台发布暴雨橙色预警信号" in _public(api)
    assert "warning.signed" in _kinds(incident_id)


def test_a_city_that_names_itself_issues_its_warnings_as_its_observatory(baton: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """杭州市气象台发布暴雨红色预警信号, not 市气象台…, once Baton knows the city's name (BATON_CITY_NAME)."""
    from core.platform.settings import get_settings

    monkeypatch.setenv("BATON_CITY_NAME", "杭州市")
    monkeypatch.setenv("BATON_CITY_NAME_EN", "Hangzhou")
    get_settings.cache_clear()
    _, alert, _ = _flood_draft("red")
    assert alert.content["headline"] == {"zh": "杭州市气象台发布暴雨红色预警信号",
                                         "en": "Hangzhou Municipal Meteorological Observatory issues the Red "
                                               "rainstorm warning"}
    assert alert.content["issuer"]["zh"] == "杭州市气象台"
    monkeypatch.setenv("BATON_CITY_NAME", "<script>")  # a name is a Chinese place name, or Baton does not start
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="city_name"):
        get_settings()
