"""Upward reporting (信息报送) on the flood plan, on a clock the test moves: the initial report is assigned
within its limit of opening, drafted from the run, signed off by a leader in the page and delivered to a local
system (signed JSON with the Word document) and a local mail server (the .docx attached), both read back with
python-docx; follow-ups recur at the plan's interval until the termination step, or the close, and stop after;
a level change calls for one at once; a late report is flagged in the ledger, on the board, in the review and in
the after-action report; sending unsigned and lowering a casualty figure without a reason are refused with
their codes and leave nothing written. The plan validator refuses a reporting limit that is not a duration."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import io
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from typing import Any
from unittest import mock

import docx
import pytest
import yaml
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from api.app import app
from core.incidents import handoffs
from core.incidents.engine import finish_action, latest_tasks
from core.incidents.models import OPEN_STATUSES, DepartmentTask, Incident
from core.incidents.service import change_level, open_incident
from core.learning.after_action.compute import build_report
from core.learning.after_action.render import render_report_html
from core.learning.simulation import sample_outputs
from core.ledger.chain import verify_incident
from core.ledger.models import LedgerEntry
from core.outbox.models import OutboundDelivery
from core.plans.store import plan_for_version
from core.platform.db import session_scope
from core.platform.settings import PROCESS_DEFS_DIR, get_settings
from core.reporting import service
from core.reporting.models import CasualtyFigures, UpwardReport, UpwardReportArchive
from core.reporting.schedule import advance_with_reports
from core.sharing.board import board
from core.users.models import User
from process_defs.validation import check_paths
from tasks.delivery import send_once
from tests import engine_driver as drive
from tests.api_server import PASSWORD, issued_token, make_user
from tests.conftest import copy_plans
from tests.receiver import Receiver, running_receiver

BOTH = pytest.mark.parametrize("db_kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
                               indirect=True)
T0 = datetime(2026, 7, 20, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
SECRET = "provincial-flood-office-secret"
FORECAST = {"rainfall_1h": 60, "rainfall_24h": 180, "warning_colour": "orange",
            "valid_until": "2026-07-21T10:00:00+08:00"}
ASSESSMENT = {"hot_spots": 4, "pumps_deployed": 12, "river_level_high": True}
CLOCKED = ("core.incidents.service", "core.incidents.handoffs", "core.incidents.engine", "core.reporting.schedule",
           "core.reporting.service", "core.reporting.reads", "core.learning.simulation")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@contextmanager
def clock(moment: datetime) -> Iterator[None]:
    """Every service that reads the time reads `moment`."""
    with contextlib.ExitStack() as stack:
        for module in CLOCKED:
            stack.enter_context(mock.patch(f"{module}.utcnow", return_value=moment))
        yield


def open_flood(moment: datetime = T0, level: str = "IV") -> str:
    with clock(moment), session_scope() as session:
        return open_incident(session, type_key="flood", level=level, title="城东暴雨内涝", actor="user:office1",
                             location_name="城东区").incident.id


def reconcile_at(incident_id: str, moment: datetime) -> None:
    """What the incident's flow does at `moment`: the engine, then the reports; automated steps finished."""
    with clock(moment):
        while True:
            with session_scope() as session:
                result = advance_with_reports(session, incident_id=incident_id, now=moment)
                for task_id in result.actions:
                    finish_action(session, task_id=task_id, outputs={"simulated": True})
            if not result.actions:
                return


def _plan_id(incident_id: str) -> int:
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident.plan_version_id


def complete(incident_id: str, step: str, moment: datetime, outputs: dict[str, Any] | None = None) -> None:
    with clock(moment), session_scope() as session:  # simulated times are the test's times
        task = latest_tasks(session, incident_id)[step]
        incident = session.get(Incident, incident_id)
        assert incident is not None
        if outputs is None:
            outputs = sample_outputs(plan_for_version(session, incident.plan_version_id).step(step))
    with clock(moment), session_scope() as session:
        handoffs.complete(session, task_id=task.id, actor="user:dept", outputs=outputs)


def open_steps(incident_id: str) -> list[str]:
    with session_scope() as session:
        rows = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident_id,
                                                         DepartmentTask.kind == "human",
                                                         col(DepartmentTask.status).in_(OPEN_STATUSES))).all()
        return sorted(row.step_key for row in rows)


def reports(incident_id: str) -> list[UpwardReport]:
    with session_scope() as session:
        return list(session.exec(select(UpwardReport).where(UpwardReport.incident_id == incident_id)
                                 .order_by(col(UpwardReport.created_at), col(UpwardReport.number))).all())


def ledger_kinds(incident_id: str) -> list[str]:
    with session_scope() as session:
        return [e.kind for e in session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id)
                                             .order_by(col(LedgerEntry.seq))).all()]


LEADER_POSITION = "duty_leader@emergency_office"  # 带班领导 of the reporting department: one of its default signers


def leader_id() -> str:
    """The reporting department's duty leader (made the first time it is asked for, in its own transaction)."""
    with session_scope() as session:
        found = session.exec(select(User.id).where(User.username == "leader")).first()
    return found or make_user("leader", "office", positions=[LEADER_POSITION])


def leader(session: Session, user_id: str) -> User:
    found = session.get(User, user_id)
    assert found is not None
    return found


def sign_and_send(report_id: str, moment: datetime) -> None:
    signer = leader_id()
    with clock(moment), session_scope() as session:
        service.sign_off(session, report_id=report_id, signer=leader(session, signer))
        service.send_report(session, report_id=report_id, actor="user:office1")


# -- outside systems on loopback -------------------------------------------------------------------------------
class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.recipients.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def outside(baton: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Receiver, Mailbox]]:
    """The provincial flood office's system (signed webhooks) and a mail server for the city government."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    with running_receiver(SECRET) as receiver:
        monkeypatch.setenv("BATON_ENDPOINTS", json.dumps({"provincial_flood_command": {"url": receiver.url,
                                                                                       "secret": SECRET}}))
        monkeypatch.setenv("BATON_SMTP__HOST", "127.0.0.1")
        monkeypatch.setenv("BATON_SMTP__PORT", str(controller.port))
        monkeypatch.setenv("BATON_SMTP__SENDER", "yjj-zhiban@city.example.gov.cn")
        monkeypatch.setenv("BATON_MAIL_ADDRESSES", json.dumps({"city_government": "zfzbs@city.example.gov.cn"}))
        get_settings.cache_clear()
        try:
            yield receiver, mailbox
        finally:
            controller.stop()
            get_settings.cache_clear()


def deliver_pending(incident_id: str) -> list[str]:
    with session_scope() as session:
        ids = list(session.exec(select(OutboundDelivery.id).where(OutboundDelivery.incident_id == incident_id,
                                                                  OutboundDelivery.outcome == "pending")).all())
    return [asyncio.run(send_once(delivery_id)) for delivery_id in ids]


def read_docx(data: bytes) -> str:
    document = docx.Document(io.BytesIO(data))
    cells = [cell.text for table in document.tables for row in table.rows for cell in row.cells]
    return "\n".join([p.text for p in document.paragraphs] + cells)


def page_login(client: TestClient, username: str) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token
    response = client.post("/login", data={"username": username, "password": PASSWORD, "csrf": token.group(1),
                                           "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]


def csrf(client: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found, path
    return found.group(1)


# -- the initial report, end to end ----------------------------------------------------------------------------
@BOTH
def test_the_initial_report_is_assigned_drafted_signed_off_and_delivered(outside: tuple[Receiver, Mailbox]) -> None:
    receiver, mailbox = outside
    make_user("office1", "office")
    make_user("leader", "office", positions=[LEADER_POSITION])
    make_user("clerk", "office")
    make_user("water1", "department", "water_affairs")
    incident_id = open_flood()
    reconcile_at(incident_id, at(1))
    [initial] = reports(incident_id)
    # Assigned to the reporting department at once; due an hour from opening, by phone in thirty minutes.
    assert (initial.kind, initial.department, initial.status) == ("initial", "emergency_office", "drafting")
    assert initial.created_at - T0 <= timedelta(hours=1)
    assert initial.due_at == at(60) and initial.phone_due_at == at(30)
    assert "upward_report.assigned" in ledger_kinds(incident_id)

    complete(incident_id, "rainstorm_forecast", at(10), FORECAST)
    reconcile_at(incident_id, at(10))
    complete(incident_id, "flood_risk_assessment", at(20), ASSESSMENT)
    reconcile_at(incident_id, at(20))
    [initial] = reports(incident_id)
    content = initial.content
    # Drafted from the run: level, stage, what was done and the figures departments reported.
    assert content["level"] == "IV" and content["stage"] == "warning"
    assert {a["step"] for a in content["actions"]} >= {"rainstorm_forecast", "publish_rainstorm_warning",
                                                       "flood_risk_assessment"}
    assert {(f["step"], f["field"], f["value"]) for f in content["figures"]} >= {
        ("rainstorm_forecast", "rainfall_1h", 60), ("flood_risk_assessment", "hot_spots", 4)}
    assert content["casualties"] == {"dead": 0, "missing": 0, "injured": 0, "moved": 0}
    assert "城东区" in content["text"] and "城市内涝" in content["text"]

    office = {"Authorization": f"Bearer {issued_token('office1')}"}
    with TestClient(app) as client, clock(at(25)):
        # A department that does not report reads no report; the reporting department writes the draft.
        water = {"Authorization": f"Bearer {issued_token('water1')}"}
        assert client.get(f"/api/upward-reports/{initial.id}", headers=water).status_code == 404
        edited = client.patch(f"/api/upward-reports/{initial.id}", headers=office,
                              json={"text": "7月20日10时，城东区普降暴雨，多处积水，已启动防汛Ⅳ级应急响应。",
                                    "casualties": {"moved": 35}})
        assert edited.status_code == 200, edited.text
        assert client.post(f"/api/upward-reports/{initial.id}/phone", headers=office,
                           json={"note": "电话报告省防指值班室"}).status_code == 200
        # Sent before a leader signed it off: refused, and nothing is written.
        before = ledger_kinds(incident_id)
        refused = client.post(f"/api/upward-reports/{initial.id}/send", headers=office)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "report_not_signed"
        assert ledger_kinds(incident_id) == before
        with session_scope() as session:
            assert session.get(UpwardReportArchive, initial.id) is None
            assert session.get(CasualtyFigures, incident_id) is None
        # Whoever wrote the draft does not sign it off.
        drafter = client.post(f"/api/upward-reports/{initial.id}/sign-off", headers=office)
        assert drafter.status_code == 409 and drafter.json()["error"]["code"] == "signer_is_drafter"
        # Nor does an office user who holds none of the leaders' positions: 403 naming them, nothing written.
        before = ledger_kinds(incident_id)
        clerk = client.post(f"/api/upward-reports/{initial.id}/sign-off",
                            headers={"Authorization": f"Bearer {issued_token('clerk')}"})
        assert clerk.status_code == 403, clerk.text
        error = clerk.json()["error"]
        assert error["code"] == "position_required" and "带班领导" in error["message"]
        assert "duty_leader@emergency_office" in error["details"]["needs"]
        assert ledger_kinds(incident_id) == before and reports(incident_id)[0].status == "drafting"

    with TestClient(app) as browser, clock(at(28)):
        # The leader signs it off in the page.
        page_login(browser, "leader")
        page = browser.get(f"/upward-reports/{initial.id}")
        assert page.status_code == 200 and "签发" in page.text
        signed = browser.post(f"/upward-reports/{initial.id}/sign-off", data={"csrf": csrf(browser, "/upward-reports")},
                              follow_redirects=False)
        assert signed.status_code == 303, signed.text[:500]
    with TestClient(app) as client, clock(at(40)):
        sent = client.post(f"/api/upward-reports/{initial.id}/send", headers=office)
        assert sent.status_code == 200, sent.text
        body = sent.json()
        assert body["status"] == "sent" and body["signed_by"] == "user:leader" and not body["late"]
        channels = {(d["target"], d["purpose"]) for d in body["deliveries"]}
        assert channels == {("provincial_flood_command", "upward_report"), ("city_government", "mail.upward_report")}
        archived = client.get(f"/api/upward-reports/{initial.id}/document.docx", headers=office)
        assert archived.status_code == 200
        assert "签发人：leader" in read_docx(archived.content)

    assert sorted(deliver_pending(incident_id)) == ["delivered", "delivered"]
    # The provincial flood office's system: the signed JSON, and the Word document in it.
    [message] = receiver.received
    assert message["purpose"] == "upward_report" and message["upward_report"]["content"]["casualties"]["moved"] == 35
    assert message["upward_report"]["signed_by"] == "user:leader"
    word = read_docx(base64.b64decode(message["document"]["base64"]))
    assert "突发事件信息报告" in word and "（初报）" in word and "关于城东暴雨内涝的初报" in word
    assert "省防汛抗旱指挥部办公室" in word and "转移安置" in word and "发布暴雨预报与雨量研判" in word
    # The city government's mailbox: the report with the same document attached.
    [mail] = mailbox.messages
    assert mailbox.recipients == [["zfzbs@city.example.gov.cn"]]
    assert "关于城东暴雨内涝的初报" in str(mail["Subject"])
    [attachment] = list(mail.iter_attachments())
    assert str(attachment.get_filename()).endswith(".docx")
    assert read_docx(attachment.get_content()) == word

    # The casualty figures the report carried are the incident's checked set now.
    with session_scope() as session:
        figures = session.get(CasualtyFigures, incident_id)
        assert figures is not None and (figures.moved, figures.revision, figures.report_id) == (35, 1, initial.id)
        assert verify_incident(session, incident_id).valid
    kinds = ledger_kinds(incident_id)
    assert kinds.index("upward_report.phoned") < kinds.index("upward_report.signed") < \
        kinds.index("upward_report.sent")
    assert "casualties.revised" in kinds and "upward_report.overdue" not in kinds


@pytest.mark.prefect
def test_the_worker_assigns_the_initial_report_and_delivers_it_when_sent(
        outside: tuple[Receiver, Mailbox], workers: Any) -> None:
    """The same through a Baton worker running the incident's Prefect flow: nobody but the flow creates the
    report, and the flow delivers it once it is sent."""
    import time

    receiver, mailbox = outside
    workers("worker-reports")
    with session_scope() as session:
        incident_id = open_incident(session, type_key="flood", level="IV", title="城东暴雨内涝",
                                    actor="user:office1").incident.id
    deadline = time.monotonic() + 90
    while not reports(incident_id):
        assert time.monotonic() < deadline, "the worker did not assign the initial report"
        time.sleep(0.2)
    [initial] = reports(incident_id)
    assert initial.kind == "initial" and initial.due_at - initial.created_at <= timedelta(hours=1)
    signer = leader_id()
    with session_scope() as session:
        service.sign_off(session, report_id=initial.id, signer=leader(session, signer))
        service.send_report(session, report_id=initial.id, actor="user:office1")
    while len(receiver.received) < 1 or len(mailbox.messages) < 1:
        assert time.monotonic() < deadline + 60, "the flow did not deliver the report"
        time.sleep(0.2)
    assert "签发人：leader" in read_docx(base64.b64decode(receiver.received[0]["document"]["base64"]))


@BOTH
def test_a_casualty_decrease_needs_a_reason_and_is_ledgered(outside: tuple[Receiver, Mailbox]) -> None:
    make_user("office1", "office")
    incident_id = open_flood()
    reconcile_at(incident_id, at(1))
    [initial] = reports(incident_id)
    with clock(at(5)), session_scope() as session:
        service.edit_report(session, report_id=initial.id, actor="user:office1",
                            casualties={"injured": 3, "missing": 2})
    sign_and_send(initial.id, at(10))
    # A follow-up owed at once (the level rose); its draft never lowers a figure by itself.
    commander = drive.person()  # raising to III is the flood headquarters' commander's decision
    with clock(at(30)), session_scope() as session:
        change_level(session, incident_id=incident_id, level="III", by=commander, reason="积水加深")
    reconcile_at(incident_id, at(31))
    follow_up = reports(incident_id)[-1]
    assert (follow_up.kind, follow_up.number, follow_up.reason) == ("follow_up", 1, "level_change")
    assert follow_up.content["casualties"]["missing"] == 2 and follow_up.content["level"] == "III"

    office = {"Authorization": f"Bearer {issued_token('office1')}"}
    with TestClient(app) as client, clock(at(35)):
        refused = client.patch(f"/api/upward-reports/{follow_up.id}", headers=office,
                               json={"casualties": {"missing": 0}})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "casualty_decrease_needs_reason"
        assert refused.json()["error"]["details"]["decreases"] == {"missing": {"checked": 2, "reported": 0}}
    [row] = [r for r in reports(incident_id) if r.id == follow_up.id]
    assert row.content["casualties"]["missing"] == 2 and row.edited_at is None  # nothing half-written
    with clock(at(36)), session_scope() as session:
        service.edit_report(session, report_id=follow_up.id, actor="user:office1", casualties={"missing": 0},
                            casualty_reason="2名失联人员已与家属取得联系，核减")
    sign_and_send(follow_up.id, at(40))
    with session_scope() as session:
        figures = session.get(CasualtyFigures, incident_id)
        assert figures is not None and (figures.missing, figures.injured, figures.revision) == (0, 3, 2)
        revised = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id,
                                                         LedgerEntry.kind == "casualties.revised")
                               .order_by(col(LedgerEntry.seq))).all()
    assert revised[-1].details["decreased"] == {"missing": {"from": 2, "to": 0}}
    assert revised[-1].details["reason"] == "2名失联人员已与家属取得联系，核减"


# -- follow-ups ------------------------------------------------------------------------------------------------
def run_to_termination(incident_id: str, start: datetime, step_minutes: float = 30) -> datetime:
    """Complete every open task every `step_minutes` until the plan's termination step is done."""
    moment = start
    for _ in range(60):
        moment += timedelta(minutes=step_minutes)
        for key in open_steps(incident_id):
            outputs = {"decision": "respond"} if key == "lift_warning" else None
            complete(incident_id, key, moment, outputs)
            if key == "end_response":
                reconcile_at(incident_id, moment)
                return moment
        reconcile_at(incident_id, moment)
    raise AssertionError("the response did not end")


@BOTH
def test_follow_ups_recur_at_the_interval_until_termination_and_stop_after(baton: str) -> None:
    incident_id = open_flood()
    reconcile_at(incident_id, at(1))
    # Level IV: a follow-up a day from opening, due two hours later; none before its time.
    reconcile_at(incident_id, T0 + timedelta(hours=23, minutes=59))
    assert [r.kind for r in reports(incident_id)] == ["initial"]
    reconcile_at(incident_id, T0 + timedelta(days=1, minutes=1))
    reconcile_at(incident_id, T0 + timedelta(days=2, minutes=1))
    follow_ups = [r for r in reports(incident_id) if r.kind == "follow_up"]
    assert [(r.number, r.reason, r.slot_at, r.due_at) for r in follow_ups] == [
        (1, "schedule", T0 + timedelta(days=1), T0 + timedelta(days=1, hours=2)),
        (2, "schedule", T0 + timedelta(days=2), T0 + timedelta(days=2, hours=2))]
    # Reconciling again creates nothing twice.
    reconcile_at(incident_id, T0 + timedelta(days=2, minutes=2))
    assert len(reports(incident_id)) == 3
    ended = run_to_termination(incident_id, T0 + timedelta(days=2, minutes=2))
    assert ended < T0 + timedelta(days=3)
    final = [r for r in reports(incident_id) if r.kind == "final"]
    assert len(final) == 1 and final[0].due_at == ended + timedelta(days=1) and final[0].reason == "termination"
    # After termination: no more follow-ups, though the incident is still open (its learning stage).
    reconcile_at(incident_id, T0 + timedelta(days=6))
    assert [r.kind for r in reports(incident_id)].count("follow_up") == 2
    assert open_steps(incident_id)  # still open: the reviews


@pytest.fixture
def plans_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The shipped plans; for the test of a plan without a termination step, a flood plan whose final report
    comes when the incident closes, with a follow-up every six hours."""
    if "without_a_termination_step" not in request.node.name:
        return PROCESS_DEFS_DIR
    folder = copy_plans(tmp_path / "plans", "flood")
    plan = yaml.safe_load((folder / "flood.yaml").read_text(encoding="utf-8"))
    del plan["reporting"]["final"]["after"]
    plan["reporting"]["follow_up"]["every"] = "PT6H"
    (folder / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return folder


def test_without_a_termination_step_follow_ups_stop_when_the_incident_closes(baton: str) -> None:
    incident_id = open_flood()
    reconcile_at(incident_id, at(1))
    moment = at(1)
    for _ in range(80):
        moment += timedelta(hours=1)
        for key in open_steps(incident_id):
            complete(incident_id, key, moment, {"decision": "respond"} if key == "lift_warning" else None)
        reconcile_at(incident_id, moment)
        with session_scope() as session:
            row = session.get(Incident, incident_id)
            assert row is not None
            if row.closed_at is not None:
                closed = row.closed_at
                break
    else:
        raise AssertionError("the incident did not close")
    follow_ups = [r for r in reports(incident_id) if r.kind == "follow_up"]
    assert follow_ups and all(r.slot_at is not None and r.slot_at < closed for r in follow_ups)
    assert [r.slot_at for r in follow_ups] == [T0 + timedelta(hours=6 * n) for n in range(1, len(follow_ups) + 1)]
    [final] = [r for r in reports(incident_id) if r.kind == "final"]
    assert final.created_at == closed
    count = len(follow_ups)
    reconcile_at(incident_id, closed + timedelta(days=2))
    assert len([r for r in reports(incident_id) if r.kind == "follow_up"]) == count


def test_a_casualty_change_in_the_run_calls_for_a_follow_up_at_once(baton: str) -> None:
    """Hazardous chemicals: the fire service's count of the injured, reported after the initial report went,
    is a follow-up owed at once, drafted with the new figure."""
    with clock(T0), session_scope() as session:
        incident_id = open_incident(session, type_key="hazmat_leak", level="IV", title="化工园区储罐泄漏",
                                    actor="user:office1").incident.id
    reconcile_at(incident_id, at(1))
    [initial] = reports(incident_id)
    assert initial.due_at == at(60) and initial.phone_due_at is None  # one hour, in writing
    sign_and_send(initial.id, at(5))
    reconcile_at(incident_id, at(6))
    assert len(reports(incident_id)) == 1  # nothing changed since it went
    plan_id = _plan_id(incident_id)
    with session_scope() as session:
        step = plan_for_version(session, plan_id).step("leak_alarm")
    complete(incident_id, "leak_alarm", at(8), {**sample_outputs(step), "people_injured": 3})
    reconcile_at(incident_id, at(9))
    follow_up = reports(incident_id)[-1]
    assert (follow_up.kind, follow_up.number, follow_up.reason) == ("follow_up", 1, "casualty_change")
    assert follow_up.content["casualties"]["injured"] == 3 and follow_up.due_at == at(9 + 120)


# -- lateness --------------------------------------------------------------------------------------------------
@BOTH
def test_a_late_report_is_flagged_in_the_ledger_board_review_and_after_action_report(baton: str) -> None:
    make_user("boss", "manager")
    incident_id = open_flood()
    reconcile_at(incident_id, at(1))
    [initial] = reports(incident_id)
    reconcile_at(incident_id, at(45))  # the report by phone is late now, the written one not yet
    reconcile_at(incident_id, at(90))
    with session_scope() as session:
        overdue = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id,
                                                         LedgerEntry.kind == "upward_report.overdue")
                               .order_by(col(LedgerEntry.seq))).all()
    assert [(e.details["channel"], e.at) for e in overdue] == [("phone", at(45)), ("written", at(90))]
    with TestClient(app) as browser, clock(at(90)):
        page_login(browser, "boss")
        page = browser.get(f"/incidents/{incident_id}/board").text
    # Not yet sent, it stands at the top of the board by its deadline, and its line says that the time is one.
    item = page[page.index('data-kind="upward_report"'):]
    header = re.search(r'<div class="muted">(.*?)</div>', item, re.S)
    assert header is not None and header.group(1).strip().startswith("期限 ")
    assert "late-report" in item[:item.index("</li>")]
    sign_and_send(initial.id, at(150))  # 90 minutes past its limit

    with clock(at(200)), session_scope() as session:
        report = build_report(session, incident_id=incident_id, now=at(200))
        [row] = report.upward_reports
        assert row["late"] and row["late_by_s"] == 90 * 60 and row["phone_late_by_s"] == (200 - 30) * 60
        html = render_report_html(report, "zh")
        incident = session.get(Incident, incident_id)
        assert incident is not None
        items = board(session, incident, None)
    assert 'data-late="true"' in html and "迟报 1 件" in html and "迟报 1小时30分" in html
    [item] = [i for i in items if i["kind"] == "upward_report"]
    assert item["late"] and item["id"] == initial.id
    with TestClient(app) as browser, clock(at(200)):
        page_login(browser, "boss")
        review = browser.get(f"/review/incidents/{incident_id}")
        assert review.status_code == 200
        assert re.search(rf'data-report="{initial.id}" data-late="true"', review.text)
        assert "late-report" in review.text


# -- the plan language -----------------------------------------------------------------------------------------
def test_a_reporting_limit_that_is_not_a_duration_is_refused_with_file_line_and_field(tmp_path: Path) -> None:
    folder = copy_plans(tmp_path / "plans", "flood")
    text = (folder / "flood.yaml").read_text(encoding="utf-8")
    initial = "    phone_within: PT30M\n    within: PT1H\n"
    broken = text.replace(initial, initial.replace("PT1H", "1 hour"))
    assert broken != text
    (folder / "flood.yaml").write_text(broken, encoding="utf-8")
    line = broken.splitlines().index("    within: 1 hour") + 1
    problems = [str(p) for p in check_paths([folder]).problems]
    assert problems == [f"flood.yaml:{line} reporting.initial.within: '1 hour' is not an ISO 8601 duration such as "
                        "PT30M, PT4H or P2D"]
    # A recipient nobody knows and follow-ups that come less often at a higher level are refused too.
    plan = yaml.safe_load(text)
    plan["reporting"]["initial"]["recipients"].append("state_council")
    plan["reporting"]["follow_up"]["every"] = {"IV": "PT12H", "II": "P1D"}
    (folder / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    messages = {p.path: p.message for p in check_paths([folder]).problems}
    assert messages["reporting.initial.recipients[4]"] == "unknown department 'state_council'"
    assert "follow-ups come more often as the level rises" in messages["reporting.follow_up.every.II"]


def test_who_signs_a_report_off_names_positions_that_exist(tmp_path: Path) -> None:
    folder = copy_plans(tmp_path / "plans", "flood")
    plan = yaml.safe_load((folder / "flood.yaml").read_text(encoding="utf-8"))
    plan["reporting"]["initial"]["signed_by"] = ["duty_leader@emergency_office", "night_king@emergency_office",
                                                 "grid_worker@emergency_office"]
    # A reporting unit that holds none of the default signers' posts (a community has no 局长, 分管负责同志 or
    # 带班领导): a rule without `signed_by` must then name who signs.
    plan["reporting"]["department"] = "community"
    (folder / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    messages = {p.path: p.message for p in check_paths([folder]).problems}
    assert messages["reporting.initial.signed_by[1]"].startswith("unknown position 'night_king'")
    assert "has no grid_worker" in messages["reporting.initial.signed_by[2]"]
    assert "reporting.initial.signed_by[0]" not in messages
    assert "name the positions that sign" in messages["reporting.follow_up.signed_by"]
