"""The office records a level decision on a leader's verbal order by choosing the leader, not by typing a user
name: the incident page's level form and each grading proposal offer the active holders of the positions the plan
names (by post and name, "本人决定" first), the form still posts `ordered_by`, and `authorise` still refuses an
order from someone without the position."""

from __future__ import annotations

import re
from html import unescape

from sqlmodel import select

from core.incidents import authority
from core.ledger import chain as ledger
from core.platform.db import session_scope
from core.users.models import User
from tests import engine_driver as drive
from tests.api_server import (  # noqa: F401
    Api,
    InProcessApi,
    api_fixture,
    api_server_fixture,
    csrf_of,
    flood,
    flood_with_proposal,
    make_user,
    page_client,
)

COMMANDER = "市防汛抗旱指挥部总指挥（张三）"
DEPUTY = "市防汛抗旱指挥部副总指挥（李四）"


def named(username: str, display_name: str) -> None:
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        user.display_name = display_name
        session.add(user)


def leaders(api: Api) -> None:
    """The standard commander (张三), a deputy commander (李四, who may raise to III, not to II), a bureau director
    (王五, a post the plan does not name for levels) and a manager holding the commander's post (only reads)."""
    named("commander", "张三")
    make_user("deputy", "office", positions=["deputy_commander@flood_control_hq"])
    named("deputy", "李四")
    make_user("director", "department", "water_affairs", positions=["bureau_director@water_affairs"])
    named("director", "王五")
    make_user("viewer", "manager", positions=["commander@flood_control_hq"])
    named("viewer", "赵六")


def select_of(html: str, select_id: str) -> list[tuple[str, str]]:
    """The options (value, text) of the <select name="ordered_by" id=select_id>."""
    found = re.search(rf'<select id="{re.escape(select_id)}" name="ordered_by">(.*?)</select>', html, re.S)
    assert found, f"no order-giver choice {select_id}"
    return [(unescape(value), unescape(text).strip()) for value, text in
            re.findall(r'<option value="([^"]*)"[^>]*>(.*?)</option>', found.group(1), re.S)]


def level_changes(incident_id: str) -> list[dict[str, object]]:
    with session_scope() as session:
        return [dict(e.details) for e in ledger.read_chain(session, incident_id) if e.kind == "level.changed"]


def test_the_office_chooses_the_leader_whose_verbal_order_it_records(api: Api) -> None:
    incident_id, proposal_id = flood_with_proposal()  # at level IV, graded at II
    leaders(api)
    url = f"/office/incidents/{incident_id}"
    browser = page_client(api.server, "office")
    html = browser.get(url).text
    assert '<input id="ordered-by"' not in html and "填写用户名" not in html
    # The level form offers any level: the holders of the posts that may raise to III, II or I, by post and name.
    options = select_of(html, "ordered-by")
    assert options[0] == ("", "本人决定")
    assert ("commander", COMMANDER) in options and ("deputy", DEPUTY) in options
    assert not [o for o in options if o[0] in ("director", "viewer") or "王五" in o[1] or "赵六" in o[1]]
    # What graded it is worded by the plan's labels and units, as on the board, never by its internal measure.
    assert "casualty_report.deaths" not in html and "<code>casualty_report" not in html
    assert re.search(r"<li>[^<]*死亡[^<]*: 12 人", html), re.findall(r"<li>[^<]*12[^<]*</li>", html)
    # The proposal (to II) offers only those who may raise to II.
    assert select_of(html, f"proposal-order-{proposal_id}") == [("", "本人决定"), ("commander", COMMANDER)]

    # Chosen: accepted, ledgered as the commander's order recorded by the office, flagged until confirmed.
    done = browser.post(f"{url}/level", data={"csrf": csrf_of(browser, url), "level": "III", "reason": "雨情加重",
                                              "ordered_by": "commander"})
    assert done.status_code == 303, done.text
    assert drive.incident(incident_id).level == "III"
    [changed] = level_changes(incident_id)
    assert changed["authority"] == {"act": "raise", "level": "III", "authorised_by": "commander",
                                    "position": "commander@flood_control_hq", "recorded_by": "user:office",
                                    "verbal": True}
    assert "按张三口头指令代为记录" in browser.get(url).text

    # Someone without the position (a forged value): refused as before, nothing changed, the choice kept.
    refused = browser.post(f"{url}/level", data={"csrf": csrf_of(browser, url), "level": "II", "reason": "x",
                                                 "ordered_by": "director"})
    assert refused.status_code == 403
    [said] = re.findall(r'<p class="alert error" role="alert">(.*?)</p>', refused.text, re.S)
    assert "须由以下职务之一决定" in said and "市防汛抗旱指挥部总指挥" in said
    # The deputy is listed (they may raise to III) but may not order II: refused too.
    refused = browser.post(f"{url}/level", data={"csrf": csrf_of(browser, url), "level": "II", "reason": "x",
                                                 "ordered_by": "deputy"})
    assert refused.status_code == 403
    assert ("deputy", DEPUTY) in select_of(refused.text, "ordered-by")
    assert re.search(r'<option value="deputy" selected>', refused.text)
    assert drive.incident(incident_id).level == "III" and len(level_changes(incident_id)) == 1
    browser.close()


def test_nobody_holding_the_posts_is_said_and_the_office_may_still_decide_itself(api_server: InProcessApi) -> None:
    make_user("office", "office")
    incident_id = drive.open_("flood", level="IV")
    drive.step(incident_id)
    browser = page_client(api_server, "office")
    html = unescape(browser.get(f"/office/incidents/{incident_id}").text)
    browser.close()
    assert select_of(html, "ordered-by") == [("", "本人决定")]
    assert "尚无人担任可下达此指令的职务（市防汛抗旱指挥部总指挥、市防汛抗旱指挥部副总指挥）" in html


def test_order_givers_are_whom_authorise_accepts(api: Api) -> None:
    leaders(api)
    with session_scope() as session:
        givers = authority.order_givers(session, ["commander@flood_control_hq", "deputy_commander",
                                                  "commander@flood_control_hq"])
        assert [(g.ref, g.username, g.name) for g in givers] == [
            ("commander@flood_control_hq", "commander", "张三"), ("deputy_commander", "deputy", "李四")]
        assert authority.order_givers(session, []) == []


def test_the_warning_gate_task_offers_the_holders_whose_order_may_start_the_response(api: Api) -> None:
    """The task page of a decision that starts or ends the response (the warning gate, a termination step) offers
    the same choice, for the positions that decision needs at the incident's level."""
    leaders(api)
    incident = flood("lift", level="IV")
    html = page_client(api.server, "office").get(f"/tasks/{incident.tasks['lift_warning']}").text
    options = select_of(html, "ordered-by")
    assert options[0][0] == "" and ("commander", COMMANDER) in options and ("deputy", DEPUTY) in options, options
    assert not {"director", "viewer"} & {value for value, _ in options}, options
    assert '<input id="ordered-by"' not in html
