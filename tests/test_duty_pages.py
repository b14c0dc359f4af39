"""The duty desk's pages (issue 17, items 1 and 6): the office imports a roster file on the roster page, as the API
and the CLI import it (the rows kept; each refused row named by row, field and why in the reader's language; a file
that cannot be read keeps nothing); the analytics page and its CSV report the minutes tasks had no owner."""

from __future__ import annotations

import csv
import io

import httpx
from sqlmodel import select

from core.platform.db import session_scope
from core.users.models import RosterShift
from tests.api_server import Api, audit_actions, csrf_of, flood, make_user, page_client
from tests.fixtures.clock import Clock

# Row 3 names a holder who is not a user; rows 2 and 4 are good.
ROSTER = ("department,position,holder,stand_in,date,start,end\n"
          "water_affairs,duty_officer,wa_zhang,wa_li,2026-07-20,08:00,20:00\n"
          "water_affairs,duty_officer,nobody_here,,2026-07-21,08:00,20:00\n"
          "water_affairs,duty_officer,wa_li,,2026-07-20,20:00,08:00\n")


def shifts() -> list[tuple[str, str]]:
    with session_scope() as session:
        return sorted((s.holder_id, s.starts_at.isoformat()) for s in session.exec(select(RosterShift)).all())


def upload(browser: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return browser.post("/roster/import", data={"csrf": csrf_of(browser, "/roster")},
                        files={"roster_file": (name, data, "application/octet-stream")})


def test_the_roster_page_imports_a_file_keeps_the_good_rows_and_names_each_refused_one(api: Api) -> None:
    for name in ("wa_zhang", "wa_li"):
        make_user(name, "department", "water_affairs")
    with page_client(api.server, "office") as browser:
        roster = browser.get("/roster")
        assert 'action="/roster/import"' in roster.text and 'enctype="multipart/form-data"' in roster.text
        response = upload(browser, "值班表.csv", ROSTER.encode())
        assert response.status_code == 200, response.text[:500]
        html = response.text
        assert 'data-added="2"' in html and 'data-refused="1"' in html and "导入值班表" in html
        assert '<tr data-row="3" data-field="holder" data-code="not_a_user">' in html
        assert "“nobody_here”不是系统用户" in html and "值班人" in html
        kept = shifts()
        assert len(kept) == 2
        # The same file again: nothing changes, the refusal is named again.
        again = upload(browser, "值班表.csv", ROSTER.encode())
        assert 'data-added="0"' in again.text and 'data-unchanged="2"' in again.text and shifts() == kept
        # A reader in English reads the refusal in English.
        assert browser.post("/lang", data={"lang": "en", "next": "/roster",
                                           "csrf": csrf_of(browser, "/roster")}).status_code == 303
        english = upload(browser, "roster.csv", ROSTER.encode())
        assert "&#39;nobody_here&#39; is not a user" in english.text and "Why it was refused" in english.text
        assert "不是系统用户" not in english.text
        # A file that is not a roster keeps nothing and says why; so does a form without a file.
        broken = upload(browser, "roster.xlsx", b"not a workbook")
        assert broken.status_code == 422 and 'data-reason="unreadable"' in broken.text
        assert "roster.xlsx is not an XLSX workbook" in broken.text
        browser.post("/lang", data={"lang": "zh", "next": "/roster", "csrf": csrf_of(browser, "/roster")})
        assert "不是有效的 XLSX 工作簿" in upload(browser, "值班表.xlsx", b"PK\x03\x04 broken").text
        # A cell longer than the CSV reader takes (once an error page, a 500).
        assert "无法按 CSV 读取" in upload(browser, "long.csv", b"department,position\n" + b"x" * 200_000).text
        assert 'data-reason="unknown_format"' in upload(browser, "roster.txt", ROSTER.encode()).text
        empty = browser.post("/roster/import", data={"csrf": csrf_of(browser, "/roster")},
                             files={"roster_file": ("", b"", "application/octet-stream")})
        assert empty.status_code == 422 and 'id="import-no-file"' in empty.text
        assert shifts() == kept
        # Without the form's CSRF token nothing is imported.
        forged = browser.post("/roster/import", data={"csrf": "forged"},
                              files={"roster_file": ("r.csv", ROSTER.replace("2026-07-2", "2026-08-2").encode())})
        assert forged.status_code == 403 and shifts() == kept
    imports = [a for a in audit_actions() if a[1] == "roster.imported"]
    assert len(imports) == 3 and imports[0][0] == "user:office" and imports[0][2]["source"] == "值班表.csv"
    # Who may import is who may through the API: departments and managers may not (the form is not theirs).
    for who in ("water_affairs", "manager"):
        with page_client(api.server, who) as browser:
            assert 'action="/roster/import"' not in browser.get("/roster").text
            refused = upload(browser, "r.csv", ROSTER.replace("2026-07-2", "2026-09-2").encode())
            assert refused.status_code == 404
    assert shifts() == kept


def test_the_analytics_page_and_its_csv_show_the_minutes_tasks_had_no_owner(api: Api, clock: Clock) -> None:
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    assert api.call("water_affairs", "POST", f"/api/tasks/{task_id}/hand-back",
                    json={"reason": "力量不足"}).status_code == 200
    clock.advance(minutes=7)
    with page_client(api.server, "manager") as browser:
        html = browser.get("/review/analytics").text
        assert 'id="ownerless"' in html and "各事件无人负责时长（分钟）" in html
        row = html[html.index(f'<tr data-incident="{incident.code}"'):]
        row = row[:row.index("</tr>")]
        minutes = float(row.split('data-ownerless-minutes="')[1].split('"')[0])
        assert 6.9 <= minutes <= 7.2 and f'href="/review/incidents/{incident.id}"' in row
        total = html[html.index('class="ownerless-total'):]
        assert 6.9 <= float(total.split('data-ownerless-minutes="')[1].split('"')[0]) <= 7.2
        water = html[html.index('<tr data-key="water_affairs"'):]
        water = water[:water.index("</tr>")]
        assert 6.9 <= float(water.split('data-ownerless-minutes="')[1].split('"')[0]) <= 7.2
        browser.post("/lang", data={"lang": "en", "next": "/", "csrf": csrf_of(browser, "/review")})
        english = browser.get("/review/analytics").text
        assert "Minutes without an owner, by incident" in english and "无人负责" not in english
    response = api.call("manager", "GET", "/api/analytics.csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    by = {(r["group"], r["key"]): r for r in rows}
    assert 6.9 <= float(by["total", ""]["ownerless_minutes"]) <= 7.2
    assert 6.9 <= float(by["department", "water_affairs"]["ownerless_minutes"]) <= 7.2
    assert float(by["department", "meteorology"]["ownerless_minutes"]) == 0
