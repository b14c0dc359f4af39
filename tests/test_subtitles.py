"""中英对照: a reader who asks for both languages reads the Chinese pages with each text's English under it; the
English never lands inside an attribute, a title, an option or a script, and a stored text cannot forge it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from sqlmodel import select

from core.platform.db import session_scope
from core.platform.templating import subtitled, with_english
from core.users.models import User
from tests.api_server import Api, flood
from tests.fixtures.api import csrf_of, page_client

SUBTITLE = re.compile(r'<small class="subtitle" lang="en">([^<]*)</small>')
MARKS = re.compile("[\ue000-\ue002]")
NO_MARKUP_IN = ("title", "option", "textarea", "script", "style")


class Placement(HTMLParser):
    """Where each subtitle is: the elements open around it, and any attribute that holds one."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.misplaced: list[str] = []
        self.in_attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_attributes += [f"{tag}[{k}]={v[:60]}" for k, v in attrs
                               if v and ("subtitle" in v or "<small" in v) and (tag, k) != ("small", "class")]
        if tag == "small" and ("class", "subtitle") in attrs:
            self.misplaced += [f"{tag} in {e}" for e in self.open if e in NO_MARKUP_IN]
        if tag not in ("input", "meta", "link", "br", "img", "hr", "source", "col", "area", "wbr"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.open:
            while self.open and self.open.pop() != tag:
                pass


def test_a_marked_text_is_chinese_with_english_in_text_and_chinese_alone_where_markup_cannot_go() -> None:
    rain = with_english("暴雨", "rainstorm")
    issued = with_english(f"发布{rain}预警", f"Issue {rain} warning")
    html = subtitled(f'<title>{issued}</title><a title="{issued}">{issued}</a><select><option>{issued}'
                     f'<option>{rain}</select><p>{rain[:-1]}</p>')
    assert html == ('<title>发布暴雨预警</title><a title="发布暴雨预警">发布暴雨预警<small class="subtitle" lang="en">'
                    'Issue rainstorm warning</small></a><select><option>发布暴雨预警<option>暴雨</select><p>暴雨</p>')
    assert with_english("地图", "地图") == "地图"


def test_a_reader_who_asks_for_both_reads_every_label_with_its_english_under_it(api: Api) -> None:
    incident = flood("forecast")
    task = f"/tasks/{incident.tasks['rainstorm_forecast']}"
    client = page_client(api.server, "meteorology")
    chinese = client.get(task).text
    assert 'class="subtitle"' not in chinese and "中英对照" in chinese
    switched = client.post("/lang", data={"lang": "zh-en", "csrf": csrf_of(client, task), "next": task})
    assert switched.status_code == 303
    page = client.get(task)
    assert page.status_code == 200 and '<html lang="zh-CN">' in page.text
    english = SUBTITLE.findall(page.text)
    # the pages' own texts (gettext) and the plan's (its form labels and step titles) alike
    assert "Log out" in english and "Expected peak hourly rainfall" in english, english[:40]
    assert "退出登录<small" in page.text and "预计最大小时雨量</span>" not in page.text
    assert len(english) > 20 and not MARKS.search(page.text)
    placement = Placement()
    placement.feed(page.text)
    assert placement.misplaced == [] and placement.in_attributes == []
    title = re.search(r"<title>([^<]*)</title>", page.text)
    assert title and not re.search(r"[A-Za-z]{4}", title.group(1).replace("Baton", "")), title
    # back to Chinese alone
    client.post("/lang", data={"lang": "zh", "csrf": csrf_of(client, task), "next": task})
    assert 'class="subtitle"' not in client.get(task).text


def test_a_stored_text_holding_the_marks_cannot_forge_a_subtitle(api: Api) -> None:
    incident = flood("forecast")
    forged = "道路\ue000封闭\ue001<b>closed</b>\ue002 3 条"
    posted = api.call("meteorology", "POST", f"/api/incidents/{incident.id}/reports",
                      json={"text": forged, "classification": "internal"})
    assert posted.status_code in (200, 201), posted.text
    client = page_client(api.server, "meteorology")
    client.post("/lang", data={"lang": "zh-en", "csrf": csrf_of(client, "/inbox"), "next": "/inbox"})
    board = client.get(f"/incidents/{incident.id}/board").text
    assert "道路封闭&lt;b&gt;closed&lt;/b&gt; 3 条" in board and not MARKS.search(board)
    assert "<b>closed" not in board and "Log out" in SUBTITLE.findall(board)


def test_every_console_renders_for_a_reader_of_both_without_a_mark_left_or_markup_in_an_attribute(api: Api) -> None:
    incident = flood("assessment")
    pages = ["/office", f"/office/incidents/{incident.id}", "/inbox", "/desk", "/roster", "/map", "/review",
             f"/review/incidents/{incident.id}", f"/review/incidents/{incident.id}/report", "/registers",
             "/resources", "/prevention", "/upward-reports", "/office/channels", f"/incidents/{incident.id}/board",
             f"/tasks/{incident.tasks['flood_risk_assessment']}", "/admin/users", "/admin/audit", "/no-such-page"]
    with session_scope() as session:
        for user in session.exec(select(User)).all():
            user.lang = "zh-en"
            session.add(user)
    # What each reader is not shown (answered as if it did not exist); everything else renders for them.
    refused = {"office": {"/admin/users", "/admin/audit"}, "admin": set(),
               "manager": {"/office", f"/office/incidents/{incident.id}", "/inbox", "/desk", "/office/channels",
                           "/admin/users", "/admin/audit"}}
    seen = 0
    for who in ("office", "admin", "manager"):
        client = page_client(api.server, who)
        for path in pages:
            response = client.get(path)
            if response.status_code in (302, 303):
                continue
            expected = 404 if path == "/no-such-page" or path in refused[who] else 200
            assert response.status_code == expected, (who, path, response.status_code)
            html = response.text
            assert not MARKS.search(html), (who, path)
            placement = Placement()
            placement.feed(html)
            assert placement.misplaced == [] and placement.in_attributes == [], (who, path, placement.in_attributes)
            seen += len(SUBTITLE.findall(html)) > 0
    assert seen >= 20, seen
