"""A shelter's occupancy reported live during an incident (issue 18, items 1 and 5): by the shelter's owning
department or the office, through the API or the registers page; a whole number from 0 to the capacity (over it:
409 `over_capacity`, the message in the reader's language); `occupancy_at` set; one entry in the register chain;
another department refused and nothing changed; the map's shelter layer shows the new count and its time."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import select

from core.ledger import chain as ledger
from core.platform.db import session_scope
from core.registers.models import Shelter
from core.users.models import User
from tests.api_server import Api, error_of
from tests.fixtures.api import csrf_of, issued_token, make_user, page_client

SHELTERS = ("code,name_zh,kind,capacity,occupancy,organisation,lon,lat\n"
            "BN-1,滨江公园避难场所,emergency,800,120,civil_affairs,120.21,30.21\n"
            "BN-2,城西体育馆避难场所,short_term,300,0,water_affairs,120.10,30.28\n")


def shelters(api: Api) -> dict[str, str]:
    imported = api.call("office", "POST", "/api/registers/shelter/import",
                        json={"filename": "shelters.csv", "content": SHELTERS})
    assert imported.status_code == 200 and not imported.json()["refused"], imported.text
    make_user("civil", "department", "civil_affairs")
    api.tokens["civil"] = issued_token("civil")
    with session_scope() as session:
        return {s.code: s.id for s in session.exec(select(Shelter)).all()}


def shelter(code: str) -> Shelter:
    with session_scope() as session:
        found = session.exec(select(Shelter).where(Shelter.code == code)).one()
        session.expunge(found)
        return found


def reports() -> list[Any]:
    with session_scope() as session:
        return [e for e in ledger.read_named(session, ledger.REGISTERS) if e.kind == "shelter.occupancy_reported"]


def report(api: Api, who: str, shelter_id: str, occupancy: Any) -> Any:
    return api.call(who, "POST", f"/api/registers/shelter/{shelter_id}/occupancy", json={"occupancy": occupancy})


def test_the_owning_department_reports_occupancy_which_is_stamped_and_ledgered(api: Api) -> None:
    ids = shelters(api)
    assert shelter("BN-1").occupancy_at is None
    answer = report(api, "civil", ids["BN-1"], 640)
    assert answer.status_code == 200, answer.text
    assert answer.json()["occupancy"] == 640 and answer.json()["occupancy_at"]
    kept = shelter("BN-1")
    assert kept.occupancy == 640 and kept.occupancy_at is not None and kept.updated_by == "user:civil"
    [entry] = reports()
    assert (entry.actor, entry.subject, entry.from_party) == ("user:civil", f"shelter:{ids['BN-1']}",
                                                              "civil_affairs")
    assert entry.details["occupancy"] == 640 and entry.details["previous"] == 120
    with session_scope() as session:
        assert ledger.verify_chain(session, ledger.REGISTERS).valid
    # the office reports for any shelter; the full capacity is allowed, and so is 0
    assert report(api, "office", ids["BN-2"], 300).status_code == 200
    assert report(api, "office", ids["BN-2"], 0).json()["occupancy"] == 0
    assert len(reports()) == 3


def test_over_capacity_negative_or_not_a_number_is_refused_in_the_readers_language(api: Api) -> None:
    ids = shelters(api)
    over = error_of(report(api, "civil", ids["BN-1"], 801), 409, "over_capacity")
    assert over["details"]["capacity"] == 800 and "800" in over["message"] and "超过" in over["message"]
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == "civil")).one()
        user.lang = "en"
        session.add(user)
    over_en = error_of(report(api, "civil", ids["BN-1"], 900), 409, "over_capacity")
    assert "more than the shelter holds (800)" in over_en["message"]
    error_of(report(api, "civil", ids["BN-1"], -1), 422, "occupancy_invalid")
    error_of(report(api, "civil", ids["BN-1"], 12.5), 422)
    error_of(report(api, "civil", ids["BN-1"], "many"), 422)
    kept = shelter("BN-1")
    assert (kept.occupancy, kept.occupancy_at) == (120, None) and reports() == []


def test_another_department_or_a_manager_is_refused_and_changes_nothing(api: Api) -> None:
    ids = shelters(api)
    for who in ("water_affairs", "manager", "meteorology"):
        error_of(report(api, who, ids["BN-1"], 10), 403, "forbidden")
    error_of(report(api, "civil", "no-such-shelter", 10), 404)
    assert (shelter("BN-1").occupancy, shelter("BN-1").occupancy_at) == (120, None) and reports() == []


def test_the_map_shows_the_reported_occupancy_and_its_time(api: Api) -> None:
    ids = shelters(api)

    def shown() -> dict[str, Any]:
        response = api.call("meteorology", "GET", "/api/map/layers")
        assert response.status_code == 200, response.text
        layer = next(x for x in response.json()["layers"] if x["key"] == "register_shelter")
        feature = next(f for f in layer["data"]["features"] if f["properties"]["code"] == "BN-1")
        return {row[0]["en"]: row[1] for row in feature["properties"]["rows"]}

    before = shown()
    assert before["Occupancy"] == 120 and before["Occupancy reported"] == {"zh": "未上报", "en": "not reported"}
    assert report(api, "civil", ids["BN-1"], 555).status_code == 200
    after = shown()
    assert after["Occupancy"] == 555
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", after["Occupancy reported"]["zh"])


def test_the_registers_page_form_reports_for_the_owner_only_and_refuses_over_capacity(api: Api) -> None:
    ids = shelters(api)
    with page_client(api.server, "civil") as client:
        page = client.get("/registers?kind=shelter")
        assert f'data-shelter="{ids["BN-1"]}"' in page.text and f'data-shelter="{ids["BN-2"]}"' not in page.text
        csrf = csrf_of(client, "/registers?kind=shelter")
        over = client.post(f"/registers/shelter/{ids['BN-1']}/occupancy", data={"csrf": csrf, "occupancy": "801"})
        assert over.status_code == 409 and 'data-problem="over_capacity"' in over.text
        assert "超过" in over.text or "容纳" in over.text
        bad = client.post(f"/registers/shelter/{ids['BN-1']}/occupancy", data={"csrf": csrf, "occupancy": "abc"})
        assert bad.status_code == 422 and 'data-problem="occupancy_invalid"' in bad.text
        assert shelter("BN-1").occupancy == 120
        done = client.post(f"/registers/shelter/{ids['BN-1']}/occupancy", data={"csrf": csrf, "occupancy": " 700 "})
        assert done.status_code == 303 and "done=occupancy" in done.headers["location"]
        assert 'data-done="occupancy"' in client.get(done.headers["location"]).text
        assert shelter("BN-1").occupancy == 700 and shelter("BN-1").occupancy_at is not None
        # not the department's shelter: refused as on the API, and nothing changes
        other = client.post(f"/registers/shelter/{ids['BN-2']}/occupancy", data={"csrf": csrf, "occupancy": "5"})
        assert other.status_code == 403 and shelter("BN-2").occupancy == 0
    assert len(reports()) == 1


def import_shelters(api: Api, occupancy: int, address: str = "") -> dict[str, Any]:
    """The office imports BN-1 (capacity 800) with the file's occupancy figure, as the users do, through the API."""
    content = ("code,name_zh,kind,capacity,occupancy,address,organisation,lon,lat\n"
               f"BN-1,滨江公园避难场所,emergency,800,{occupancy},{address},civil_affairs,120.21,30.21\n")
    response = api.call("office", "POST", "/api/registers/shelter/import",
                        json={"filename": "shelters.csv", "content": content})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert not body["refused"], body["refused"]
    return body


def test_reimporting_the_shelter_file_keeps_the_live_count_until_the_file_gives_a_new_one(api: Api) -> None:
    """The same file twice changes nothing, also after the shelter reported its occupancy live: the file's figure
    is the count of its day, not a newer report. A file with a different figure replaces the live count, and the
    time of a live report no longer goes with it."""
    assert import_shelters(api, 120)["added"] == 1
    make_user("civil", "department", "civil_affairs")
    api.tokens["civil"] = issued_token("civil")
    shelter_id = shelter("BN-1").id
    assert report(api, "civil", shelter_id, 640).status_code == 200
    reported_at = shelter("BN-1").occupancy_at
    assert reported_at is not None
    # The same file again: nothing changes, the live 640 stands with its time.
    assert import_shelters(api, 120)["unchanged"] == 1
    assert (shelter("BN-1").occupancy, shelter("BN-1").occupancy_at) == (640, reported_at)
    # Another column corrected, the same figure: the entry is updated, its live count is not put back.
    assert import_shelters(api, 120, address="滨江路1号")["updated"] == 1
    assert (shelter("BN-1").occupancy, shelter("BN-1").occupancy_at) == (640, reported_at)
    assert import_shelters(api, 120, address="滨江路1号")["unchanged"] == 1
    # A file counting anew (300): that is the occupancy now, no longer a live report; the same figure again changes
    # nothing, and a later live report stands against it in turn.
    assert import_shelters(api, 300, address="滨江路1号")["updated"] == 1
    assert (shelter("BN-1").occupancy, shelter("BN-1").occupancy_at) == (300, None)
    assert import_shelters(api, 300, address="滨江路1号")["unchanged"] == 1
    assert report(api, "office", shelter_id, 410).status_code == 200
    assert import_shelters(api, 300, address="滨江路1号")["unchanged"] == 1
    assert shelter("BN-1").occupancy == 410


def test_the_cli_import_shares_the_rule_and_keeps_the_live_count(api: Api, tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    assert import_shelters(api, 120)["added"] == 1
    assert report(api, "office", shelter("BN-1").id, 555).status_code == 200
    source = tmp_path / "shelters.csv"
    source.write_text("code,name_zh,kind,capacity,occupancy,organisation,lon,lat\n"
                      "BN-1,滨江公园避难场所,emergency,800,120,civil_affairs,120.21,30.21\n", encoding="utf-8")
    runner = CliRunner()
    again = runner.invoke(app, ["registers", "import", "shelter", str(source)])
    assert again.exit_code == 0 and "1 unchanged" in again.output, again.output
    assert shelter("BN-1").occupancy == 555 and shelter("BN-1").occupancy_at is not None
    source.write_text(source.read_text(encoding="utf-8").replace(",800,120,", ",800,90,"), encoding="utf-8")
    counted = runner.invoke(app, ["registers", "import", "shelter", str(source)])
    assert counted.exit_code == 0 and "1 updated" in counted.output, counted.output
    assert (shelter("BN-1").occupancy, shelter("BN-1").occupancy_at) == (90, None)
