"""Registers (issue 18 item 1): import and export CSV, XLSX and GeoJSON; every bad row named by number and field
and the good rows kept; idempotent by natural key; each import one record in the register chain; vulnerable
residents read only by their community and the office; entries inside a warning's area."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from sqlmodel import select

from core.geo.shapes import gcj02_to_wgs84, haversine_km, parse_cap_area, wgs84_to_gcj02
from core.ledger import chain as ledger
from core.platform.db import session_scope
from core.registers import service
from core.registers.models import MaterialReserve, RegisterKind, RiskPoint
from core.users.models import User
from tests.api_server import Api, error_of
from tests.fixtures.api import issued_token, make_user

RISK_HEADER = ["编号", "名称", "类型", "责任单位", "经度", "纬度", "等级", "威胁人数"]
# The seven bad rows of the 500 (by data index) and what each names: (field, code).
BAD = {
    17: ("lon", "outside_china"),  # a point in the Pacific
    58: ("geometry", "ring_not_closed"),
    120: ("people_at_risk", "negative"),
    201: ("people_at_risk", "not_a_number"),
    333: ("name_zh", "control_character"),
    404: ("kind", "bad_choice"),
    450: ("organisation", "unknown_organisation"),
}


def flood_points(count: int = 500) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for i in range(count):
        lon, lat = 113.20 + (i % 25) * 0.004, 23.05 + (i // 25) * 0.004
        rows.append([f"JS-{i:04d}", f"积水点{i}号", "积水点", "water_affairs", lon, lat, "一般", 10 + i])
    return rows


def xlsx(header: list[str], rows: list[list[Any]], sheet: str = "风险隐患点", merge: str | None = None) -> bytes:
    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.title = sheet
    ws.append(header)
    for row in rows:
        ws.append(row)
    if merge:
        ws.merge_cells(merge)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def bad_flood_xlsx() -> bytes:
    rows = flood_points()
    rows[17][4], rows[17][5] = 160.0, 10.0
    header = [*RISK_HEADER, "几何"]
    rows = [[*r, None] for r in rows]
    rows[58][4] = rows[58][5] = None
    rows[58][8] = json.dumps({"type": "Polygon", "coordinates": [[[113.2, 23.1], [113.21, 23.1], [113.21, 23.11],
                                                                  [113.2, 23.11]]]})
    rows[120][7] = -5
    rows[201][7] = "很多"
    rows[333][1] = "积水\x85点"  # a C1 control (a sheet cannot hold C0 ones)
    rows[404][2] = "火山口"
    rows[450][3] = "nobody_dept"
    return xlsx(header, rows)


def post_import(api: Api, who: str, kind: str, filename: str, data: bytes, **extra: Any) -> Any:
    body = {"filename": filename, "content_base64": base64.b64encode(data).decode(), **extra}
    return api.call(who, "POST", f"/api/registers/{kind}/import", json=body)


def count(table: type[Any]) -> int:
    with session_scope() as session:
        return len(session.exec(select(table)).all())


def registers_chain() -> int:
    with session_scope() as session:
        return len(ledger.read_named(session, ledger.REGISTERS))


def test_a_500_row_xlsx_of_flood_risk_points_with_7_bad_rows_keeps_493_and_names_the_7(api: Api) -> None:
    data = bad_flood_xlsx()
    response = post_import(api, "office", "risk_point", "flood.xlsx", data)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["rows"], body["added"], body["updated"], body["unchanged"]) == (500, 493, 0, 0), body["refused"]
    named = [(p["row"], p["field"], p["code"]) for p in body["refused"]]
    assert named == [(index + 2, fld, code) for index, (fld, code) in sorted(BAD.items())]
    assert all(p["message"] and p["message_zh"] for p in body["refused"])
    assert count(RiskPoint) == 493
    # The import is one entry in the ledger chain `registers`, with the file's name and SHA-256 and its counts.
    with session_scope() as session:
        [record] = ledger.read_named(session, ledger.REGISTERS)
        assert (record.kind, record.subject, record.actor) == ("register.imported", "register:risk_point",
                                                               "user:office")
        assert record.incident_id is None and body["record"] == record.id
        details = record.details
        assert (details["source"], details["file_sha256"]) == ("flood.xlsx", hashlib.sha256(data).hexdigest())
        assert (details["rows"], details["added"], details["refused"]) == (500, 493, 7)
        assert [p["row"] for p in details["problems"]] == [i + 2 for i in sorted(BAD)]

    # The same file again changes nothing.
    with session_scope() as session:
        before = {(r.id, r.code, r.updated_at, r.geometry) for r in session.exec(select(RiskPoint)).all()}
    again = post_import(api, "office", "risk_point", "flood.xlsx", data).json()
    assert (again["added"], again["updated"], again["unchanged"], len(again["refused"])) == (0, 0, 493, 7)
    with session_scope() as session:
        assert {(r.id, r.code, r.updated_at, r.geometry) for r in session.exec(select(RiskPoint)).all()} == before
        assert ledger.verify_chain(session, ledger.REGISTERS).valid
        assert len(ledger.read_named(session, ledger.REGISTERS)) == 2

    # A changed row updates its entry (found by kind and code), keeping its id.
    changed = ("编号,名称,类型,责任单位,经度,纬度,威胁人数\n"
               "JS-0000,积水点0号（改）,积水点,water_affairs,113.2,23.05,99\n")
    third = api.call("office", "POST", "/api/registers/risk_point/import",
                     json={"filename": "one.csv", "content": changed}).json()
    assert (third["added"], third["updated"]) == (0, 1)
    with session_scope() as session:
        entry = session.exec(select(RiskPoint).where(RiskPoint.code == "JS-0000")).one()
        assert (entry.name_zh, entry.people_at_risk) == ("积水点0号（改）", 99)
        assert entry.id in {b[0] for b in before}

    # Listed and searched by every user; a point's place is WGS-84 GeoJSON.
    found = api.call("meteorology", "GET", "/api/registers/risk_point", params={"q": "积水点49"}).json()
    assert [e["code"] for e in found] == ["JS-0049"] + [f"JS-{i:04d}" for i in range(490, 500)]
    assert json.loads(found[0]["geometry"])["type"] == "Point"


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("flood.xlsx", xlsx(RISK_HEADER, flood_points(3), sheet="Sheet1"), "wrong_sheet"),
    ("flood.xlsx", xlsx(RISK_HEADER, flood_points(3), merge="A1:B1"), "merged_header"),
    ("flood.xlsx", xlsx(["编号", "名称", "经度", "纬度"], flood_points(3)), "missing_column"),
    ("flood.xlsx", b"PK\x03\x04 not really a workbook", "unreadable"),
    ("flood.csv", "编号,名称,类型,类型\n".encode(), "duplicate_column"),
    ("flood.csv", "编号,名称\n".encode("utf-16"), "not_utf8"),
    ("flood.geojson", b'{"type": "Feature"}', "not_feature_collection"),
    ("flood.txt", b"x", "unknown_format"),
])
def test_a_file_that_cannot_be_read_whole_is_refused_and_nothing_is_imported(api: Api, name: str, data: bytes,
                                                                             reason: str) -> None:
    error = error_of(post_import(api, "office", "risk_point", name, data), 422, "register_file_invalid")
    assert error["details"]["reason"] == reason and error["details"]["message_zh"]
    assert count(RiskPoint) == 0 and registers_chain() == 0


RESERVE_CSV = (
    "code,name_zh,category,unit,quantity,safety_stock,warehouse,organisation,lon,lat,expires_on\n"
    "SB-1,编织袋,3010101,条,20000,5000,市防汛物资仓库,water_affairs,113.25,23.10,2030-06-30\n"  # 2 good
    "SB-2,救生衣,2020101,件,-3,0,市防汛物资仓库,water_affairs,113.25,23.10,\n"  # 3 negative
    "SB-3,冲锋舟,2030101,艘,NaN,0,市防汛物资仓库,water_affairs,113.25,23.10,\n"  # 4 NaN
    "SB-4,帐篷,1010101,顶,inf,0,市防汛物资仓库,water_affairs,113.25,23.10,\n"  # 5 infinite
    "SB-5,棉被,1020101,床,12.5,0,市防汛物资仓库,water_affairs,113.25,23.10,\n"  # 6 not whole
    "SB-6,矿泉水,1030101,箱,100,0,市防汛物资仓库,water_affairs,113.25,23.10,2526-01-01\n"  # 7 far future
    "SB-7,发电机,20X,台,5,0,市防汛物资仓库,water_affairs,113.25,23.10,\n"  # 8 bad category
    "SB-8,照明灯,2040101,台,5,0,市防汛物资仓库,water_affairs,,,\n"  # 9 no place
    "SB-9,抽水泵,2050101,台,\"1,200\",0,\"仓库\u0085\",water_affairs,113.25,23.10,2027/01/31\n"  # 10 control char
    "SB-1,编织袋,3010101,条,1,0,重复,water_affairs,113.25,23.10,\n"  # 11 duplicate code
)


def test_reserve_quantities_and_dates_are_refused_per_row(api: Api) -> None:
    body = api.call("office", "POST", "/api/registers/reserve/import",
                    json={"filename": "reserves.csv", "content": RESERVE_CSV}).json()
    assert [(p["row"], p["field"], p["code"]) for p in body["refused"]] == [
        (3, "quantity", "negative"), (4, "quantity", "not_finite"), (5, "quantity", "not_finite"),
        (6, "quantity", "not_whole"), (7, "expires_on", "far_future"), (8, "category", "bad_category"),
        (9, "lon", "no_location"), (10, "warehouse", "control_character"), (11, "code", "duplicate_key")]
    assert body["added"] == 1
    with session_scope() as session:
        [reserve] = session.exec(select(MaterialReserve)).all()
        assert (reserve.quantity, reserve.safety_stock, reserve.unit, reserve.category) == (20000, 5000, "条",
                                                                                            "3010101")
        assert reserve.expires_on is not None and reserve.expires_on.isoformat() == "2030-06-30"


def test_geojson_and_xlsx_round_trip_and_gcj02_input_is_converted(api: Api) -> None:
    # A shelter source in GCJ-02 (as 高德 gives it): stored in WGS-84.
    wgs = (113.2644, 23.1291)
    gcj = wgs84_to_gcj02(*wgs)
    park = [[113.30, 23.10], [113.31, 23.10], [113.31, 23.11], [113.30, 23.11], [113.30, 23.10]]
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": list(gcj)},
         "properties": {"code": "BN-1", "名称": "越秀公园应急避难场所", "name_en": "Yuexiu Park shelter",
                        "organisation": "emergency_office", "容纳人数": 5000, "当前人数": 120, "类型": "短期"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [park]},
         "properties": {"code": "BN-2", "name_zh": "海珠湖公园", "organisation": "emergency_office", "capacity": 8000,
                        "datum": "wgs84"}},
    ]}
    first = api.call("office", "POST", "/api/registers/shelter/import",
                     json={"filename": "shelters.geojson", "content": json.dumps(collection, ensure_ascii=False),
                           "datum": "gcj02"}).json()
    assert (first["added"], first["refused"]) == (2, []), first
    listed = {e["code"]: e for e in api.call("office", "GET", "/api/registers/shelter").json()}
    assert haversine_km(listed["BN-1"]["lon"], listed["BN-1"]["lat"], *wgs) < 0.001
    assert haversine_km(*gcj, *wgs) > 0.2
    assert (listed["BN-1"]["kind"], listed["BN-1"]["capacity"], listed["BN-1"]["occupancy"]) == ("short_term", 5000,
                                                                                                   120)
    # BN-2 named its datum wgs84: not shifted.
    assert json.loads(listed["BN-2"]["geometry"])["coordinates"] == [park]

    for fmt in ("geojson", "xlsx", "csv"):
        exported = api.call("office", "GET", "/api/registers/shelter/export", params={"format": fmt})
        assert exported.status_code == 200
        again = post_import(api, "office", "shelter", f"shelters.{fmt}", exported.content)
        assert again.status_code == 200, again.text
        assert (again.json()["added"], again.json()["updated"], again.json()["unchanged"]) == (0, 0, 2), (fmt,
                                                                                                           again.json())
    assert gcj02_to_wgs84(*gcj) == pytest.approx(wgs, abs=1e-8)


def test_a_department_imports_only_its_own_entries(api: Api) -> None:
    csv_text = ("code,name_zh,kind,organisation,lon,lat\n"
                "DZ-1,白云山滑坡点,地质灾害隐患点,,113.30,23.18\n"  # 2: blank → its own
                "DZ-2,帽峰山崩塌点,geohazard,meteorology,113.45,23.30\n")  # 3: another's
    body = api.call("water_affairs", "POST", "/api/registers/risk_point/import",
                    json={"filename": "geo.csv", "content": csv_text}).json()
    assert body["added"] == 1
    assert [(p["row"], p["field"], p["code"]) for p in body["refused"]] == [(3, "organisation",
                                                                              "not_your_organisation")]
    # the office's entry with the same key is not the department's to change
    api.call("office", "POST", "/api/registers/risk_point/import",
             json={"filename": "geo.csv", "content": "code,name_zh,kind,organisation,lon,lat\n"
                                                     "DZ-9,石门滑坡点,geohazard,natural_resources,113.3,23.2\n"})
    taken = api.call("water_affairs", "POST", "/api/registers/risk_point/import",
                     json={"filename": "geo.csv", "content": "code,name_zh,kind,lon,lat\n"
                                                             "DZ-9,石门滑坡点,geohazard,113.3,23.2\n"}).json()
    assert [(p["field"], p["code"]) for p in taken["refused"]] == [("code", "owned_by_other")]
    error_of(api.call("manager", "POST", "/api/registers/risk_point/import",
                      json={"filename": "geo.csv", "content": csv_text}), 403, "forbidden")


RESIDENTS = ("code,name_zh,category,organisation,address,contact_phone,keeper_name,lon,lat\n"
             "R-1,李阿婆,独居老人,community,幸福里3栋501,13800000001,王网格员,113.26,23.13\n"
             "R-2,陈伯,失能,community,幸福里5栋102,13800000002,王网格员,113.27,23.14\n")


def test_vulnerable_residents_are_read_only_by_their_community_and_the_office(api: Api) -> None:
    make_user("community_grid", "department", "community")
    api.tokens["community_grid"] = issued_token("community_grid")
    # a department that is not a community may not keep them, nor may the office file them under one
    error_of(api.call("water_affairs", "POST", "/api/registers/vulnerable_resident/import",
                      json={"filename": "r.csv", "content": RESIDENTS}), 403, "forbidden")
    wrong = api.call("office", "POST", "/api/registers/vulnerable_resident/import",
                     json={"filename": "r.csv", "content": RESIDENTS.replace(",community,", ",water_affairs,")})
    assert {p["code"] for p in wrong.json()["refused"]} == {"not_a_community"}
    assert api.call("office", "POST", "/api/registers/vulnerable_resident/import",
                    json={"filename": "r.csv", "content": RESIDENTS}).json()["added"] == 2
    for who, expected in (("office", 2), ("community_grid", 2), ("water_affairs", 0), ("manager", 0), ("admin", 0)):
        listed = api.call(who, "GET", "/api/registers/vulnerable_resident").json()
        assert len(listed) == expected, who
        exported = api.call(who, "GET", "/api/registers/vulnerable_resident/export", params={"format": "csv"})
        assert ("李阿婆" in exported.text) == (expected > 0), who
        geo = api.call(who, "GET", "/api/registers/vulnerable_resident/export", params={"format": "geojson"})
        assert len(geo.json()["features"]) == expected, who
        layers = api.call(who, "GET", "/api/registers/layers").json()
        assert len(layers.get("vulnerable_resident", {"features": []})["features"]) == expected, who
        assert "13800000001" not in json.dumps(layers, ensure_ascii=False) or expected, who
        area = parse_cap_area(circles=["23.13,113.26 5"])
        with session_scope() as session:
            user = session.exec(select(User).where(User.username == who)).one()
            inside = service.entries_within(session, area=area, kinds=[RegisterKind.vulnerable_resident],
                                            principal=user)
        assert len(inside[RegisterKind.vulnerable_resident]) == expected, who


def test_entries_within_a_warning_polygon_or_circle(api: Api) -> None:
    api.call("office", "POST", "/api/registers/shelter/import", json={"filename": "s.csv", "content": (
        "code,name_zh,organisation,capacity,lon,lat\n"
        "S-IN,体育馆,emergency_office,3000,113.25,23.12\n"
        "S-OUT,远郊学校,emergency_office,800,113.60,23.50\n")})
    area = parse_cap_area(polygons=["23.10,113.20 23.10,113.30 23.15,113.30 23.15,113.20 23.10,113.20"])
    with session_scope() as session:
        office = session.exec(select(User).where(User.username == "office")).one()
        inside = service.entries_within(session, area=area, kinds=[RegisterKind.shelter, RegisterKind.risk_point],
                                        principal=office)
        assert [e.code for e in inside[RegisterKind.shelter]] == ["S-IN"] and inside[RegisterKind.risk_point] == []
        far = parse_cap_area(circles=["23.50,113.60 1"])
        assert [e.code for e in service.entries_within(session, area=far, kinds=[RegisterKind.shelter],
                                                       principal=office)[RegisterKind.shelter]] == ["S-OUT"]


def test_cli_import_names_file_row_and_field_and_is_idempotent(api: Api, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    source = tmp_path / "teams.csv"
    source.write_text("编号,名称,责任单位,人数,装备,是否备勤,经度,纬度\n"
                      "DW-1,市防汛抢险队,water_affairs,60,冲锋舟6艘,是,113.28,23.12\n"
                      "DW-2,蓝天救援队,volunteers,-4,,是,113.29,23.13\n"
                      "DW-3,山地搜救队,volunteers,20,,也许,113.29,23.13\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["registers", "import", "team", str(source)])
    assert result.exit_code == 1, result.output
    assert f"{source}:3:headcount: negative:" in result.output
    assert f"{source}:4:on_call: not_yes_no:" in result.output
    assert "1 added" in result.output
    again = runner.invoke(app, ["registers", "import", "team", str(source)])
    assert "0 added, 0 updated, 1 unchanged, 2 rows refused" in again.output, again.output
    out = tmp_path / "teams.geojson"
    exported = runner.invoke(app, ["registers", "export", "team", str(out)])
    assert exported.exit_code == 0, exported.output
    [feature] = json.loads(out.read_text(encoding="utf-8"))["features"]
    assert feature["properties"]["headcount"] == 60 and feature["properties"]["on_call"] is True
    broken = tmp_path / "teams.xlsx"
    broken.write_bytes(xlsx(["编号"], [], sheet="队伍"))
    refused = runner.invoke(app, ["registers", "import", "team", str(broken)])
    assert refused.exit_code == 1 and "register_file_invalid" in refused.output and "救援队伍" in refused.output


def test_counts_refuse_what_is_not_a_whole_number() -> None:
    from core.registers.columns import CellRefused, Column, count

    column = Column("quantity", "数量", "Quantity", kind="count")
    assert [count(column, v) for v in (3, 3.0, "3", " 1,200 ", "1e3")] == [3, 3, 3, 1200, 1000]
    for value, code in ((-1, "negative"), (math.nan, "not_finite"), ("-inf", "not_finite"), ("x", "not_a_number"),
                        (True, "not_a_number"), (0.5, "not_whole"), (10**13, "too_large")):
        with pytest.raises(CellRefused) as caught:
            count(column, value)
        assert caught.value.code == code, value


def test_the_register_page_lists_by_kind_searches_and_hides_residents_from_others(api: Api) -> None:
    from tests.fixtures.api import page_client

    make_user("community_grid", "department", "community")
    api.tokens["community_grid"] = issued_token("community_grid")
    api.call("office", "POST", "/api/registers/vulnerable_resident/import",
             json={"filename": "r.csv", "content": RESIDENTS})
    api.call("office", "POST", "/api/registers/risk_point/import", json={"filename": "f.csv", "content": (
        "code,name_zh,name_en,kind,organisation,lon,lat\n"
        "JS-1,中山路下穿隧道,Zhongshan Rd underpass,积水点,water_affairs,113.26,23.13\n"
        "WF-1,老城区危房,,危旧房,housing,113.27,23.12\n")})
    with page_client(api.server, "water_affairs") as client:
        page = client.get("/registers?kind=risk_point&q=隧道")
        assert page.status_code == 200
        assert "中山路下穿隧道" in page.text and "老城区危房" not in page.text and "积水点" in page.text
        assert 'data-kind="vulnerable_resident"' not in page.text
        hidden = client.get("/registers?kind=vulnerable_resident")
        assert hidden.status_code == 200 and "李阿婆" not in hidden.text and "13800000001" not in hidden.text
    with page_client(api.server, "community_grid") as client:
        assert "李阿婆" in client.get("/registers?kind=vulnerable_resident").text
    with page_client(api.server, "manager") as client:
        assert "李阿婆" not in client.get("/registers?kind=vulnerable_resident").text


def test_formula_and_markup_text_is_kept_as_text_in_every_export_and_page(api: Api) -> None:
    """A name a spreadsheet would run (=HYPERLINK…) is written with a leading apostrophe in the CSV, as a string
    cell in the XLSX, as given in GeoJSON, escaped on the page; importing the CSV back changes nothing."""
    from tests.fixtures.api import page_client

    name = '=HYPERLINK("http://x","<b>点</b>")'
    quoted = name.replace('"', '""')
    content = f'code,name_zh,kind,organisation,lon,lat\nJS-9,"{quoted}",积水点,water_affairs,113.26,23.13\n'
    imported = api.call("office", "POST", "/api/registers/risk_point/import", json={"filename": "f.csv",
                                                                                   "content": content}).json()
    assert imported["added"] == 1 and not imported["refused"], imported
    csv_text = api.call("office", "GET", "/api/registers/risk_point/export?format=csv").text
    assert f"'{name}".replace('"', '""') in csv_text
    again = api.call("office", "POST", "/api/registers/risk_point/import",
                     json={"filename": "back.csv", "content": csv_text}).json()
    assert again["unchanged"] == 1 and again["added"] == again["updated"] == 0, again
    book = load_workbook(io.BytesIO(api.call("office", "GET", "/api/registers/risk_point/export?format=xlsx").content))
    cells = [c for row in book.active.iter_rows() for c in row if c.value == name]
    assert cells and all(c.data_type == "s" for c in cells)
    geo = api.call("office", "GET", "/api/registers/risk_point/export?format=geojson").json()
    assert [f["properties"]["name_zh"] for f in geo["features"]] == [name]
    with page_client(api.server, "water_affairs") as client:
        page = client.get("/registers?kind=risk_point").text
        assert "<b>点</b>" not in page and "&lt;b&gt;点&lt;/b&gt;" in page
