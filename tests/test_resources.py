"""Resources in incidents (issue 18, item 4): a department requests reserves on an incident, the owning department
approves all or part (drawing the reserve down exactly once, never below zero, also under concurrent approvals on
SQLite and PostgreSQL), refuses with a reason, dispatches; the requester confirms receipt and returns what was not
consumed; a reserve under its safety stock opens a replenishment; every step is in the ledger; bad input is refused
field by field; requests and commitments export as EDXL-RM 1.0 messages valid against the OASIS schemas."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cache
from typing import Any

import httpx
import pytest
import xmlschema
from lxml import etree
from sqlmodel import select

from core.ledger.chain import verify_incident
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.registers.models import MaterialReserve
from core.resources import edxl
from core.resources.models import Replenishment, ReserveMovement, ResourceRequest
from tests.api_server import Api, error_of, flood, ledger_kinds, said_in_english

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)


def make_reserve(*, quantity: int, safety_stock: int = 0, organisation: str = "emergency_office",
                 category: str = "1010101", code: str | None = None, name: str = "防汛编织袋") -> str:
    """A material reserve in the register (sand bags of the emergency management bureau unless told)."""
    with session_scope() as session:
        reserve = MaterialReserve(code=code or f"R-{utcnow().timestamp()}-{quantity}-{organisation}", name_zh=name,
                                  name_en="Sand bags", organisation=organisation, category=category, unit="袋",
                                  quantity=quantity, safety_stock=safety_stock, warehouse="市应急物资储备库")
        session.add(reserve)
        session.flush()
        return reserve.id


def stock(reserve_id: str) -> int:
    with session_scope() as session:
        reserve = session.get(MaterialReserve, reserve_id)
        assert reserve is not None
        return reserve.quantity


def ask(quantity: Any = 500, **fields: Any) -> dict[str, Any]:
    return {"quantity": quantity, "needed_by": (utcnow() + timedelta(hours=6)).isoformat(),
            "destination": "城东区解放路下穿隧道", "lon": 114.305, "lat": 30.593, **fields}


def request_on(api: Api, incident_id: str, reserve_id: str, quantity: int = 500, who: str = "water_affairs",
               **fields: Any) -> dict[str, Any]:
    response = api.call(who, "POST", f"/api/incidents/{incident_id}/resource-requests",
                        json=ask(quantity, reserve_id=reserve_id, **fields))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def act(api: Api, who: str, request_id: str, step: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return api.call(who, "POST", f"/api/resource-requests/{request_id}/{step}", json=body)


def movements(request_id: str) -> list[tuple[str, int]]:
    with session_scope() as session:
        return [(m.kind, m.quantity) for m in session.exec(
            select(ReserveMovement).where(ReserveMovement.request_id == request_id)).all()]


def resource_kinds(incident_id: str) -> list[str]:
    return [kind for kind, _ in ledger_kinds(incident_id) if kind.startswith(("resource.", "reserve."))]


# -- the whole path -----------------------------------------------------------------------------------------------


def test_request_partial_approval_dispatch_receipt_and_return_move_stock_and_ledger_each_step(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=2000, safety_stock=100)
    request = request_on(api, incident.id, reserve, 500)
    assert request["status"] == "requested" and request["supplier"] == "emergency_office"
    assert request["requester"] == "water_affairs" and request["unit"] == "袋"
    # Asking draws nothing; the owning department (the office, for the bureau's reserves) approves 300 of 500.
    assert stock(reserve) == 2000
    approved = act(api, "office", request["id"], "approve", {"quantity": 300})
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["quantity_approved"] == 300
    assert stock(reserve) == 1700
    assert act(api, "office", request["id"], "dispatch", {"note": "鄂A·12345 王师傅"}).json()["status"] == "dispatched"
    received = act(api, "water_affairs", request["id"], "receive")
    assert received.json()["status"] == "received" and received.json()["quantity_received"] == 300
    returned = act(api, "water_affairs", request["id"], "return", {"quantity": 120})
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == "returned" and returned.json()["consumed"] == 180
    assert stock(reserve) == 1820
    assert movements(request["id"]) == [("drawn", 300), ("returned", 120)]
    assert resource_kinds(incident.id) == ["resource.requested", "resource.approved", "resource.dispatched",
                                           "resource.received", "resource.returned"]
    with session_scope() as session:
        assert verify_incident(session, incident.id).valid
    # A step out of order is a conflict, and moves nothing.
    error_of(act(api, "water_affairs", request["id"], "return", {"quantity": 1}), 409, "resource_request_state")
    assert stock(reserve) == 1820


def test_a_refusal_needs_a_reason_draws_nothing_and_is_final(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=800)
    request = request_on(api, incident.id, reserve, 200)
    error_of(act(api, "office", request["id"], "refuse", {"reason": ""}), 422, "invalid_request")
    refused = act(api, "office", request["id"], "refuse", {"reason": "库存须优先保障城西区堤防"})
    assert refused.status_code == 200 and refused.json()["status"] == "refused"
    assert refused.json()["refusal_reason"] == "库存须优先保障城西区堤防"
    error_of(act(api, "office", request["id"], "approve"), 409, "resource_request_state")
    error_of(api.call("office", "GET", f"/api/resource-requests/{request['id']}/edxl-rm/commit"), 409,
             "not_committed")
    assert stock(reserve) == 800 and movements(request["id"]) == []
    assert resource_kinds(incident.id) == ["resource.requested", "resource.refused"]


def test_only_the_owner_approves_and_only_the_requester_receives(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=800)
    request = request_on(api, incident.id, reserve, 100)
    error_of(act(api, "water_affairs", request["id"], "approve"), 403, "forbidden")
    error_of(act(api, "manager", request["id"], "approve"), 403, "forbidden")
    error_of(act(api, "public_security", request["id"], "approve"), 404, "not_found")
    assert act(api, "office", request["id"], "approve").status_code == 200
    act(api, "office", request["id"], "dispatch")
    error_of(act(api, "office", request["id"], "receive"), 403, "forbidden")
    # Scoping: a department sees what it asked for and what it was asked; another sees none of it.
    assert [r["id"] for r in api.call("water_affairs", "GET", "/api/resource-requests").json()["items"]] \
        == [request["id"]]
    assert api.call("public_security", "GET", "/api/resource-requests").json()["items"] == []
    assert [r["id"] for r in api.call("manager", "GET", "/api/resource-requests").json()["items"]] == [request["id"]]


def test_a_category_request_is_drawn_from_the_owners_reserve_of_that_category(api: Api) -> None:
    incident = flood("assessment")
    small = make_reserve(quantity=50, category="1010101", organisation="water_affairs", name="小库编织袋")
    large = make_reserve(quantity=900, category="1010102", organisation="water_affairs", name="大库编织袋")
    make_reserve(quantity=5000, category="2020101", organisation="water_affairs", name="救生衣")
    response = api.call("meteorology", "POST", f"/api/incidents/{incident.id}/resource-requests",
                        json=ask(400, category="10101"))
    assert response.status_code == 201, response.text
    assert response.json()["supplier"] == "water_affairs" and response.json()["reserve_id"] is None
    approved = act(api, "water_affairs", response.json()["id"], "approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["drawn_reserve_id"] == large
    assert (stock(small), stock(large)) == (50, 500)


# -- exactly once, never below zero -------------------------------------------------------------------------------


def concurrently(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls at the same moment, each in a thread of its own."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@BOTH
def test_two_concurrent_approvals_of_a_sand_bag_request_draw_the_reserve_down_exactly_once(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=1000, name="防汛编织袋（沙袋）")
    request = request_on(api, incident.id, reserve, 400)
    answers = concurrently([lambda: act(api, "office", request["id"], "approve", {"quantity": 400}),
                            lambda: act(api, "admin", request["id"], "approve", {"quantity": 400})])
    # Both answer with the approved request (the second is a replay of the same terms); stock moved once.
    assert sorted(a.status_code for a in answers) == [200, 200], [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"approved"}
    assert stock(reserve) == 600
    assert movements(request["id"]) == [("drawn", 400)]
    assert resource_kinds(incident.id) == ["resource.requested", "resource.approved"]
    # Different terms after the decision are a conflict, not a second draw.
    error_of(act(api, "office", request["id"], "approve", {"quantity": 100}), 409, "resource_request_state")
    assert stock(reserve) == 600


@BOTH
def test_concurrent_approvals_of_different_requests_never_take_a_reserve_below_zero(api: Api) -> None:
    incidents = [flood("assessment"), flood("assessment")]
    reserve = make_reserve(quantity=1000)
    requests = [request_on(api, incidents[i % 2].id, reserve, 300) for i in range(5)]
    answers = concurrently([lambda r=r: act(api, "office", r["id"], "approve") for r in requests])  # type: ignore[misc]
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 200, 200, 409, 409], [a.text for a in answers]
    for refused in (a for a in answers if a.status_code == 409):
        error = error_of(refused, 409, "insufficient_stock")
        assert error["details"]["available"] == 100 and error["details"]["requested"] == 300
    assert stock(reserve) == 100
    with session_scope() as session:
        states = sorted(r.status for r in session.exec(select(ResourceRequest)).all())
        drawn = session.exec(select(ReserveMovement).where(ReserveMovement.kind == "drawn")).all()
    assert states == ["approved"] * 3 + ["requested"] * 2  # a refused draw rolls its state change back
    assert sum(m.quantity for m in drawn) == 900


# -- safety stock -------------------------------------------------------------------------------------------------


def test_falling_under_safety_stock_opens_one_replenishment_for_the_owner(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=1000, safety_stock=600, organisation="water_affairs")
    first = request_on(api, incident.id, reserve, 300, who="meteorology")
    assert act(api, "water_affairs", first["id"], "approve").status_code == 200
    assert api.call("water_affairs", "GET", "/api/replenishments").json()["items"] == []  # 700 ≥ 600
    second = request_on(api, incident.id, reserve, 200, who="meteorology")
    assert act(api, "water_affairs", second["id"], "approve").status_code == 200
    third = request_on(api, incident.id, reserve, 100, who="meteorology")
    assert act(api, "water_affairs", third["id"], "approve").status_code == 200
    [open_one] = api.call("water_affairs", "GET", "/api/replenishments").json()["items"]
    assert open_one["quantity_at_open"] == 500 and open_one["safety_stock"] == 600
    assert open_one["organisation"] == "water_affairs" and open_one["request_id"] == second["id"]
    # The office sees it; a department that does not own the reserve does not.
    assert [r["id"] for r in api.call("office", "GET", "/api/replenishments").json()["items"]] == [open_one["id"]]
    assert api.call("meteorology", "GET", "/api/replenishments").json()["items"] == []
    assert resource_kinds(incident.id).count("reserve.below_safety_stock") == 1
    error_of(api.call("office", "POST", f"/api/replenishments/{open_one['id']}/complete", json={"quantity": 500}),
             403, "forbidden")
    done = api.call("water_affairs", "POST", f"/api/replenishments/{open_one['id']}/complete",
                    json={"quantity": 500, "note": "省储备库调入"})
    assert done.status_code == 200 and done.json()["status"] == "done"
    assert stock(reserve) == 900
    error_of(api.call("water_affairs", "POST", f"/api/replenishments/{open_one['id']}/complete",
                      json={"quantity": 500}), 409, "replenishment_done")
    assert stock(reserve) == 900
    with session_scope() as session:
        assert session.exec(select(Replenishment)).one().open_key is None
    assert resource_kinds(incident.id)[-1] == "reserve.replenished"


# -- bad input ----------------------------------------------------------------------------------------------------


def fields_of(response: httpx.Response, status: int, code: str) -> set[str]:
    error = error_of(response, status, code)
    return {str(d["field"]) for d in error.get("details") or []}


@pytest.mark.parametrize(("quantity", "reason"), [(-5, "greater_than"), (0, "greater_than"), ("abc", "int_type"),
                                                   ("12", "int_type"), (2.5, "int_type"), (True, "int_type"),
                                                   (None, "int_type")])
def test_a_quantity_that_is_not_a_whole_number_above_zero_is_refused_by_name(api: Api, quantity: Any,
                                                                            reason: str) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=1000)
    response = api.call("water_affairs", "POST", f"/api/incidents/{incident.id}/resource-requests",
                        json=ask(quantity, reserve_id=reserve))
    error = error_of(response, 422, "invalid_request")
    assert [(d["field"], d["reason"]) for d in error["details"]] == [("quantity", reason)]
    assert stock(reserve) == 1000


def test_nan_and_infinity_are_refused_by_name(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=1000)
    for raw in ("NaN", "Infinity", "-Infinity"):
        body = ask(1, reserve_id=reserve)
        text = httpx.Request("POST", "/", json=body).content.decode().replace('"quantity":1', f'"quantity":{raw}')
        response = api.call("water_affairs", "POST", f"/api/incidents/{incident.id}/resource-requests",
                            content=text, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert "quantity" in {str(d["field"]) for d in response.json()["error"]["details"]}


def test_more_than_in_stock_is_a_conflict_naming_what_is_available(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=120)
    response = api.call("water_affairs", "POST", f"/api/incidents/{incident.id}/resource-requests",
                        json=ask(500, reserve_id=reserve))
    error = error_of(response, 409, "insufficient_stock")
    assert error["details"] == {"available": 120, "requested": 500, "unit": "袋", "field": "quantity"}
    assert "120" in said_in_english(error)
    assert error["message"] == "库存不足：现有 120 袋，申请 500 袋。请减少申请数量，或向其他部门申请。", error
    # An approval of more than is left by then is the same conflict, and draws nothing.
    request = request_on(api, incident.id, reserve, 100)
    with session_scope() as session:
        row = session.get(MaterialReserve, reserve)
        assert row is not None
        row.quantity = 40
    error = error_of(act(api, "office", request["id"], "approve"), 409, "insufficient_stock")
    assert error["details"]["available"] == 40
    assert stock(reserve) == 40
    # Approving more than was asked is refused by name.
    assert fields_of(act(api, "office", request["id"], "approve", {"quantity": 101}), 422, "input_invalid") \
        == {"quantity"}
    assert stock(reserve) == 40


def test_dates_places_and_parties_out_of_bounds_are_refused_field_by_field(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=1000)
    path = f"/api/incidents/{incident.id}/resource-requests"
    far = (utcnow() + timedelta(days=400)).isoformat()
    past = (utcnow() - timedelta(days=2)).isoformat()
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, reserve_id=reserve, needed_by=far)),
                     422, "input_invalid") == {"needed_by"}
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, reserve_id=reserve, needed_by=past)),
                     422, "input_invalid") == {"needed_by"}
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, reserve_id=reserve,
                                                                       needed_by="9999-01-01T00:00:00+08:00")),
                     422, "invalid_request") == {"needed_by"}
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, reserve_id=reserve, needed_by="明天")),
                     422, "invalid_request") == {"needed_by"}
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, reserve_id=reserve, lon=151.21, lat=-33.87)),
                     422, "input_invalid") == {"lon", "lat"}
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, category="abc")), 422,
                     "input_invalid") == {"category"}
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, reserve_id="no-such-reserve")), 422,
                     "input_invalid") == {"reserve_id"}
    assert fields_of(api.call("water_affairs", "POST", path, json=ask(5, reserve_id=reserve, supplier="water_affairs")),
                     422, "input_invalid") == {"supplier"}
    assert fields_of(api.call("water_affairs", "POST", path, json={**ask(5, reserve_id=reserve), "destination": ""}),
                     422, "invalid_request") == {"destination"}
    # Every refusal left nothing behind.
    assert api.call("office", "GET", "/api/resource-requests").json()["items"] == []
    assert resource_kinds(incident.id) == []


# -- EDXL-RM 1.0 --------------------------------------------------------------------------------------------------


@cache
def schema(path: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(path)


def test_requests_and_commitments_export_as_edxl_rm_messages_valid_against_the_oasis_schemas(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=1000, code="WH-SB-0001")
    request = request_on(api, incident.id, reserve, 500, description="封堵下穿隧道入口")
    error_of(api.call("water_affairs", "GET", f"/api/resource-requests/{request['id']}/edxl-rm/commit"), 409,
             "not_committed")
    asked = api.call("water_affairs", "GET", f"/api/resource-requests/{request['id']}/edxl-rm/request")
    assert asked.status_code == 200 and asked.headers["content-type"].startswith("application/xml")
    schema(str(edxl.REQUEST_SCHEMA)).validate(asked.text)
    root = etree.fromstring(asked.content)
    ns = {"m": edxl.RMSG, "rm": edxl.RM, "gml": edxl.GML}
    assert root.tag == f"{{{edxl.RMSG}}}RequestResource"
    assert root.findtext("m:MessageContentType", namespaces=ns) == "RequestResource"
    assert root.findtext("m:IncidentInformation/rm:IncidentID", namespaces=ns) == incident.code
    info = root.find("m:ResourceInformation", ns)
    assert info is not None
    assert info.findtext("m:Resource/m:ResourceID", namespaces=ns) == "WH-SB-0001"
    assert info.findtext("m:Resource/m:TypeStructure/rm:Value", namespaces=ns) == "1010101"
    assert info.findtext("m:AssignmentInformation/m:Quantity/rm:MeasuredQuantity/rm:Amount", namespaces=ns) == "500"
    assert info.findtext("m:ScheduleInformation/m:Location/rm:LocationDescription",
                         namespaces=ns) == "城东区解放路下穿隧道"
    assert info.findtext("m:ScheduleInformation/m:Location/rm:TargetArea/gml:Point/gml:pos",
                         namespaces=ns) == "30.593000 114.305000"
    act(api, "office", request["id"], "approve", {"quantity": 350})
    act(api, "office", request["id"], "dispatch")
    committed = api.call("water_affairs", "GET", f"/api/resource-requests/{request['id']}/edxl-rm/commit")
    assert committed.status_code == 200
    schema(str(edxl.COMMIT_SCHEMA)).validate(committed.text)
    root = etree.fromstring(committed.content)
    assert root.findtext("m:OriginatingMessageID", namespaces=ns) == edxl.request_message_id(
        ResourceRequest(id=request["id"], incident_id="", requester="", supplier="", category="", quantity=1, unit="",
                        destination="", needed_by=utcnow(), requested_by=""))
    assert root.findtext("m:ResourceInformation/m:ResponseInformation/rm:ResponseType", namespaces=ns) == "Accept"
    assert "350 of 500" in (root.findtext("m:ResourceInformation/m:ResponseInformation/rm:ResponseReason",
                                          namespaces=ns) or "")
    assert root.findtext("m:ResourceInformation/m:AssignmentInformation/m:Quantity/rm:MeasuredQuantity/rm:Amount",
                         namespaces=ns) == "350"
    kinds = [el.text for el in root.iterfind("m:ResourceInformation/m:ScheduleInformation/m:ScheduleType", ns)]
    assert kinds == ["Committed", "ActualDeparture", "RequestedArrival"]


def test_the_schemas_refuse_a_message_that_breaks_them() -> None:
    """The validation can fail: a RequestResource without its required ContactInformation is not valid."""
    broken = (f'<RequestResource xmlns="{edxl.RMSG}"><MessageID>x</MessageID>'
              '<SentDateTime>2026-07-20T18:00:00+08:00</SentDateTime>'
              '<MessageContentType>RequestResource</MessageContentType><OriginatingMessageID>x</OriginatingMessageID>'
              '</RequestResource>')
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        schema(str(edxl.REQUEST_SCHEMA)).validate(broken)


def test_reimporting_the_reserve_register_keeps_what_incidents_drew_until_a_new_stock_count(api: Api) -> None:
    """The same file twice changes nothing, also after an incident drew the reserve down: the file's quantity is
    the stock count it was, not a restocking. A file that counts anew (a different quantity) replaces the stock."""

    def register(quantity: int, warehouse: str = "市应急物资储备库") -> dict[str, Any]:
        content = ("code,name_zh,category,unit,quantity,safety_stock,warehouse,organisation,lon,lat\n"
                   f"SB-COUNT,防汛编织袋,1010101,袋,{quantity},0,{warehouse},emergency_office,114.30,30.59\n")
        response = api.call("office", "POST", "/api/registers/reserve/import",
                            json={"filename": "reserves.csv", "content": content})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert not body["refused"], body["refused"]
        return body

    assert register(2000)["added"] == 1
    with session_scope() as session:
        reserve = session.exec(select(MaterialReserve).where(MaterialReserve.code == "SB-COUNT")).one().id
    incident = flood("assessment")
    request = request_on(api, incident.id, reserve, 300)
    assert act(api, "office", request["id"], "approve").status_code == 200
    assert stock(reserve) == 1700
    # The same file again: nothing changes, the 300 drawn stay drawn.
    assert register(2000)["unchanged"] == 1
    assert stock(reserve) == 1700
    # Another column corrected, the same count: the entry is updated, its stock is not put back.
    assert register(2000, warehouse="城东储备库")["updated"] == 1
    assert stock(reserve) == 1700
    assert register(2000, warehouse="城东储备库")["unchanged"] == 1
    assert stock(reserve) == 1700
    # A new stock-take counts 2500: that is the stock now, and the same count again changes nothing.
    assert register(2500, warehouse="城东储备库")["updated"] == 1
    assert stock(reserve) == 2500
    assert register(2500, warehouse="城东储备库")["unchanged"] == 1
    assert stock(reserve) == 2500


def test_a_request_retried_with_its_idempotency_key_asks_once(api: Api) -> None:
    """A department's client that lost the answer sends the request again with the same Idempotency-Key: one
    request, one ledger entry, the first answer again. Another key (or none) is another request."""
    incident = flood("assessment")
    reserve = make_reserve(quantity=2000)
    body = ask(200, reserve_id=reserve)
    path = f"/api/incidents/{incident.id}/resource-requests"
    first = api.call("water_affairs", "POST", path, json=body, headers={"Idempotency-Key": "req-7"})
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = api.call("water_affairs", "POST", path, json=body, headers={"Idempotency-Key": "req-7"})
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    other = api.call("water_affairs", "POST", path, json=body, headers={"Idempotency-Key": "req-8"})
    assert other.json()["id"] != first.json()["id"]
    with session_scope() as session:
        made = session.exec(select(ResourceRequest).where(ResourceRequest.incident_id == incident.id)).all()
    assert len(made) == 2
    assert resource_kinds(incident.id) == ["resource.requested", "resource.requested"]


@BOTH
def test_concurrent_retries_with_one_idempotency_key_make_one_request(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=2000)
    path = f"/api/incidents/{incident.id}/resource-requests"
    start = threading.Barrier(4)

    def send(_: int) -> httpx.Response:
        start.wait()
        return api.call("water_affairs", "POST", path, json=ask(100, reserve_id=reserve),
                        headers={"Idempotency-Key": "storm-retry"})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert [a.status_code for a in answers] == [201] * 4, [a.text[:200] for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 3
    assert resource_kinds(incident.id) == ["resource.requested"]
