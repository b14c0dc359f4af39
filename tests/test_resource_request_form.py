"""The form that asks for resources on an incident's resources page (issue 18, item 4): shown to whoever the API
lets ask (one who acts for a department on the incident, the office), not to a manager; it goes through the same
service as `POST /api/incidents/{id}/resource-requests` (the same checks, the same ledger entry); a refused field
is named beside the field in the reader's language, and what was typed is kept; a second press of the button
asks once."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlmodel import select

from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.resources.models import ResourceRequest
from core.users.models import User
from tests.api_server import Api, flood, ledger_kinds
from tests.fixtures.api import page_client
from tests.test_resources import make_reserve, stock

FORM_ID = 'id="request-resources"'


def local_time(hours: float) -> str:
    """A `datetime-local` value `hours` from now, in Baton's time zone (the demo city's, UTC+8)."""
    moment = utcnow() + timedelta(hours=hours)
    return (moment + timedelta(hours=8)).replace(tzinfo=None).isoformat(timespec="minutes")


def one_time_key(html: str) -> str:
    found = re.search(r'name="idempotency" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def requests_of(incident_id: str) -> list[ResourceRequest]:
    with session_scope() as session:
        return list(session.exec(select(ResourceRequest).where(ResourceRequest.incident_id == incident_id)).all())


def test_a_department_on_the_incident_asks_through_the_form_and_the_request_is_the_apis(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=2000)
    with page_client(api.server, "water_affairs") as client:
        page = client.get(f"/incidents/{incident.id}/resources")
        assert page.status_code == 200 and FORM_ID in page.text and f'value="{reserve}"' in page.text
        form = {"csrf": csrf(page.text), "idempotency": one_time_key(page.text), "reserve_id": reserve,
                "quantity": "300", "needed_by": local_time(6), "destination": "城东区解放路下穿隧道",
                "description": "排涝封堵"}
        made = client.post(f"/incidents/{incident.id}/resources", data=form)
        assert made.status_code == 303, made.text[:2000]
        [request] = requests_of(incident.id)
        assert made.headers["location"] == f"/resources/{request.id}"
        assert (request.requester, request.supplier, request.quantity) == ("water_affairs", "emergency_office", 300)
        assert request.requested_by == "user:water_affairs" and request.description == "排涝封堵"
        # the time typed in the city's local time is kept with its offset
        expected = datetime.fromisoformat(form["needed_by"]) - timedelta(hours=8)
        assert abs(request.needed_by.replace(tzinfo=None) - expected) < timedelta(minutes=1)
        assert "resource.requested" in [kind for kind, _ in ledger_kinds(incident.id)]
        # the request as other systems read it (EDXL-RM), linked in words a Chinese reader knows
        shown = client.get(made.headers["location"]).text
        assert f'<a href="/api/resource-requests/{request.id}/edxl-rm/request" title="RequestResource">申请报文</a>' \
            in shown and ">RequestResource<" not in shown
        # a second press of the same form asks once (the form's one-time key, as the API's Idempotency-Key)
        again = client.post(f"/incidents/{incident.id}/resources", data=form)
        assert again.status_code == 303 and again.headers["location"] == made.headers["location"]
        assert len(requests_of(incident.id)) == 1 and stock(reserve) == 2000
        listed = client.get(f"/incidents/{incident.id}/resources").text
        assert f'data-request="{request.id}"' in listed


def test_refused_fields_are_named_beside_each_field_in_the_readers_language(api: Api) -> None:
    incident = flood("assessment")
    reserve = make_reserve(quantity=100)
    with page_client(api.server, "water_affairs") as client:
        page = client.get(f"/incidents/{incident.id}/resources")
        form = {"csrf": csrf(page.text), "idempotency": one_time_key(page.text), "reserve_id": reserve,
                "quantity": "2.5", "needed_by": local_time(-48), "destination": "", "description": ""}
        refused = client.post(f"/incidents/{incident.id}/resources", data=form)
        assert refused.status_code == 422
        errors = dict(re.findall(r'data-field-error="(\w+)">([^<]+)<', refused.text))
        assert errors == {"quantity": "请填写整数。", "needed_by": "不能早于当前时间。", "destination": "此项必填。"}
        assert 'value="2.5"' in refused.text  # what was typed is shown again
        # more than in stock: named on the quantity, a 409 as on the API
        form.update(quantity="500", needed_by=local_time(6), destination="解放路")
        short = client.post(f"/incidents/{incident.id}/resources", data=form)
        assert short.status_code == 409
        assert dict(re.findall(r'data-field-error="(\w+)">([^<]+)<', short.text)) == {
            "quantity": "库存不足，请减少申请数量，或向其他部门申请。"}
        with session_scope() as session:
            user = session.exec(select(User).where(User.username == "water_affairs")).one()
            user.lang = "en"
            session.add(user)
        english = client.post(f"/incidents/{incident.id}/resources", data={**form, "quantity": "abc"})
        assert dict(re.findall(r'data-field-error="(\w+)">([^<]+)<', english.text)) == {
            "quantity": "Give a whole number."}
    assert requests_of(incident.id) == [] and stock(reserve) == 100


def test_the_form_is_for_those_the_api_lets_ask(api: Api) -> None:
    incident = flood("assessment")
    make_reserve(quantity=100)
    with page_client(api.server, "manager") as client:
        page = client.get(f"/incidents/{incident.id}/resources")
        assert page.status_code == 200 and FORM_ID not in page.text
        refused = client.post(f"/incidents/{incident.id}/resources",
                              data={"csrf": csrf(page.text), "quantity": "1", "destination": "x"})
        assert refused.status_code == 403
    with page_client(api.server, "office") as client:
        assert FORM_ID in client.get(f"/incidents/{incident.id}/resources").text
    # public_security is not on the incident: it does not show, as on the API
    with page_client(api.server, "public_security") as client:
        assert client.get(f"/incidents/{incident.id}/resources").status_code == 404
    assert requests_of(incident.id) == []
