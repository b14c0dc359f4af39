"""叫应 (issue 17, items 3 and 4): a red flood warning must be answered by the officials the plan names, through
channels speaking real protocols (DingTalk's signed robot, WeCom's group robot, an SMS gateway, e-mail), each on a
local receiver that checks what the real service checks. Officials answer through signed, single-use, expiring
links whose GET only shows a confirm page; the unanswered are escalated to their stand-ins at the plan's limit;
a red warning with no response started prompts the command; every send, answer and escalation is in the ledger;
the board, the API and the after-action report show answered/called and the p95 time to answer. A drill's
messages go only to drill channels, stamped 演练. On the clock the test moves, in process."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlmodel import col, select

from api.pages import answer as answer_page
from core.learning.after_action.compute import build_report
from core.learning.after_action.render import render_report_html
from core.ledger import chain as ledger
from core.ledger.models import LedgerEntry
from core.outbox.channels import dingtalk_sign
from core.outbox.links import token_for
from core.outbox.models import DeliveryAttempt, DeliveryOutcome, OutboundDelivery
from core.outbox.sending import DeliveryFailed
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.settings import get_settings
from core.sharing import answers
from core.sharing import warnings as release
from core.sharing.models import AnswerRequest, CapAlert
from core.users.models import User
from core.users.positions import set_stand_in
from tasks.delivery import send_once
from tests import engine_driver as drive
from tests.api_server import Api, make_user, page_client
from tests.channel_receivers import Received, running, running_mail_server
from tests.conftest import StartWorker, copy_plans
from tests.fixtures.api import on_duty
from tests.fixtures.clock import Clock
from tests.fixtures.database import clear_settings_caches
from tests.polling import wait_for

LINK = re.compile(r"/answer/([A-Za-z0-9_.\-]+)")


# -- the officials, the channels, the warning --------------------------------------------------------------------
# The warning's polygon: 23.10–23.15°N, 113.20–113.30°E. Two sub-districts lie inside it, 东湖街道 and 西湖街道,
# each with a community (东湖社区, 西湖社区); 北山镇 and its village 北山村 lie some 50 km away.
POLYGON = "23.10,113.20 23.10,113.30 23.15,113.30 23.15,113.20 23.10,113.20"
AREAS: dict[str, tuple[str, str, str, str | None, list[list[float]]]] = {
    # key: (kind, zh, en, supervisor, boundary as lon/lat)
    "donghu_street": ("sub_district", "东湖街道办事处", "Donghu Sub-district", "city_government",
                      [[113.21, 23.11], [113.25, 23.11], [113.25, 23.14], [113.21, 23.14], [113.21, 23.11]]),
    "donghu_community": ("community", "东湖社区居委会", "Donghu Community", "donghu_street",
                         [[113.22, 23.12], [113.24, 23.12], [113.24, 23.13], [113.22, 23.13], [113.22, 23.12]]),
    "xihu_street": ("sub_district", "西湖街道办事处", "Xihu Sub-district", "city_government",
                    [[113.25, 23.11], [113.29, 23.11], [113.29, 23.14], [113.25, 23.14], [113.25, 23.11]]),
    "xihu_community": ("community", "西湖社区居委会", "Xihu Community", "xihu_street",
                       [[113.26, 23.12], [113.28, 23.12], [113.28, 23.13], [113.26, 23.13], [113.26, 23.12]]),
    "beishan_town": ("town", "北山镇人民政府", "Beishan Town", "city_government",
                     [[113.60, 23.50], [113.70, 23.50], [113.70, 23.60], [113.60, 23.60], [113.60, 23.50]]),
    "beishan_village": ("community", "北山村村民委员会", "Beishan Village", "beishan_town",
                        [[113.62, 23.52], [113.64, 23.52], [113.64, 23.54], [113.62, 23.54], [113.62, 23.52]]),
}
INSIDE = ("donghu_street", "donghu_community", "xihu_street", "xihu_community")
# The API fixture's `commander` holds the flood headquarters' commander post: the head at the same level. Then the
# heads of both sub-districts and both communities, and fifteen evacuation keepers spread over the four.
OFFICIALS = (["commander", "sd_head_east", "sd_head_west", "cm_head_east", "cm_head_west"]
             + [f"keeper_{n:02d}" for n in range(1, 16)])
SILENT = ("cm_head_west", "keeper_14", "keeper_15")
# The town outside the warning: its head, its village's head and a keeper hold the same posts and are not called.
OUTSIDE = {"town_head_far": "town_head@beishan_town", "village_head_far": "community_head@beishan_village",
           "keeper_far": "evacuation_keeper@beishan_town"}


@pytest.fixture
def plans_dir(tmp_path: Path) -> Path:
    """The shipped flood plan (its default 叫应 officials) and registry, with the sub-districts, communities, town
    and village above as organisations of their own."""
    folder = copy_plans(tmp_path / "plans", "flood")
    registry = yaml.safe_load((folder / "departments.yaml").read_text(encoding="utf-8"))
    for key, (kind, zh, en, supervisor, _) in AREAS.items():
        registry["departments"].append({"key": key, "name": {"zh": zh, "en": en}, "kind": kind,
                                         "supervisor": supervisor})
    (folder / "departments.yaml").write_text(yaml.safe_dump(registry, allow_unicode=True), encoding="utf-8")
    return folder


def _position(name: str) -> str:
    if name in OUTSIDE:
        return OUTSIDE[name]
    if name == "commander":
        return "commander@flood_control_hq"
    if name.startswith("sd_head"):
        return f"sub_district_head@{'donghu' if name.endswith('east') else 'xihu'}_street"
    if name.startswith("cm_head"):
        return f"community_head@{'donghu' if name.endswith('east') else 'xihu'}_community"
    return f"evacuation_keeper@{INSIDE[int(name[-2:]) % 4]}"


def import_areas(api: Api) -> None:
    """Each organisation's administrative area (辖区), as the office imports them."""
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                 "properties": {"organisation": key, "名称": zh}} for key, (_, zh, _, _, ring) in AREAS.items()]
    document = json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False)
    response = api.call("office", "POST", "/api/registers/area/import",
                        json={"filename": "areas.geojson", "content": document})
    assert response.status_code == 200 and response.json()["refused"] == [], response.text
    assert response.json()["added"] == len(AREAS)


def mobile(name: str) -> str:
    return f"1390000{sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 10000:04d}"


@pytest.fixture
def robots(baton: str) -> Iterator[dict[str, Received]]:
    with running("dingtalk", "dt-access-token-0001", secret="SECdingtalk-sign-secret-0001") as dingtalk, \
            running("wecom", "wecom-robot-key-0001") as wecom, running("sms", "sms-api-key-0001") as sms:
        yield {"dingtalk": dingtalk, "wecom": wecom, "sms": sms}


def add_channel(api: Api, robot: Received, name: str, *, for_drills: bool = False, secret: str | None = None
                ) -> dict[str, Any]:
    response = api.call("office", "POST", "/api/channels", json={
        "name": name, "kind": robot.kind, "url": robot.url, "token": robot.token,
        "secret": robot.secret if secret is None else secret, "for_drills": for_drills})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def contact(api: Api, channel_id: str, username: str, address: str | None = None) -> None:
    response = api.call("office", "PUT", f"/api/channels/{channel_id}/contacts",
                        json={"username": username, "address": address or mobile(username)})
    assert response.status_code == 200, response.text


def staff(api: Api, robots: dict[str, Received]) -> dict[str, str]:
    """Twenty officials reached through DingTalk, WeCom and SMS in turn, and the three silent ones' stand-ins
    (reached by SMS). Returns each mobile number's user name."""
    ids = {name: make_user(name, "department", _position(name).split("@")[1], positions=[_position(name)])
           for name in OFFICIALS if name != "commander"}
    for name in SILENT:
        make_user(f"{name}_b", "department", _position(name).split("@")[1])
        with session_scope() as session:
            set_stand_in(session, user_id=ids[name], ref=_position(name), stand_in=f"{name}_b", actor="test:admin")
    channels = {kind: add_channel(api, robot, f"{kind}-group") for kind, robot in robots.items()}
    order = ("dingtalk", "wecom", "sms")
    for i, name in enumerate(OFFICIALS):
        contact(api, channels[order[i % 3]]["id"], name)
    for name in SILENT:
        contact(api, channels["sms"]["id"], f"{name}_b")
    return {mobile(n): n for n in [*OFFICIALS, *(f"{s}_b" for s in SILENT)]}


def red_warning(polygon: str | None = None, **opened: Any) -> tuple[str, CapAlert]:
    """A flood incident whose red rainstorm warning (redrawn over `polygon` after the office returned it) the office
    reviewed and the meteorological bureau's director signed off: released."""
    incident_id = drive.open_("flood", level="IV", **opened)
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 80, "rainfall_24h": 200,
                                                            "warning_colour": "red",
                                                            "valid_until": drive.VALID_UNTIL})
    drive.step(incident_id, real_actions=True)
    make_user("met_director", "department", "meteorology", positions=["bureau_director@meteorology"])
    with session_scope() as session:
        alert = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).one()
    if polygon is not None:
        with session_scope() as session:
            release.return_draft(session, incident_id=incident_id, alert_id=alert.id, actor="user:office",
                                 reason="画出预警区域")
        with session_scope() as session:
            release.redraft(session, incident_id=incident_id, alert_id=alert.id, actor="user:meteorology",
                            department="meteorology", polygons=[polygon])
    with session_scope() as session:
        release.review(session, incident_id=incident_id, alert_id=alert.id, actor="user:office")
    with session_scope() as session:
        signer = session.exec(select(User).where(User.username == "met_director")).one()
        alert = release.sign(session, incident_id=incident_id, alert_id=alert.id, signer=signer)
    return incident_id, alert


def reconcile(incident_id: str) -> answers.AnswerPass:
    with session_scope() as session:
        return answers.reconcile(session, incident_id=incident_id)


def send_pending(incident_id: str) -> list[str]:
    """Send every pending notice once, as the flow's deliveries do; the outcomes."""
    with session_scope() as session:
        ids = list(session.exec(select(OutboundDelivery.id).where(
            OutboundDelivery.incident_id == incident_id, OutboundDelivery.outcome == DeliveryOutcome.pending,
            col(OutboundDelivery.purpose).startswith("notice."))).all())

    async def one(delivery_id: str) -> str:
        try:
            return await send_once(delivery_id)
        except DeliveryFailed:
            return "retry"  # Prefect's task retries it after the outbox's backoff

    async def all_of() -> list[str]:
        return [await one(i) for i in ids]

    return asyncio.run(all_of())


def kinds(incident_id: str, kind: str) -> list[LedgerEntry]:
    with session_scope() as session:
        return list(session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id,
                                                           LedgerEntry.kind == kind)
                                 .order_by(col(LedgerEntry.seq))).all())


def links(robots: dict[str, Received], who: dict[str, str]) -> dict[str, list[str]]:
    """Each person's answer links, as the robots and the gateway received them."""
    found: dict[str, list[str]] = {}
    for robot in robots.values():
        for address, text in robot.messages():
            match = LINK.search(text)
            if match is not None:  # a prompt to the command carries no link
                found.setdefault(who[address], []).append(match.group(1))
    return found


def confirm(api: Api, token: str) -> Any:
    """Open the link as a person's phone does, then press the button."""
    opened = api.call(None, "GET", f"/answer/{token}")
    assert opened.status_code == 200, opened.text
    given = re.search(r'name="confirm" value="([0-9a-f]+)"', opened.text)
    assert given is not None, opened.text
    return api.call(None, "POST", f"/answer/{token}", data={"confirm": given.group(1)})


# -- Done when --------------------------------------------------------------------------------------------------
def test_a_red_flood_warning_reaches_twenty_officials_seventeen_answer_three_stand_ins_are_called(
        api: Api, robots: dict[str, Received], clock: Clock) -> None:
    who = staff(api, robots)
    import_areas(api)
    for name, ref in OUTSIDE.items():  # the town outside, reachable on every channel: it is still not called
        make_user(name, "department", ref.split("@")[1], positions=[ref])
        for channel in api.call("office", "GET", "/api/channels").json():
            contact(api, channel["id"], name)
        who[mobile(name)] = name
    incident_id, alert = red_warning(POLYGON, location_name="东湖街道、西湖街道")
    assert alert.colour == "red" and alert.state == "issued" and f"<polygon>{POLYGON}</polygon>" in alert.xml
    called = reconcile(incident_id)
    assert len(called.opened) == 1 and len(called.deliveries) == 20
    # Who was called: the commander, the heads of both sub-districts and both communities inside the polygon and
    # their keepers, each for the post of their own organisation; nobody of the town outside it.
    posts = {e.to_party: str(e.details["position"]) for e in kinds(incident_id, "answer.requested")}
    assert posts == {f"user:{n}": _position(n) for n in OFFICIALS}
    assert {p.split("@")[1] for p in posts.values()} == {"flood_control_hq", *INSIDE}
    assert called.next_check is not None and called.next_check - utcnow() <= timedelta(minutes=15)
    assert reconcile(incident_id).deliveries == []  # once: a second reconciliation calls nobody again
    assert set(send_pending(incident_id)) == {"delivered"}
    # Each protocol carried its share, checked as the real service checks it (DingTalk's signature and time).
    assert [len(r.bodies) for r in robots.values()] == [7, 7, 6]
    assert all(not r.refused for r in robots.values())
    assert "市气象台发布暴雨红色预警信号" in robots["dingtalk"].bodies[0]["text"]["content"]
    sent = links(robots, who)
    assert sorted(sent) == sorted(OFFICIALS) and all(len(v) == 1 for v in sent.values())
    requested = kinds(incident_id, "answer.requested")
    assert len(requested) == 20 and {e.details["rung"] for e in requested} == {"official"}
    # Opening a link records nothing (a mail scanner opens every link).
    for name in OFFICIALS:
        assert api.call(None, "GET", f"/answer/{sent[name][0]}").status_code == 200
    assert kinds(incident_id, "answer.confirmed") == []
    # Seventeen answer, twenty seconds apart; three stay silent.
    for name in (n for n in OFFICIALS if n not in SILENT):
        clock.advance(seconds=20)
        answered = confirm(api, sent[name][0])
        assert answered.status_code == 200 and 'data-state="answered"' in answered.text, answered.text
    assert len(kinds(incident_id, "answer.confirmed")) == 17
    # Nothing is due before the limit: the silent are not escalated early.
    waiting = reconcile(incident_id)
    assert waiting.deliveries == [] and kinds(incident_id, "answer.escalated") == []
    # At the limit (15 minutes for red), when the flow wakes for it, their stand-ins are called, and the command
    # is prompted: no response has started.
    assert waiting.next_check is not None
    clock.advance(seconds=(waiting.next_check - utcnow()).total_seconds())
    escalated = reconcile(incident_id)
    assert len(escalated.deliveries) == 4  # the three stand-ins, and the prompt to the commander
    assert set(send_pending(incident_id)) == {"delivered"}
    prompts = [t for a, t in robots["dingtalk"].messages() if who[a] == "commander" and "尚未启动应急响应" in t]
    assert len(prompts) == 1 and "17/20" in prompts[0] and "/answer/" not in prompts[0]
    steps = kinds(incident_id, "answer.escalated")
    assert sorted(e.from_party for e in steps) == sorted(f"user:{n}" for n in SILENT)
    assert sorted(e.to_party for e in steps) == sorted(f"user:{n}_b" for n in SILENT)
    stand_ins = [e for e in kinds(incident_id, "answer.requested") if e.details["rung"] == "stand_in"]
    assert sorted(e.to_party for e in stand_ins) == sorted(f"user:{n}_b" for n in SILENT)
    with session_scope() as session:
        limit = {r.id: r for r in session.exec(select(AnswerRequest)).all()}
    for entry in stand_ins:
        official = limit[entry.details["official_id"]]
        assert entry.at - official.sent_at <= timedelta(minutes=15, seconds=1)  # called at the limit
    assert sorted(links(robots, who)) == sorted([*OFFICIALS, *(f"{s}_b" for s in SILENT)])
    prompted = kinds(incident_id, "answer.command_prompted")
    assert len(prompted) == 1 and prompted[0].to_party == "flood_control_hq"
    assert prompted[0].details["answered"] == 17 and prompted[0].details["officials"] == 20
    # The office sees 17/20, who did not answer and whom that called, and the p95 time to answer.
    figures = api.call("office", "GET", f"/api/incidents/{incident_id}/answers").json()
    [call] = figures["calls"]
    assert (call["answered"], call["officials"]) == (17, 20)
    assert sorted(s["username"] for s in call["silent"]) == sorted(SILENT)
    assert all(s["called"][0]["rung"] == "stand_in" for s in call["silent"])
    assert call["p95_seconds"] == pytest.approx(17 * 20, abs=20)  # nearest rank of 17 answers: the last one
    assert figures["p95_seconds"] == call["p95_seconds"]
    assert api.call("meteorology", "GET", f"/api/incidents/{incident_id}/answers").status_code == 403
    board = page_client(api.server, "office").get(f"/incidents/{incident_id}/board")
    assert board.status_code == 200
    panel = board.text[board.text.index('id="board-answers"'):]
    assert '<strong class="answer-tally">17/20</strong>' in panel and "answer-p95" in panel
    assert "时限15分钟" in panel  # minutes as people write them: not "15.0"
    assert all(f'data-username="{n}"' in panel for n in SILENT)
    # The after-action report carries the same figures.
    with session_scope() as session:
        report = build_report(session, incident_id=incident_id)
    [reported] = report.answers["calls"]
    assert (reported["answered"], reported["officials"], reported["p95_seconds"]) == (17, 20, call["p95_seconds"])
    html = render_report_html(report, "zh")
    section = html[html.index('id="answers"'):]
    assert '<td class="num answer-tally">17/20</td>' in section and "keeper_15" in section
    # All of it in the ledger, and the chain intact.
    with session_scope() as session:
        assert ledger.verify_incident(session, incident_id).valid


def test_a_warning_whose_posts_nobody_holds_is_flagged_on_the_board(api: Api, clock: Clock) -> None:
    """Not a quiet 0/0: the office reads that nobody was called, and why, where it watches the answers."""
    from core.users.positions import revoke

    with session_scope() as session:  # the one post holder of the cast (the flood headquarters' commander) leaves it
        commander = session.exec(select(User).where(User.username == "commander")).one()
        revoke(session, user_id=commander.id, ref="commander@flood_control_hq", actor="user:admin")
    incident_id, _ = red_warning()
    reconcile(incident_id)
    [call] = api.call("office", "GET", f"/api/incidents/{incident_id}/answers").json()["calls"]
    assert (call["officials"], call["answered"]) == (0, 0)
    assert [e.details["why"] for e in kinds(incident_id, "answer.unreachable")] == ["nobody holds the posts"]
    board = page_client(api.server, "office").get(f"/incidents/{incident_id}/board")
    panel = board.text[board.text.index('id="board-answers"'):]
    assert 'class="alert error nobody-to-call"' in panel and "未能叫应任何人" in panel


def test_answer_links_are_single_use_expire_and_cannot_be_forged(
        api: Api, robots: dict[str, Received], clock: Clock) -> None:
    who = staff(api, robots)
    incident_id, _ = red_warning()
    reconcile(incident_id)
    send_pending(incident_id)
    sent = links(robots, who)
    token = sent["keeper_01"][0]

    def confirmed() -> int:
        return len(kinds(incident_id, "answer.confirmed"))

    # Forged: another request's id under this signature, a changed expiry, a made-up token.
    request_id, expires, mac = token.split(".")
    other_id = sent["keeper_02"][0].split(".")[0]
    for forged in (f"{other_id}.{expires}.{mac}", f"{request_id}.{int(expires) + 3600}.{mac}", "nothing-here",
                   f"{request_id}.{expires}.{'A' * len(mac)}"):
        page = api.call(None, "GET", f"/answer/{forged}")
        assert page.status_code == 404 and 'data-state="answer_link_invalid"' in page.text
        assert "并非本系统发出" in page.text or "无效" in page.text
        assert "This link is not valid" in page.text
        posted = api.call(None, "POST", f"/answer/{forged}", data={"confirm": "0" * 64})
        assert posted.status_code in (403, 404)
    assert confirmed() == 0
    # A button pressed without the page's form token (another site's form) records nothing.
    refused = api.call(None, "POST", f"/answer/{token}", data={"confirm": "0" * 64})
    assert refused.status_code == 403 and confirmed() == 0
    # Used twice: the second press changes nothing.
    assert confirm(api, token).status_code == 200 and confirmed() == 1
    again = api.call(None, "GET", f"/answer/{token}")
    assert again.status_code == 409 and 'data-state="answer_link_used"' in again.text
    assert "This link was used already" in again.text
    form = answer_page._form_token(token)
    assert api.call(None, "POST", f"/answer/{token}", data={"confirm": form}).status_code == 409
    assert confirmed() == 1
    # Expired: a day on, the link is refused and nothing is recorded.
    clock.advance(hours=get_settings().answer_link_hours, minutes=1)
    late = sent["keeper_03"][0]
    page = api.call(None, "GET", f"/answer/{late}")
    assert page.status_code == 410 and 'data-state="answer_link_expired"' in page.text
    assert "This link has expired" in page.text
    assert api.call(None, "POST", f"/answer/{late}", data={"confirm": form}).status_code in (403, 410)
    assert confirmed() == 1
    # The links are made when sent and never stored: the delivery log's payloads hold none.
    with session_scope() as session:
        payloads = [d.payload for d in session.exec(select(OutboundDelivery)).all()]
    assert not any(LINK.search(str(p)) for p in payloads)
    assert token_for(request_id, utcnow()).split(".")[0] == request_id


def test_a_drill_goes_only_to_drill_channels_stamped_as_a_drill(api: Api, clock: Clock) -> None:
    with running("wecom", "real-group-key-0001") as real, running("wecom", "drill-group-key-0001") as rehearsal, \
            running_mail_server() as mailbox:
        import os

        os.environ["BATON_SMTP__HOST"], os.environ["BATON_SMTP__PORT"] = "127.0.0.1", str(mailbox.port)
        os.environ["BATON_SMTP__SENDER"] = "yjj-zhiban@city.example.gov.cn"
        clear_settings_caches()
        try:
            make_user("keeper_a", "department", "community", positions=["evacuation_keeper@community"])
            real_channel = add_channel(api, real, "real-group")
            drill_channel = add_channel(api, rehearsal, "drill-group", for_drills=True)
            mail = api.call("office", "POST", "/api/channels", json={"name": "drill-mail", "kind": "email",
                                                                     "for_drills": True})
            assert mail.status_code == 201, mail.text
            for channel_id in (real_channel["id"], drill_channel["id"]):
                contact(api, channel_id, "keeper_a", "13900001111")
            contact(api, mail.json()["id"], "keeper_a", "keeper_a@community.example.gov.cn")
            incident_id, _ = red_warning(drill=True)
            called = reconcile(incident_id)
            assert len(called.deliveries) == 2  # the drill channels, not the real group
            assert set(send_pending(incident_id)) == {"delivered"}
            assert real.bodies == [] and len(rehearsal.bodies) == 1
            text = rehearsal.bodies[0]["text"]["content"]
            assert text.startswith("【演练】") and "/answer/" in text
            [message] = mailbox.messages
            assert str(message["Subject"]).startswith("【演练】")
            assert message["To"] == "keeper_a@community.example.gov.cn"
            body = message.get_body(("plain",))
            assert body is not None and "【演练】" in body.get_content() and "/answer/" in body.get_content()
            [requested] = [e for e in kinds(incident_id, "answer.requested") if e.to_party == "user:keeper_a"]
            assert requested.details["drill"] is True
            assert sorted(requested.details["channels"]) == ["drill-group", "drill-mail"]
        finally:
            for name in ("BATON_SMTP__HOST", "BATON_SMTP__PORT", "BATON_SMTP__SENDER"):
                os.environ.pop(name, None)
            clear_settings_caches()


def test_a_failing_channel_is_retried_logged_and_never_answers_for_anyone(
        api: Api, robots: dict[str, Received], clock: Clock) -> None:
    make_user("keeper_x", "department", "community", positions=["evacuation_keeper@community"])
    bad = add_channel(api, robots["dingtalk"], "wrong-secret", secret="SECnot-the-robots-secret")
    contact(api, bad["id"], "keeper_x")
    good = add_channel(api, robots["sms"], "sms")
    contact(api, good["id"], "keeper_x")
    # Secrets are shown back masked, never in full.
    listed = api.call("office", "GET", "/api/channels").json()
    assert all("SECnot" not in str(c) and "sms-api-key-0001" not in str(c) for c in listed)
    assert {c["token"] for c in listed} <= {"••••", "••••0001"}
    incident_id, _ = red_warning()
    reconcile(incident_id)
    robots["sms"].fail_next = 1
    outcomes = send_pending(incident_id)
    # DingTalk refused the signature (errcode 310000): failed for good. The gateway's 500: retried, then sent.
    assert sorted(outcomes) == ["failed", "retry"]
    assert robots["dingtalk"].refused and "310000" in robots["dingtalk"].refused[0]
    assert set(send_pending(incident_id)) == {"delivered"}
    with session_scope() as session:
        attempts = session.exec(select(DeliveryAttempt)).all()
        errors = [a.error or "" for a in attempts]
    assert any("errcode 310000" in e for e in errors) and any("HTTP 500" in e for e in errors)
    assert not any("dt-access-token" in e or "SEC" in e for e in errors)  # no token or secret in the log
    assert kinds(incident_id, "answer.confirmed") == []
    figures = api.call("office", "GET", f"/api/incidents/{incident_id}/answers").json()
    assert (figures["answered"], figures["officials"]) == (0, 2)  # keeper_x and the fixture's commander


def test_dingtalk_signature_is_the_documented_one() -> None:
    # The example DingTalk's documentation computes: HMAC-SHA256 over "<timestamp>\n<secret>", base64, urlencoded.
    import base64
    import hashlib
    import hmac
    import urllib.parse

    secret, stamp = "SEC1234567890abcdef", 1577262236757
    raw = base64.b64encode(hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest())
    assert dingtalk_sign(secret, stamp) == urllib.parse.quote_plus(raw)
    assert "%" in dingtalk_sign(secret, stamp) or "+" not in dingtalk_sign(secret, stamp)


@pytest.fixture
def must_answer_plan(baton: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The flood plan whose order to the sub-districts must be answered by the water bureau's duty officer."""
    plans = copy_plans(tmp_path / "plans", "flood")
    plan = yaml.safe_load((plans / "flood.yaml").read_text(encoding="utf-8"))
    [step] = [s for s in plan["stages"]["warning"]["steps"] if s["key"] == "notify_subdistricts"]
    step["must_answer"] = True
    plan["answering"] = {"officials": ["duty_officer@water_affairs"], "within": {"blue": "PT20M"}}
    (plans / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("BATON_PLANS_DIR", str(plans))
    clear_settings_caches()
    yield
    clear_settings_caches()


def test_a_must_answer_step_calls_the_rostered_duty_officer_then_the_stand_in_then_the_level_above(
        api: Api, must_answer_plan: None, clock: Clock) -> None:
    on_duty("water_affairs", "wa_zhang", "wa_li")
    make_user("yjj_director", "office", None, positions=["bureau_director@emergency_office"])
    incident_id = drive.open_("flood", level="IV")
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 20, "rainfall_24h": 60,
                                                            "warning_colour": "blue",
                                                            "valid_until": drive.VALID_UNTIL})
    drive.step(incident_id)  # the automated steps finish: the order to the sub-districts is out
    first = reconcile(incident_id)
    assert len(first.opened) >= 1
    requested = kinds(incident_id, "answer.requested")
    on_step = [e for e in requested if e.step_key == "notify_subdistricts"]
    assert [e.to_party for e in on_step] == ["user:wa_zhang"]
    assert on_step[0].details["channels"] == []  # no channel reaches them: recorded, and still escalated in time
    assert [e.to_party for e in kinds(incident_id, "answer.unreachable")][:1] == ["user:wa_zhang"]
    # The plan's limit for the level's colour (blue: 20 minutes here): then the roster's stand-in, then the head
    # of the bureau above.
    clock.advance(minutes=20, seconds=1)
    reconcile(incident_id)
    clock.advance(minutes=20, seconds=1)
    reconcile(incident_id)
    chain = [(e.details["rung"], e.to_party) for e in kinds(incident_id, "answer.requested")
             if e.step_key == "notify_subdistricts"]
    assert chain == [("official", "user:wa_zhang"), ("stand_in", "user:wa_li"), ("above", "user:yjj_director")]
    assert len(kinds(incident_id, "answer.escalated")) == 2
    figures = api.call("manager", "GET", f"/api/incidents/{incident_id}/answers").json()
    [call] = [c for c in figures["calls"] if c["step_key"] == "notify_subdistricts"]
    assert (call["answered"], call["officials"], call["stand_ins_called"], call["above_called"]) == (0, 1, 1, 1)


def test_the_office_configures_channels_and_contacts_on_its_page_secrets_shown_back_masked(api: Api) -> None:
    """The channels page (api/pages/channels.py) through the same services as /api/channels: a channel added with
    its token and secret, which are never shown back in full (nor after a refusal); switched off; a person's
    address; an administrator's stand-in."""
    from sqlmodel import select as sql_select

    from core.outbox.models import ChannelContact, NotifyChannel
    from core.users.models import UserPosition
    from tests.api_server import csrf_of

    office = page_client(api.server, "office")
    assert 'href="/office/channels"' in office.get("/office").text
    csrf = csrf_of(office, "/office/channels")
    token, secret = "wecom-robot-key-secret-9876", "SECsign-secret-value-5432"
    # Refused (the key inside the URL): the field named, the token and secret not written back into the form.
    refused = office.post("/office/channels", data={"csrf": csrf, "name": "防汛群", "kind": "dingtalk",
                                                    "url": "https://oapi.dingtalk.com/robot/send?access_token=x",
                                                    "token": token, "secret": secret})
    assert refused.status_code == 422 and 'id="err-url"' in refused.text
    # Said beside the field in the reader's language, not in the service's English.
    said = re.search(r'id="err-url">([^<]*)</p>', refused.text)
    assert said, refused.text[-3000:]
    assert said.group(1) == "访问令牌或密钥属于保密信息，请填在专门的栏目中，不要写在地址里。"
    assert "access_token" not in said.group(1) and "secret)" not in refused.text
    assert token not in refused.text and secret not in refused.text and 'value="防汛群"' in refused.text
    added = office.post("/office/channels", data={"csrf": csrf, "name": "防汛群", "kind": "dingtalk",
                                                  "url": "https://oapi.dingtalk.com/robot/send", "token": token,
                                                  "secret": secret, "for_drills": "1"})
    assert added.status_code == 303
    listed = office.get("/office/channels").text
    assert token not in listed and secret not in listed and "••••9876" in listed and "••••5432" in listed
    with session_scope() as session:
        channel = session.exec(sql_select(NotifyChannel).where(NotifyChannel.name == "防汛群")).one()
        assert (channel.token, channel.secret, channel.for_drills, channel.active) == (token, secret, True, True)
        # At rest both are sealed: the table itself (a backup, a copy of the file) holds neither.
        from sqlalchemy import text as sql_text

        stored = session.execute(sql_text("SELECT token, secret FROM notify_channel WHERE id = :id"),
                                 {"id": channel.id}).one()
        assert all(value.startswith("sealed:v1:") for value in stored), stored
        assert token not in "".join(stored) and secret not in "".join(stored)
    assert 'data-channel="防汛群" data-active="1" data-drills="1"' in listed
    # A person's address: a robot reaches people by mobile number.
    wrong = office.post("/office/channels-contacts", data={"csrf": csrf, "channel": channel.id,
                                                           "username": "water_affairs", "address": "not a number"})
    assert wrong.status_code == 422 and 'id="err-contact_address"' in wrong.text
    assert office.post("/office/channels-contacts", data={"csrf": csrf, "channel": channel.id,
                                                          "username": "water_affairs", "address": "13900001234"}
                       ).status_code == 303
    assert office.post(f"/office/channels/{channel.id}", data={"csrf": csrf, "active": "0"}).status_code == 303
    with session_scope() as session:
        assert session.get(NotifyChannel, channel.id).active is False  # type: ignore[union-attr]
        assert session.exec(sql_select(ChannelContact.address)).all() == ["13900001234"]
    assert 'data-channel="防汛群" data-active="0"' in office.get("/office/channels").text
    # The stand-in is an administrator's: the office gets no such form, and its post reads as missing.
    assert 'id="stand-in-form"' not in listed
    holder = make_user("keeper_x", "department", "community", positions=["evacuation_keeper@community"])
    make_user("keeper_x_b", "department", "community")
    form = {"username": "keeper_x", "position": "evacuation_keeper@community", "stand_in": "keeper_x_b"}
    assert office.post("/admin/stand-ins", data={"csrf": csrf, **form}).status_code == 404
    admin = page_client(api.server, "admin")
    admin_csrf = csrf_of(admin, "/office/channels")
    for changes, where, words in (({"stand_in": "nobody_at_all"}, "si_stand_in", "该用户名不存在。"),
                                  ({"stand_in": "keeper_x"}, "si_stand_in", "AB角须由职务担任人以外的人员担任。"),
                                  ({"username": "nobody_at_all"}, "si_username", "该用户名不存在。")):
        wrong = admin.post("/admin/stand-ins", data={"csrf": admin_csrf, **form, **changes})
        said = re.search(rf'id="err-{where}">([^<]*)</p>', wrong.text)
        assert wrong.status_code == 422 and said and said.group(1) == words, (changes, wrong.text[-2000:])
    assert admin.post("/admin/stand-ins", data={"csrf": admin_csrf, **form}).status_code == 303
    with session_scope() as session:
        row = session.exec(sql_select(UserPosition).where(UserPosition.user_id == holder)).one()
        assert row.stand_in_id is not None
    # The page offers each post with its holder, by their names, and the people who may stand in: no code is typed.
    from core.plans.wording import Wording

    shown = admin.get("/office/channels").text
    post_name = Wording("zh").position("evacuation_keeper@community")
    option = re.search(r'<option value="(keeper_x evacuation_keeper@community)"[^>]*>([^<]*)</option>', shown)
    assert option, shown[-3000:]
    assert option.group(2).startswith(f"{post_name} · keeper_x") and "evacuation_keeper" not in option.group(2)
    assert option.group(2).endswith("（AB角：keeper_x_b）"), option.group(2)  # the stand-in named above
    assert re.search(r'<select id="si_stand_in" name="stand_in">.*<option value="keeper_x_b">', shown, re.S)
    assert 'placeholder="evacuation_keeper@community"' not in shown
    # Chosen from the page: the post and its holder as one choice, the stand-in cleared.
    cleared = admin.post("/admin/stand-ins", data={"csrf": admin_csrf, "holding": option.group(1), "stand_in": ""})
    assert cleared.status_code == 303, cleared.text[-2000:]
    with session_scope() as session:
        assert session.exec(sql_select(UserPosition).where(UserPosition.user_id == holder)).one().stand_in_id is None
    # A post its "holder" does not hold (a forged choice) is refused beside the field.
    forged = "keeper_x_b evacuation_keeper@community"
    wrong = admin.post("/admin/stand-ins", data={"csrf": admin_csrf, "holding": forged, "stand_in": "keeper_x"})
    assert wrong.status_code == 422 and 'id="err-si_position"' in wrong.text, wrong.text[-2000:]


# -- through a real worker --------------------------------------------------------------------------------------
@pytest.fixture
def quick_answers_plan(baton: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The flood plan whose red warning the community's evacuation keepers must answer within 8 seconds (15 minutes
    as shipped: a test does not wait that long), the command prompted only after an hour."""
    plans = copy_plans(tmp_path / "plans", "flood")
    plan = yaml.safe_load((plans / "flood.yaml").read_text(encoding="utf-8"))
    plan["answering"] = {"officials": ["evacuation_keeper@community"], "within": {"red": "PT8S"},
                         "response_within": "PT1H"}
    (plans / "flood.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("BATON_PLANS_DIR", str(plans))
    clear_settings_caches()
    yield
    clear_settings_caches()


@pytest.mark.prefect
def test_a_real_worker_calls_the_officials_and_at_the_limit_the_silent_ones_stand_in(
        api: Api, quick_answers_plan: None, workers: StartWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """叫应 as it runs in production: a Baton worker process runs the flood incident's flow against the Prefect
    server; the red warning released, its flow calls the two keepers over the SMS gateway, one answers through
    the link on their phone, and at the plan's limit the flow's own timer calls the silent one's stand-in. This
    process never reconciles the calls itself."""
    def not_here(*args: Any, **kwargs: Any) -> answers.AnswerPass:
        raise AssertionError("the worker's flow reconciles the answer calls, not the test")

    monkeypatch.setattr(answers, "reconcile", not_here)
    with running("sms", "sms-api-key-0001") as sms:
        ids = {name: make_user(name, "department", "community", positions=["evacuation_keeper@community"])
               for name in ("keeper_a", "keeper_b")}
        make_user("keeper_b_alt", "department", "community")
        with session_scope() as session:
            set_stand_in(session, user_id=ids["keeper_b"], ref="evacuation_keeper@community",
                         stand_in="keeper_b_alt", actor="test:admin")
        gateway = add_channel(api, sms, "sms")
        for name in ("keeper_a", "keeper_b", "keeper_b_alt"):
            contact(api, gateway["id"], name)
        who = {mobile(n): n for n in ("keeper_a", "keeper_b", "keeper_b_alt")}

        def received() -> dict[str, list[str]]:
            return links({"sms": sms}, who)

        make_user("met_director", "department", "meteorology", positions=["bureau_director@meteorology"])

        workers("worker-a")
        incident_id = drive.open_("flood", level="IV")
        wait_for(lambda: "rainstorm_forecast" in drive.open_tasks(incident_id), 60, "the first assignment")
        drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 80, "rainfall_24h": 200,
                                                                "warning_colour": "red",
                                                                "valid_until": drive.VALID_UNTIL})

        def drafted() -> str | None:  # by the worker's publish_rainstorm_warning task
            with session_scope() as session:
                found = session.exec(select(CapAlert.id).where(CapAlert.incident_id == incident_id)).first()
                return found

        alert_id = str(wait_for(drafted, 30, "the warning drafted by the worker"))
        with session_scope() as session:
            release.review(session, incident_id=incident_id, alert_id=alert_id, actor="user:office")
        with session_scope() as session:
            signer = session.exec(select(User).where(User.username == "met_director")).one()
            release.sign(session, incident_id=incident_id, alert_id=alert_id, signer=signer)

        # The signing wakes the flow, which calls both keepers; the worker delivers to the gateway.
        wait_for(lambda: len(received()) == 2, 20, "both keepers' messages")
        sent = received()
        assert sorted(sent) == ["keeper_a", "keeper_b"]
        answered = confirm(api, sent["keeper_a"][0])
        assert answered.status_code == 200 and 'data-state="answered"' in answered.text, answered.text

        # At the limit (8 s), the flow's timer wakes it: keeper_b's stand-in is called, keeper_a is not chased.
        wait_for(lambda: "keeper_b_alt" in received(), 30, "the stand-in's message")
        assert len(received()["keeper_b"]) == 1 and len(sent["keeper_a"]) == 1

    requested = kinds(incident_id, "answer.requested")
    assert sorted((e.to_party, e.details["rung"]) for e in requested if e.details["rung"] != "above") == [
        ("user:keeper_a", "official"), ("user:keeper_b", "official"), ("user:keeper_b_alt", "stand_in")]
    assert all(e.details["channels"] == ["sms"] and e.actor == "baton" for e in requested)
    [confirmed] = kinds(incident_id, "answer.confirmed")
    assert confirmed.from_party == "user:keeper_a" and confirmed.details["via"] == "link"
    assert confirmed.details["late"] is False
    escalated = [e for e in kinds(incident_id, "answer.escalated") if e.from_party == "user:keeper_b"]
    assert [(e.to_party, e.details["rung"]) for e in escalated] == [("user:keeper_b_alt", "stand_in")]
    assert not [e for e in kinds(incident_id, "answer.escalated") if e.from_party == "user:keeper_a"]
    with session_scope() as session:
        official = session.exec(select(AnswerRequest).where(AnswerRequest.rung == "official",
                                                            AnswerRequest.user_id == ids["keeper_b"])).one()
        assert escalated[0].at >= official.due_at  # not before the limit
        assert escalated[0].at - official.due_at < timedelta(seconds=10)  # and by the flow's timer, not a recheck
        delivered = session.exec(select(OutboundDelivery.outcome).where(
            OutboundDelivery.incident_id == incident_id, col(OutboundDelivery.purpose).startswith("notice."))).all()
        assert len(delivered) >= 3 and set(delivered) == {DeliveryOutcome.delivered}
        assert ledger.verify_incident(session, incident_id).valid
    assert drive.incident(incident_id).lease_owner == "worker-a"

