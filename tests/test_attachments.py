"""Files attached to a task's form: a photo from the phone's camera on the task page (through the confirmation,
sent once), or a file sent to the API; judged by its bytes, held to its size limit, stored under the data
directory by id, linked to the task's output at completion, and read only by those who may read the field that
names it (404 for anyone else)."""

from __future__ import annotations

import re
import struct
import zlib
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import app
from core.attachments import service as attachments
from core.attachments.models import Attachment
from core.ledger.models import LedgerEntry
from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.users.service import add_user
from tests.api_server import ASSESSMENT, Api, error_of, flood, task_row
from tests.conftest import copy_plans
from tests.fixtures.database import clear_settings_caches


def png(extra: int = 0) -> bytes:
    """A real 1×1 PNG (with `extra` bytes of text chunk to make it larger)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    if extra:
        body += chunk(b"tEXt", b"c\x00" + b"x" * extra)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def stored_files() -> list[Path]:
    folder = attachments.folder()
    return sorted(folder.iterdir()) if folder.exists() else []


def rows() -> list[Attachment]:
    with session_scope() as session:
        return list(session.exec(select(Attachment)).all())


def assessment_task(api_incident: Any = None) -> tuple[str, str]:
    incident = flood("assessment")
    return incident.id, incident.tasks["flood_risk_assessment"]


def upload(api: Api, who: str, task_id: str, data: bytes, name: str = "map.png",
           claimed: str = "image/png") -> httpx.Response:
    return api.call(who, "POST", f"/api/tasks/{task_id}/attachments", files={"file": (name, data, claimed)})


# -- the API ----------------------------------------------------------------------------------------------------------


def test_a_png_sent_to_the_api_is_stored_by_id_linked_at_completion_and_read_by_the_fields_readers(
        api: Api) -> None:
    incident_id, task_id = assessment_task()
    data = png()
    response = upload(api, "water_affairs", task_id, data, name="../../etc/热点 图.png", claimed="text/html")
    assert response.status_code == 201, response.text
    body = response.json()
    attachment_id = body["id"]
    assert body["reference"] == f"attachment:{attachment_id}"
    # Judged by its bytes (not what the sender claimed); the name only its last part; bytes under the id.
    assert body["content_type"] == "image/png" and body["size"] == len(data)
    assert body["filename"] == "热点 图.png"
    assert [p.name for p in stored_files()] == [attachment_id]
    assert (attachments.folder() / attachment_id).read_bytes() == data
    assert attachments.folder().parent == get_settings().data_dir

    # Before completion the upload is its sender's alone, even for those who see everything.
    assert api.call("water_affairs", "GET", f"/api/attachments/{attachment_id}").content == data
    for who in ("office", "manager", "meteorology", "public_security"):
        error_of(api.call(who, "GET", f"/api/attachments/{attachment_id}"), 404, "not_found")

    done = api.call("water_affairs", "POST", f"/api/tasks/{task_id}/complete",
                    json={"outputs": {**ASSESSMENT, "hot_spot_map": body["reference"]}})
    assert done.status_code == 200, done.text
    assert task_row(task_id).outputs == {**ASSESSMENT, "hot_spot_map": f"attachment:{attachment_id}"}
    [row] = rows()
    assert row.field_key == "hot_spot_map" and row.linked_at is not None
    with session_scope() as session:
        entry = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == f"{task_id}:completed")).one()
        assert entry.details["files"] == {attachment_id: row.sha256}

    # The field is shared with every department on the incident (internal): meteorology, which is on it, reads it;
    # public_security, which is not, finds nothing.
    for who in ("water_affairs", "meteorology", "office", "manager"):
        got = api.call(who, "GET", f"/api/attachments/{attachment_id}")
        assert got.status_code == 200 and got.content == data, who
        assert got.headers["content-type"] == "image/png"
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"] == ("inline; filename=\"__ _.png\"; "
                                                      "filename*=UTF-8''%E7%83%AD%E7%82%B9%20%E5%9B%BE.png")
        assert "sandbox" in got.headers["content-security-policy"]
    error_of(api.call("public_security", "GET", f"/api/attachments/{attachment_id}"), 404, "not_found")
    error_of(api.call(None, "GET", f"/api/attachments/{attachment_id}"), 401)
    assert incident_id


def test_a_completion_naming_a_file_not_uploaded_for_the_task_is_refused(api: Api) -> None:
    _, task_id = assessment_task()
    _, other_task = assessment_task()
    elsewhere = upload(api, "water_affairs", other_task, png()).json()["reference"]
    for reference in (elsewhere, "attachment:00000000-0000-0000-0000-000000000000", "attachment:../../secret_key"):
        refused = api.call("water_affairs", "POST", f"/api/tasks/{task_id}/complete",
                           json={"outputs": {**ASSESSMENT, "hot_spot_map": reference}})
        error = error_of(refused, 422, "form_invalid")
        assert error["details"] == [{"field": "hot_spot_map", "code": "unknown_attachment",
                                     "message": f"'{reference}' names no file uploaded for this task"}]
    assert task_row(task_id).status == "assigned"
    # A reference that is not a stored file's (a file number) is taken as before.
    ok = api.call("water_affairs", "POST", f"/api/tasks/{task_id}/complete",
                  json={"outputs": {**ASSESSMENT, "hot_spot_map": "档案 2026-17"}})
    assert ok.status_code == 200, ok.text


def test_a_file_is_judged_by_its_bytes_not_its_name_or_claimed_type(api: Api) -> None:
    _, task_id = assessment_task()
    error_of(upload(api, "water_affairs", task_id, HTML, name="photo.png", claimed="image/png"), 415,
             "attachment_type_refused")
    error_of(upload(api, "water_affairs", task_id, b"", name="photo.png"), 422, "attachment_empty")
    assert rows() == [] and stored_files() == []
    # The kinds taken, each by its own first bytes.
    for name, data, kind in (("a.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image/jpeg"),
                             ("a.webp", b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 100, "image/webp"),
                             ("a.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100,
                              "image/heic"),
                             ("a.pdf", b"%PDF-1.7\n" + b"\x00" * 100, "application/pdf"),
                             ("scan.html", b"%PDF-1.4\n" + b"\x00" * 100, "application/pdf")):
        got = upload(api, "water_affairs", task_id, data, name=name, claimed="application/octet-stream")
        assert got.status_code == 201 and got.json()["content_type"] == kind, (name, got.text)
    # A PDF is downloaded, never shown in the page; a name with the wrong extension gets the right one.
    pdf = next(r for r in rows() if r.filename == "scan.html.pdf")
    got = api.call("water_affairs", "GET", f"/api/attachments/{pdf.id}")
    assert got.headers["content-disposition"].startswith('attachment; filename="scan.html.pdf"')


def test_a_file_over_the_limit_is_refused_and_the_body_limit_still_holds_elsewhere(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    incident_id, task_id = assessment_task()
    big = png(extra=1_200_000)  # over the 1 MB body limit of every other route
    assert upload(api, "water_affairs", task_id, big).status_code == 201
    # Elsewhere the body limit holds, multipart or not.
    error_of(api.call("water_affairs", "POST", f"/api/tasks/{task_id}/complete",
                      json={"outputs": {**ASSESSMENT, "hot_spot_map": "x" * 1_200_000}}), 413, "body_too_large")
    error_of(api.call("water_affairs", "POST", f"/api/incidents/{incident_id}/reports",
                      files={"file": ("map.png", big, "image/png")}), 413, "body_too_large")
    # A file over the attachment limit is refused, and nothing of it is kept.
    monkeypatch.setenv("BATON_ATTACHMENT_MAX_BYTES", "5000")
    get_settings.cache_clear()
    before = stored_files()
    error_of(upload(api, "water_affairs", task_id, png(extra=6000)), 413, "attachment_too_large")
    assert stored_files() == before and len(rows()) == 1
    assert upload(api, "water_affairs", task_id, png(extra=100)).status_code == 201
    # And a body over the upload routes' own limit (the file's plus the form's) is refused before it is read.
    monkeypatch.setenv("BATON_MAX_BODY_BYTES", "2000")
    get_settings.cache_clear()
    error_of(upload(api, "water_affairs", task_id, png(extra=9000)), 413, "body_too_large")


def test_only_the_tasks_department_may_attach_and_only_to_an_open_task(api: Api) -> None:
    _, task_id = assessment_task()
    for who, status in (("meteorology", 404), ("public_security", 404), ("manager", 403), ("office", 403)):
        assert upload(api, who, task_id, png()).status_code == status, who
    error_of(api.call(None, "POST", f"/api/tasks/{task_id}/attachments",
                      files={"file": ("map.png", png(), "image/png")}), 401)
    assert rows() == []
    api.call("water_affairs", "POST", f"/api/tasks/{task_id}/complete", json={"outputs": ASSESSMENT})
    error_of(upload(api, "water_affairs", task_id, png()), 409, "task_state_conflict")
    # A step whose form takes no file: the forecast.
    forecast = flood("forecast").tasks["rainstorm_forecast"]
    error = error_of(upload(api, "meteorology", forecast, png()), 422, "form_invalid")
    assert error["details"][0]["code"] == "no_attachment_field"


# -- the field's scope ------------------------------------------------------------------------------------------------


@pytest.fixture
def restricted_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, baton: str) -> None:
    """The flood plan with its risk map kept from meteorology (shared with the office and the departments whose
    later steps read it), while the step's other fields stay shared with every department on the incident."""
    plans = copy_plans(tmp_path / "plans", "flood")
    plan = yaml.safe_load((plans / "flood.yaml").read_text(encoding="utf-8"))
    step = next(s for s in plan["stages"]["warning"]["steps"] if s["key"] == "flood_risk_assessment")
    field = next(f for f in step["form"] if f["key"] == "hot_spot_map")
    field["share"] = {"with": ["emergency_office", "public_security", "subdistrict"], "classification": "internal"}
    (plans / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("BATON_PLANS_DIR", str(plans))
    clear_settings_caches()


def test_a_department_that_may_not_read_the_field_gets_404(restricted_map: None, api: Api) -> None:
    incident_id, task_id = assessment_task()
    reference = upload(api, "water_affairs", task_id, png()).json()["reference"]
    attachment_id = reference.split(":", 1)[1]
    done = api.call("water_affairs", "POST", f"/api/tasks/{task_id}/complete",
                    json={"outputs": {**ASSESSMENT, "hot_spot_map": reference}})
    assert done.status_code == 200, done.text
    # Meteorology is on the incident and reads the step's other fields, not the map: nor the map's file.
    shared = api.call("meteorology", "GET", f"/api/incidents/{incident_id}/shared").json()["items"]
    [item] = [i for i in shared if i["step"] == "flood_risk_assessment"]
    assert "hot_spots" in item["outputs"] and "hot_spot_map" not in item["outputs"]
    error_of(api.call("meteorology", "GET", f"/api/attachments/{attachment_id}"), 404, "not_found")
    error_of(api.call("public_security", "GET", f"/api/attachments/{attachment_id}"), 404, "not_found")
    for who in ("water_affairs", "office", "manager", "admin"):
        assert api.call(who, "GET", f"/api/attachments/{attachment_id}").status_code == 200, who


# -- the task page ----------------------------------------------------------------------------------------------------

PASSWORDS = {"water1": "water-secret-1", "met1": "meteo-secret-1"}


@pytest.fixture
def page_users(baton: str) -> None:
    with session_scope() as session:  # at a low cost (tests/fixtures/api.py)
        add_user(session, username="water1", role="department", department="water_affairs",
                 password=PASSWORDS["water1"])
        add_user(session, username="met1", role="department", department="meteorology", password=PASSWORDS["met1"])


def browser(username: str) -> TestClient:
    client = TestClient(app)
    form = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token
    response = client.post("/login", data={"username": username, "password": PASSWORDS[username],
                                           "csrf": token.group(1), "next": "/"}, follow_redirects=False)
    assert response.status_code == 303
    return client


def csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def hidden_fields(html: str) -> list[tuple[str, str]]:
    confirm = html[html.index('id="confirm"'):]
    return [(unescape(n), unescape(v)) for n, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', confirm)]


FORM = {"f_hot_spots": "4", "f_pumps_deployed": "12", "f_river_level_high": "1"}


def test_a_photo_taken_on_the_task_page_is_sent_once_through_the_confirmation(page_users: None) -> None:
    incident_id, task_id = assessment_task()
    water = browser("water1")
    page = water.get(f"/tasks/{task_id}").text
    # The phone opens its camera: a file input that captures from the back camera, in a multipart form; the typed
    # reference stays as the alternative.
    assert re.search(r'<form method="post" action="/tasks/[^"]+/complete" class="task-form" '
                     r'enctype="multipart/form-data">', page)
    assert ('<input type="file" id="f_hot_spot_map_file" name="f_hot_spot_map_file" accept="image/*,application/pdf" '
            'capture="environment">') in page
    assert '<input id="f_hot_spot_map" name="f_hot_spot_map" value=""' in page
    data = png()
    review = water.post(f"/tasks/{task_id}/complete", data={"csrf": csrf(page), "action": "review", **FORM,
                                                            "f_hot_spot_map": ""},
                        files={"f_hot_spot_map_file": ("IMG_0001.PNG", data, "image/png")}, follow_redirects=False)
    assert review.status_code == 200, review.text[:500]
    [row] = rows()
    assert row.linked_at is None and row.uploaded_by == "user:water1" and row.task_id == task_id
    assert row.filename == "IMG_0001.PNG" and row.content_type == "image/png"
    hidden = hidden_fields(review.text)
    assert ("f_hot_spot_map", f"attachment:{row.id}") in hidden
    assert not any(name.endswith("_file") for name, _ in hidden)
    assert f'href="/api/attachments/{row.id}"' in review.text  # the sender may look at it before confirming
    assert water.get(f"/api/attachments/{row.id}").content == data
    assert task_row(task_id).status == "assigned"

    # Confirming sends the reference, not the file again: the same one upload is linked.
    done = water.post(f"/tasks/{task_id}/complete", data={**dict(hidden), "csrf": csrf(review.text),
                                                          "action": "confirm"}, follow_redirects=False)
    assert done.status_code == 303, done.text[:800]
    assert task_row(task_id).outputs == {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True,
                                         "hot_spot_map": f"attachment:{row.id}"}
    [row] = rows()
    assert row.linked_at is not None and row.field_key == "hot_spot_map"
    assert len(stored_files()) == 1
    # The task page and the board link to the file where the field's value shows.
    shown = water.get(f"/tasks/{task_id}").text
    assert re.search(rf'<dd data-field="hot_spot_map"><a href="/api/attachments/{row.id}"', shown)
    met = browser("met1")
    board = met.get(f"/incidents/{incident_id}/board").text
    assert f'href="/api/attachments/{row.id}"' in board
    assert met.get(f"/api/attachments/{row.id}").content == data


def test_the_task_page_refuses_a_file_that_is_not_a_photo_beside_its_field(page_users: None) -> None:
    _, task_id = assessment_task()
    water = browser("water1")
    page = water.get(f"/tasks/{task_id}").text
    refused = water.post(f"/tasks/{task_id}/complete", data={"csrf": csrf(page), "action": "review", **FORM},
                         files={"f_hot_spot_map_file": ("map.png", HTML, "image/png")}, follow_redirects=False)
    assert refused.status_code == 415
    assert 'data-field="hot_spot_map" data-error="attachment_type_refused"' in refused.text
    assert "该文件不是照片（JPEG、PNG、WebP、HEIC）或PDF文件" in refused.text
    assert rows() == [] and stored_files() == []
    # The other answers are kept for the next try.
    assert 'name="f_pumps_deployed" value="12"' in refused.text
    # A typed reference naming somebody else's upload is refused at review, before anything is confirmed.
    other = assessment_task()[1]
    with session_scope() as session:
        session.add(Attachment(id="11111111-1111-1111-1111-111111111111", incident_id=task_row(other).incident_id,
                               task_id=other, uploaded_by="user:x", filename="a.png", content_type="image/png",
                               size=1, sha256="0" * 64))
    bad = water.post(f"/tasks/{task_id}/complete", data={"csrf": csrf(page), "action": "review", **FORM,
                                                         "f_hot_spot_map":
                                                             "attachment:11111111-1111-1111-1111-111111111111"},
                     follow_redirects=False)
    assert bad.status_code == 422
    assert 'data-field="hot_spot_map" data-error="unknown_attachment"' in bad.text
