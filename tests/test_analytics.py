"""Analytics across incidents, over incidents built with known times (see `constructed_incidents`): the figures
per department and per incident type, medians and 90th percentiles worked out by hand, the period and the
filters, drills left out unless asked for (and counted in plan time when they are), the CSV, the API and the
page, and who may read them."""

from __future__ import annotations

import csv
import io
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from api.app import app
from core.incidents.models import Incident
from core.learning import analytics
from core.learning.analytics import CSV_COLUMNS, InvalidFilter, compute, parse_bound, percentile, to_csv
from core.learning.simulation import sample_outputs
from core.plans.store import plan_for_version
from core.platform.db import session_scope
from core.platform.errors import UnknownIncidentType
from core.users.models import User
from core.users.service import issue_token
from tests.api_server import FORECAST, issued_token, make_user
from tests.test_after_action import NO_HOT_SPOTS, T0, ack, advance_at, complete, open_at

T1 = T0 + timedelta(days=1)  # the next day, also 10:00 in Beijing
NOW = T1 + timedelta(minutes=300)


def at(minutes: float, start: datetime = T0) -> datetime:
    return start + timedelta(minutes=minutes)


# A forecast valid until the evening of the second day: not past and within the plan's horizon at every moment
# the incidents below complete theirs.
FORECAST = {**FORECAST, "valid_until": (T1 + timedelta(hours=12)).isoformat()}


def sample(incident_id: str, step: str, moment: datetime) -> dict[str, Any]:
    """Simulated answers as a department would give them at `moment` (its times within the form's bounds)."""
    with mock.patch("core.learning.simulation.utcnow", return_value=moment), session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        return sample_outputs(plan_for_version(session, incident.plan_version_id).step(step), random.Random(1))


def constructed_incidents() -> dict[str, str]:
    """Four incidents (minutes after T0, 10:00 Beijing time on 20 July; C the next day):

    A  flood:   meteorology's forecast assigned 0, acknowledged 5, completed 20 (deadline 60: on time);
                water_affairs' assessment assigned 20, acknowledged 30, escalated 140, completed 200 (late).
    B  typhoon: meteorology's forecast assigned 60, acknowledged 85, completed 150 (deadline 120: on time);
                water_affairs' wind defence assessment (deadline 240), maritime's vessels to port and
                agriculture_rural's fishing boats (720 each) and natural_resources' geo-hazard patrol (480) are
                assigned 150 and never touched.
    C  flood (T1): meteorology's forecast assigned 0, acknowledged 15, completed 40 (on time);
                water_affairs' assessment assigned 40 (deadline 120), escalated 160, still open.
    D  flood drill on a ×10 clock (T0 + 120): the forecast acknowledged after 60 s and completed after 120 s of
                wall-clock time (600 s and 1200 s of plan time, on time); the assessment then left open.
    Read at T1 + 300 min, when every open assessment is past its due time."""
    a = open_at(T0)
    advance_at(a, at(0))
    ack(a, "rainstorm_forecast", at(5))
    complete(a, "rainstorm_forecast", at(20), FORECAST)
    advance_at(a, at(20))
    ack(a, "flood_risk_assessment", at(30))
    advance_at(a, at(140))
    complete(a, "flood_risk_assessment", at(200), NO_HOT_SPOTS)

    b = open_at(at(60), type_key="typhoon")
    advance_at(b, at(60))
    ack(b, "typhoon_forecast", at(85))
    complete(b, "typhoon_forecast", at(150), sample(b, "typhoon_forecast", at(150)))
    advance_at(b, at(150))

    c = open_at(T1)
    advance_at(c, T1)
    ack(c, "rainstorm_forecast", at(15, T1))
    complete(c, "rainstorm_forecast", at(40, T1), FORECAST)
    advance_at(c, at(40, T1))
    advance_at(c, at(160, T1))

    d = open_at(at(120), drill=True, clock_speed=10)
    advance_at(d, at(120))
    ack(d, "rainstorm_forecast", at(121))
    complete(d, "rainstorm_forecast", at(122), FORECAST)
    advance_at(d, at(122))
    return {"A": a, "B": b, "C": c, "D": d}


@pytest.fixture
def incidents(baton: str) -> dict[str, str]:
    return constructed_incidents()


def figures(**kwargs: Any) -> analytics.Analytics:
    with session_scope() as session:
        return compute(session, now=NOW, **kwargs)


def by_key(rows: list[analytics.Figures]) -> dict[str, analytics.Figures]:
    return {row.key: row for row in rows}


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.9) == 7
    assert percentile([300, 900, 1500], 0.5) == 900
    assert percentile([1500, 300, 900], 0.9) == 1380  # rank 1.8: 900 + 0.8 × (1500 − 900)
    assert percentile([1200, 1200, 2400, 5400], 0.5) == 1800
    assert percentile([1200, 1200, 2400, 5400], 0.9) == 4500  # rank 2.7: 2400 + 0.7 × 3000


def test_figures_per_department_leave_drills_out(incidents: dict[str, str]) -> None:
    result = figures()
    departments = by_key(result.by_department)
    assert list(departments) == ["agriculture_rural", "maritime", "meteorology", "natural_resources",
                                 "water_affairs"]
    met = departments["meteorology"]
    # Acknowledged after 300, 1500, 900 s; completed after 1200, 5400, 2400 s; all three on time.
    assert (met.incidents, met.handoffs, met.with_deadline, met.on_time, met.overdue, met.open) == (3, 3, 3, 3, 0, 0)
    assert met.on_time_rate == 1.0 and met.escalations == 0
    assert (met.acknowledged, met.ack_median_s, met.ack_p90_s) == (3, 900, 1380)
    assert (met.completed, met.completion_median_s, met.completion_p90_s) == (3, 2400, 4800)
    water = departments["water_affairs"]
    # A's assessment was late, B's and C's are open past their due times; two were escalated.
    assert (water.handoffs, water.on_time, water.overdue, water.open, water.on_time_rate) == (3, 0, 3, 0, 0.0)
    assert (water.ack_median_s, water.ack_p90_s, water.completion_median_s, water.completion_p90_s) == (
        600, 600, 10800, 10800)
    assert water.escalations == 2
    # B's three other warning tasks: one handoff each, open past its due time.
    for key in ("agriculture_rural", "maritime", "natural_resources"):
        other = departments[key]
        assert (other.handoffs, other.on_time, other.overdue, other.acknowledged, other.escalations) == (1, 0, 1, 0, 0)
    total = result.total
    assert (total.incidents, total.handoffs, total.on_time, total.overdue, total.on_time_rate, total.escalations) == (
        3, 9, 3, 6, 0.3333, 2)
    assert result.include_drills is False and result.start is None and result.end is None


def test_figures_per_incident_type(incidents: dict[str, str]) -> None:
    types = by_key(figures().by_type)
    assert list(types) == ["flood", "typhoon"]
    flood = types["flood"]
    # Acknowledged after 300, 600, 900 s; completed after 1200, 10800, 2400 s.
    assert (flood.incidents, flood.handoffs, flood.on_time, flood.overdue, flood.escalations) == (2, 4, 2, 2, 2)
    assert (flood.ack_median_s, flood.ack_p90_s) == (600, 840)
    assert (flood.completion_median_s, flood.completion_p90_s) == (2400, 9120)
    typhoon = types["typhoon"]
    assert (typhoon.handoffs, typhoon.on_time, typhoon.overdue, typhoon.ack_median_s, typhoon.completion_p90_s) == (
        5, 1, 4, 1500, 5400)
    assert typhoon.name == {"zh": "台风", "en": "Typhoon"}


def test_drills_count_when_asked_and_in_plan_time(incidents: dict[str, str]) -> None:
    result = figures(include_drills=True)
    met = by_key(result.by_department)["meteorology"]
    # The drill's forecast adds 600 s and 1200 s of plan time (60 s and 120 s on the wall at ×10).
    assert (met.incidents, met.handoffs, met.on_time) == (4, 4, 4)
    assert (met.ack_median_s, met.ack_p90_s) == (750, 1320)
    assert (met.completion_median_s, met.completion_p90_s) == (1800, 4500)
    assert by_key(result.by_department)["water_affairs"].overdue == 4
    assert result.total.incidents == 4 and result.include_drills


def test_the_period_is_by_assignment_a_date_meaning_the_whole_day(incidents: dict[str, str]) -> None:
    start, end = parse_bound("2026-07-20"), parse_bound("2026-07-20", upper=True)
    assert start == datetime(2026, 7, 19, 16, 0, tzinfo=UTC) and end == datetime(2026, 7, 20, 16, 0, tzinfo=UTC)
    result = figures(start=start, end=end)
    met = by_key(result.by_department)["meteorology"]
    assert (met.handoffs, met.ack_median_s, met.ack_p90_s, met.completion_median_s) == (2, 900, 1380, 3300)
    assert result.total.incidents == 2  # C was the next day
    only_c = figures(start=parse_bound("2026-07-21"))
    assert only_c.total.handoffs == 2 and only_c.total.incidents == 1
    # A date-time bound: from 11:00 Beijing time on, B's five handoffs (A's were assigned at 10:00 and 10:20).
    later = figures(start=parse_bound("2026-07-20T11:00"), end=end)
    assert later.total.handoffs == 5 and [r.key for r in later.by_type] == ["typhoon"]
    assert parse_bound("2026-07-20T03:00:00Z") == datetime(2026, 7, 20, 3, 0, tzinfo=UTC)
    assert parse_bound("") is None and parse_bound(None) is None


def test_filters_by_type_and_department(incidents: dict[str, str]) -> None:
    typhoon = figures(type_key="typhoon")
    assert [r.key for r in typhoon.by_type] == ["typhoon"] and typhoon.total.handoffs == 5
    water = figures(department="water_affairs")
    assert [r.key for r in water.by_department] == ["water_affairs"]
    assert water.total.handoffs == 3 and by_key(water.by_type)["flood"].handoffs == 2


def test_bad_filters_are_refused() -> None:
    with pytest.raises(InvalidFilter):
        parse_bound("20 July")
    with pytest.raises(InvalidFilter):
        parse_bound("2026-02-30")
    for edge in ("9999-12-31", "0001-01-01"):  # past the last day, before the first one in UTC
        with pytest.raises(InvalidFilter):
            parse_bound(edge, upper=edge.startswith("9999"))


def test_bad_filters_are_refused_by_compute(baton: str) -> None:
    with pytest.raises(UnknownIncidentType):
        figures(type_key="volcano")
    with pytest.raises(InvalidFilter):
        figures(department="ministry_of_magic")
    with pytest.raises(InvalidFilter):
        figures(start=parse_bound("2026-07-21"), end=parse_bound("2026-07-20"))


def test_csv_has_a_header_and_a_row_per_department_type_and_total(incidents: dict[str, str]) -> None:
    text = to_csv(figures())
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == CSV_COLUMNS == (
        "group", "key", "name_zh", "name_en", "incidents", "handoffs", "with_deadline", "on_time", "overdue", "open",
        "on_time_rate", "acknowledged", "ack_median_s", "ack_p90_s", "completed", "completion_median_s",
        "completion_p90_s", "escalations", "ownerless_minutes")
    body = [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
    assert [(r["group"], r["key"]) for r in body] == [
        ("department", "agriculture_rural"), ("department", "maritime"), ("department", "meteorology"),
        ("department", "natural_resources"), ("department", "water_affairs"),
        ("type", "flood"), ("type", "typhoon"), ("total", "")]
    rows_by = {(r["group"], r["key"]): r for r in body}
    met = rows_by["department", "meteorology"]
    assert met["name_zh"] == "市气象局" and met["name_en"] == "Meteorological Bureau"
    assert (met["handoffs"], met["on_time"], met["on_time_rate"], met["ack_median_s"], met["ack_p90_s"]) == (
        "3", "3", "1", "900", "1380")
    water = rows_by["department", "water_affairs"]
    assert (water["on_time_rate"], water["overdue"], water["escalations"]) == ("0", "3", "2")
    assert rows_by["type", "flood"]["completion_p90_s"] == "9120" and rows_by["total", ""]["on_time_rate"] == "0.3333"


# -- API and page -----------------------------------------------------------------------------------------------
@pytest.fixture
def tokens(baton: str) -> dict[str, str]:
    cast = {"office1": ("office", None), "boss1": ("manager", None), "root1": ("admin", None),
            "water1": ("department", "water_affairs")}
    for name, (role, department) in cast.items():
        make_user(name, role, department)
    return {name: issued_token(name) for name in cast}


def call(path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with TestClient(app) as client:
        return client.get(path, headers=headers)


def test_analytics_api_and_csv_for_reviewers_only(incidents: dict[str, str], tokens: dict[str, str]) -> None:
    for name in ("office1", "boss1", "root1"):
        body = call("/api/analytics?from=2026-07-20&to=2026-07-21", tokens[name]).json()
        assert body["from"] == "2026-07-19T16:00:00+00:00" and body["to"] == "2026-07-21T16:00:00+00:00"
        # Read now, not at NOW: C's assessment is past due too.
        assert body["total"]["handoffs"] == 9 and body["include_drills"] is False
        assert {r["key"] for r in body["by_department"]} == {"agriculture_rural", "maritime", "meteorology",
                                                            "natural_resources", "water_affairs"}
        assert {r["key"]: r for r in body["by_department"]}["meteorology"]["ack_median_s"] == 900
    drills = call("/api/analytics?include_drills=true", tokens["boss1"]).json()
    assert drills["total"]["incidents"] == 4
    typhoon = call("/api/analytics?type=typhoon&department=meteorology", tokens["boss1"]).json()
    assert typhoon["total"]["handoffs"] == 1 and typhoon["type"] == "typhoon"
    response = call("/api/analytics.csv?from=2026-07-20&to=2026-07-20", tokens["office1"])
    assert response.status_code == 200 and response.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="baton-analytics-2026-07-20-2026-07-20.csv"' in response.headers["content-disposition"]
    text = response.content.decode("utf-8-sig")
    assert text.splitlines()[0] == ",".join(CSV_COLUMNS) and "市气象局" in text
    for path in ("/api/analytics", "/api/analytics.csv"):
        refused = call(path, tokens["water1"])
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        assert call(path, None).status_code == 401
    for query, code in (("from=yesterday", "invalid_filter"), ("from=2026-07-21&to=2026-07-20", "invalid_filter"),
                        ("type=volcano", "unknown_incident_type"), ("department=nobody", "invalid_filter")):
        bad = call(f"/api/analytics?{query}", tokens["boss1"])
        assert bad.status_code == 422 and bad.json()["error"]["code"] == code, query


def page_client(username: str) -> TestClient:
    with session_scope() as session:
        user = session.exec(select(User).where(User.username == username)).one()
        token = issue_token(session, user=user, kind="session").token
    return TestClient(app, cookies={"baton_session": token})


def test_analytics_page_draws_bars_per_department(incidents: dict[str, str], tokens: dict[str, str]) -> None:
    with page_client("boss1") as manager:
        response = manager.get("/review/analytics?from=2026-07-20&to=2026-07-21&include_drills=1")
        assert response.status_code == 200
        html = response.text
        assert " style=" not in html and "<style" not in html
        assert "跨事件统计分析" in html and "市水务局" in html
        charts = [ElementTree.fromstring(s) for s in re.findall(r'<svg xmlns="http://www.w3.org/2000/svg" class="chart'
                                                               r'.*?</svg>', html, re.S)]
        assert [c.get("class") for c in charts] == ["chart on-time-chart", "chart delay-chart"]
        bars = {g.get("data-key"): g for g in charts[0].iter("{http://www.w3.org/2000/svg}g")}
        assert set(bars) == {"agriculture_rural", "maritime", "meteorology", "natural_resources", "water_affairs"}
        assert bars["meteorology"].get("data-on-time") == "4" and bars["water_affairs"].get("data-on-time") == "0"
        assert 'href="/api/analytics.csv?from=2026-07-20&amp;to=2026-07-21&amp;include_drills=true"' in html
        assert 'href="/review/analytics"' in manager.get("/review").text
        bad = manager.get("/review/analytics?from=2026-13-01")
        assert bad.status_code == 422 and 'id="filter-error"' in bad.text
    with page_client("water1") as department:
        assert department.get("/review/analytics").status_code == 404
