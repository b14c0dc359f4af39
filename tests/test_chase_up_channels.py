# ruff: noqa: F811  (the tests take test_pages' `login` and `users` fixtures, imported below, as arguments)
"""A chase-up (催办) of an overdue task reaches the people on duty for it through the notification channels, each
on a local receiver speaking the real protocol (DingTalk's signed robot, WeCom's group robot, an SMS gateway): the
department's duty officer for a department's task (the roster's stand-in while the holder is away), the holder of
the position for a task addressed to one (the named stand-in while the holder is away). The message names the
incident and the task in Chinese, the English beside it; it is queued in the outbox and sent as every delivery is.
Nobody reachable: the chase-up is still recorded, and the office's page says no channel reached anyone. A task not
overdue is still refused (409 task_not_overdue), nothing queued."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlmodel import col, select

from core.incidents import chase
from core.incidents.models import DepartmentTask, Incident
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import channels
from core.outbox.models import DeliveryOutcome, OutboundDelivery
from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.platform.errors import BatonError
from core.users import rosters
from core.users.models import User
from core.users.positions import set_stand_in
from tasks.delivery import send_once
from tests.channel_receivers import Received, running
from tests.fixtures.api import make_user, on_duty
from tests.test_duty_screen import late, visible
from tests.test_pages import (  # noqa: F401  (login and users are fixtures)
    Login,
    flood,
    login,
    post,
    task_of,
    users,
)

STEP_ZH = "发布暴雨预报与雨量研判"  # the flood plan's rainstorm_forecast, the meteorological bureau's
STEP_EN = "Issue rainstorm forecast and rainfall assessment"
ASK = "请尽快办理并在系统中签收/办结"


@pytest.fixture
def robots(baton: str) -> Iterator[dict[str, Received]]:
    with running("dingtalk", "dt-chase-token-0001", secret="SECchase-sign-secret-0001") as dingtalk, \
            running("wecom", "wecom-chase-key-0001") as wecom, running("sms", "sms-chase-key-0001") as sms:
        yield {"dingtalk": dingtalk, "wecom": wecom, "sms": sms}


def channel_for(robot: Received, name: str) -> str:
    with session_scope() as session:
        return channels.add_channel(session, name=name, kind=robot.kind, url=robot.url, token=robot.token,
                                    secret=robot.secret, actor="test:office").id


def contact(channel_id: str, username: str, mobile: str) -> None:
    with session_scope() as session:
        channels.set_contact(session, channel_id=channel_id, username=username, address=mobile, actor="test:office")


def notices(incident_id: str) -> list[OutboundDelivery]:
    with session_scope() as session:
        return list(session.exec(select(OutboundDelivery).where(
            OutboundDelivery.incident_id == incident_id, col(OutboundDelivery.purpose).startswith("notice."))
            .order_by(col(OutboundDelivery.created_at))).all())


def send(deliveries: list[OutboundDelivery]) -> list[str]:
    """Each delivery sent once, as the incident's flow sends it (tasks.delivery)."""
    async def all_of() -> list[str]:
        return [await send_once(d.id) for d in deliveries]

    return asyncio.run(all_of())


def chased(incident_id: str) -> list[dict[str, object]]:
    with session_scope() as session:
        return [e.details for e in ledger.read_chain(session, incident_id) if e.kind == LedgerKind.task_chased_up]


def code_of(incident_id: str) -> str:
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return incident.code


def assert_worded(text: str, code: str) -> None:
    """Which incident and which task in Chinese, the request to act, then the English beside it."""
    assert code in text and STEP_ZH in text and "市气象局" in text and ASK in text and "超时" in text
    assert STEP_EN in text and "Overdue since" in text
    assert text.index(ASK) < text.index(STEP_EN)


def test_a_chase_up_reaches_the_departments_duty_officer_on_dingtalk_and_a_task_not_overdue_is_refused(
        login: Login, robots: dict[str, Received]) -> None:
    make_user("met_duty", "department", "meteorology", positions=["duty_officer@meteorology"])
    contact(channel_for(robots["dingtalk"], "气象局值班群"), "met_duty", "13900001111")
    incident_id = flood("IV")
    forecast = task_of(incident_id, "rainstorm_forecast")
    office = login("office1")
    url = f"/office/incidents/{incident_id}"
    chase_url = f"/office/tasks/{forecast.id}/chase-up"
    # Not overdue: refused, on the page and in the service; nothing recorded, nothing queued.
    refused = post(office, chase_url, {}, url)
    assert refused.status_code == 409 and "只有已超时且未办结的任务才能催办" in refused.text
    with session_scope() as session, pytest.raises(BatonError) as raised:
        chase.chase_up(session, task_id=forecast.id, actor="user:office1")
    assert raised.value.code == "task_not_overdue" and raised.value.http_status == 409
    assert chased(incident_id) == [] and notices(incident_id) == []

    late(forecast.id, minutes=25)
    done = post(office, chase_url, {}, url)
    assert done.status_code == 303 and done.headers["location"] == f"{url}?done=chased"
    assert "已催办，已通知承办部门" in visible(office.get(done.headers["location"]).text)
    [details] = chased(incident_id)
    assert details["on_duty"] == [{"username": "met_duty", "position": "duty_officer@meteorology",
                                   "channels": ["气象局值班群"]}]
    assert details["system"] is False  # no endpoint configured: the channel is what reaches the department
    [queued] = notices(incident_id)
    assert (queued.purpose, queued.target, queued.outcome) == ("notice.dingtalk", "met_duty", DeliveryOutcome.pending)
    with session_scope() as session:  # woken, so that its flow sends the message now
        incident = session.get(Incident, incident_id)
        entry = next(e for e in ledger.read_chain(session, incident_id) if e.kind == LedgerKind.task_chased_up)
        assert incident is not None and incident.woken_at >= entry.at
    # Sent as every delivery is: the signed robot accepts it, @-mentioning the duty officer.
    assert send([queued]) == ["delivered"]
    [(mobile, text)] = robots["dingtalk"].messages()
    assert mobile == "13900001111"
    assert text.startswith(f"【催办】{code_of(incident_id)} {STEP_ZH}")
    assert_worded(text, code_of(incident_id))


def test_the_rostered_duty_officer_away_the_stand_in_is_chased_on_wecom_once_per_minute(
        baton: str, robots: dict[str, Received]) -> None:
    on_duty("meteorology", "met_zhang", "met_li")
    now = utcnow()
    with session_scope() as session:
        rosters.mark_away(session, username="met_zhang", starts_at=now - timedelta(hours=1),
                          ends_at=now + timedelta(hours=3), reason="病假", actor="test:office")
    wecom = channel_for(robots["wecom"], "气象局企业微信群")
    contact(wecom, "met_zhang", "13900002222")
    contact(wecom, "met_li", "13900003333")
    incident_id = flood("IV")
    forecast = task_of(incident_id, "rainstorm_forecast")
    late(forecast.id)
    moment = utcnow()
    with session_scope() as session:
        first = chase.chase_up(session, task_id=forecast.id, actor="user:office1", now=moment)
        assert first.reached == ["met_li"]
    # A double click in the same minute is the same chase-up: nothing more recorded or queued.
    with session_scope() as session:
        again = chase.chase_up(session, task_id=forecast.id, actor="user:office1", now=moment + timedelta(seconds=1))
        assert again.entry.id == first.entry.id and again.reached == ["met_li"]
    assert len(chased(incident_id)) == 1
    queued = notices(incident_id)
    assert [(d.purpose, d.target) for d in queued] == [("notice.wecom", "met_li")]
    assert send(queued) == ["delivered"]
    [(mobile, text)] = robots["wecom"].messages()
    assert mobile == "13900003333"
    assert_worded(text, code_of(incident_id))


def test_a_task_addressed_to_a_position_chases_its_holder_or_the_named_stand_in_by_sms(
        baton: str, robots: dict[str, Received]) -> None:
    make_user("hq_chief", "office", None, positions=["commander@flood_control_hq"])
    make_user("hq_deputy", "office", None)
    with session_scope() as session:
        chief = session.exec(select(User).where(User.username == "hq_chief")).one()
        set_stand_in(session, user_id=chief.id, ref="commander@flood_control_hq", stand_in="hq_deputy",
                     actor="test:admin")
    sms = channel_for(robots["sms"], "短信平台")
    contact(sms, "hq_chief", "13900004444")
    contact(sms, "hq_deputy", "13900005555")
    incident_id = flood("IV")
    forecast = task_of(incident_id, "rainstorm_forecast")
    with session_scope() as session:  # the office referred it to the commander (as an alert's "ask_leader" does)
        task = session.get(DepartmentTask, forecast.id)
        assert task is not None
        task.position = "commander@flood_control_hq"
        session.add(task)
    late(forecast.id)
    start = utcnow()
    with session_scope() as session:
        done = chase.chase_up(session, task_id=forecast.id, actor="user:office1", now=start)
    assert done.reached == ["hq_chief"] and done.entry.to_party == "commander@flood_control_hq"
    # The commander away: the stand-in named for the post is chased instead.
    with session_scope() as session:
        rosters.mark_away(session, username="hq_chief", starts_at=start, ends_at=start + timedelta(hours=2),
                          reason="出差", actor="test:office")
    with session_scope() as session:
        later = chase.chase_up(session, task_id=forecast.id, actor="user:office1", now=start + timedelta(minutes=2))
    assert later.reached == ["hq_deputy"]
    queued = notices(incident_id)
    assert [d.target for d in queued] == ["hq_chief", "hq_deputy"]
    assert send(queued) == ["delivered", "delivered"]
    got = robots["sms"].messages()
    assert [m for m, _ in got] == ["13900004444", "13900005555"]
    for _, text in got:
        assert code_of(incident_id) in text and STEP_ZH in text and ASK in text and "总指挥" in text


def test_nobody_reachable_the_chase_up_is_recorded_and_the_page_says_no_channel_reached_anyone(
        login: Login, robots: dict[str, Received]) -> None:
    # The duty officer has no channel contact (the channel reaches somebody else).
    make_user("met_duty", "department", "meteorology", positions=["duty_officer@meteorology"])
    make_user("someone", "department", "water_affairs")
    contact(channel_for(robots["dingtalk"], "水务局值班群"), "someone", "13900006666")
    incident_id = flood("IV")
    forecast = task_of(incident_id, "rainstorm_forecast")
    late(forecast.id)
    office = login("office1")
    url = f"/office/incidents/{incident_id}"
    done = post(office, f"/office/tasks/{forecast.id}/chase-up", {}, url)
    assert done.status_code == 303
    html = office.get(done.headers["location"]).text
    page = visible(html)
    assert "没有任何通知渠道联系到值班人员" in page and "已通知承办部门" not in page
    assert '<p class="alert warn" role="alert" id="notice">' in html  # a warning to call them, not a confirmation
    [details] = chased(incident_id)
    assert details["on_duty"] == [{"username": "met_duty", "position": "duty_officer@meteorology", "channels": []}]
    assert notices(incident_id) == []
