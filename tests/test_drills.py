"""Drills: readiness scoring on constructed data, the simulated departments' profiles and answers, and every
shipped plan drilled end to end on a compressed clock by a real Baton worker against a real Prefect server."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from core.incidents.models import Incident
from core.learning import drills
from core.learning.models import DrillRun
from core.learning.simulation import answer_task, simulated_outputs
from core.ledger import chain as ledger
from core.outbox.models import OutboundDelivery
from core.plans.store import current_plan_text, list_types, parse_plan_text
from core.platform.db import session_scope
from core.platform.errors import TaskStateConflict
from core.sharing.models import CapAlert
from core.sharing.warnings import active_public
from flows.drill import DrillSpec, run_drills, tick
from process_defs.schema import Condition
from tests import engine_driver as drive
from tests.conftest import StartWorker
from tests.servers import PrefectServer

T0 = datetime(2026, 7, 20, 8, 0, tzinfo=UTC)
HOUR = 3600.0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def record(step: str, stage: str, department: str, assigned: float, done: float | None, deadline_min: float | None,
           *, kind: str = "human", depends_on: tuple[str, ...] = (), status: str | None = None,
           cancelled: float | None = None) -> drills.TaskRecord:
    """A task assigned `assigned` minutes after T0 and done at `done` (real time at speed 1), with a deadline."""
    return drills.TaskRecord(
        step_key=step, stage=stage, department=department, kind=kind,
        status=status or ("completed" if done is not None else "assigned"), assigned_at=at(assigned),
        due_at=at(assigned + deadline_min) if deadline_min is not None else None,
        completed_at=at(done) if done is not None else None,
        cancelled_at=at(cancelled) if cancelled is not None else None, depends_on=depends_on,
        deadline_seconds=deadline_min * 60 if deadline_min is not None else None)


# A small drill: forecast → assessment (late) and a notice (an action) → the gate; the response has two branches,
# the slower one ends the stage; an optional step was cancelled when its stage ended, one before and one after
# its deadline; a step not active at the level was skipped.
CONSTRUCTED = [
    record("forecast", "warning", "meteorology", 0, 20, 60),
    record("notice", "warning", "emergency_office", 20.5, 20.6, None, kind="action", depends_on=("forecast",)),
    record("assessment", "warning", "water_affairs", 21, 111, 60, depends_on=("forecast",)),
    record("lift", "warning", "emergency_office", 112, 130, 120, depends_on=("assessment",)),
    record("side_check", "warning", "transport", 21, None, 200, status="cancelled", cancelled=131),
    record("late_check", "warning", "transport", 21, None, 30, status="cancelled", cancelled=131),
    record("command", "response", "emergency_office", 131, 141, 30),
    record("drainage", "response", "water_affairs", 142, 262, 240, depends_on=("command",)),
    record("traffic", "response", "public_security", 142, 172, 60, depends_on=("command",)),
    record("metro", "response", "transport", 173, 203, 60, depends_on=("traffic",)),
    record("underground", "response", "housing", 0, None, 60, status="skipped"),
]


def test_readiness_is_scored_from_constructed_records() -> None:
    report = drills.score(CONSTRUCTED, speed=1.0, opened_at=T0, closed_at=at(263), now=at(300))
    # Human steps that came due or were answered: 7 answered (assessment late) + late_check cancelled overdue.
    assert report["steps"] == {"counted": 8, "on_time": 6, "late": 2, "on_time_pct": 75.0}
    path = report["critical_path"]
    assert [s["step"] for s in path["steps"]] == ["forecast", "assessment", "lift", "command", "drainage"]
    assert path["length_seconds"] == (20 + 90 + 18 + 10 + 120) * 60
    assert path["deadline_seconds"] == (60 + 60 + 120 + 30 + 240) * 60
    assert path["ratio"] == round(258 / 510, 3)
    assert path["handoff_seconds"] == (1 + 1 + 1 + 1) * 60
    assert report["elapsed_seconds"] == 263 * 60
    # Slowest by median share of the deadline: water_affairs (90/60 and 120/240 → median 1.0), then transport
    # (30/60), public_security (30/60), meteorology (20/60) ...
    assert report["bottlenecks"] == ["water_affairs", "public_security", "transport"]
    water = next(d for d in report["departments"] if d["department"] == "water_affairs")
    assert water == {"department": "water_affairs", "tasks": 2, "on_time": 1, "late": 1,
                     "median_share_of_deadline": 1.0, "median_delay_seconds": 105 * 60}
    transport = next(d for d in report["departments"] if d["department"] == "transport")
    assert (transport["tasks"], transport["late"]) == (2, 1)  # metro on time, late_check cancelled overdue
    # 70 × 0.75 + 30 × min(1, 510/258) = 82.5
    assert report["readiness"] == 82.5


def test_scores_are_in_plan_time_and_a_slow_path_costs_readiness() -> None:
    def squeeze(moment: datetime | None) -> datetime | None:
        return T0 + (moment - T0) / 3600 if moment is not None else None

    compressed = [dataclasses.replace(r, assigned_at=squeeze(r.assigned_at), due_at=squeeze(r.due_at),
                                      completed_at=squeeze(r.completed_at), cancelled_at=squeeze(r.cancelled_at))
                  for r in CONSTRUCTED]
    fast = drills.score(compressed, speed=3600.0, opened_at=T0, closed_at=T0 + timedelta(minutes=263) / 3600,
                        now=T0 + timedelta(minutes=300) / 3600)
    slow = drills.score(CONSTRUCTED, speed=1.0, opened_at=T0, closed_at=at(263), now=at(300))
    assert fast["critical_path"]["length_seconds"] == pytest.approx(slow["critical_path"]["length_seconds"], abs=1)
    assert fast["steps"] == slow["steps"] and fast["bottlenecks"] == slow["bottlenecks"]
    # Every step on the path twice as slow as its deadline: the path factor halves.
    doubled = [record("a", "warning", "x", 0, 120, 60), record("b", "response", "y", 121, 241, 60)]
    report = drills.score(doubled, speed=1.0)
    assert report["critical_path"]["ratio"] == 2.0 and report["steps"]["on_time_pct"] == 0.0
    assert report["readiness"] == 15.0  # 70 × 0 + 30 × 0.5
    assert drills.score([], speed=1.0)["readiness"] is None


def test_a_drill_is_compared_with_the_earlier_drills_of_its_plan() -> None:
    first: dict[str, Any] = {"drill_run_id": "r1", "readiness": 70.0, "steps": {"on_time_pct": 60.0},
                             "critical_path": {"ratio": 1.2}, "started_at": "2026-07-01",
                             "incident": {"code": "FLD-2026-0001", "level": "I", "plan_version": 1}}
    second = {**first, "drill_run_id": "r2", "readiness": 80.0, "steps": {"on_time_pct": 75.0},
              "critical_path": {"ratio": 0.9}, "incident": {**first["incident"], "code": "FLD-2026-0002"}}
    now = {"readiness": 77.5, "steps": {"on_time_pct": 70.0}, "critical_path": {"ratio": 1.0}}
    comparison = drills.compare(now, [second, first])  # newest first
    assert comparison["previous"]["drill_run_id"] == "r2" and comparison["previous"]["incident"] == "FLD-2026-0002"
    assert comparison["score_delta"] == -2.5 and comparison["on_time_delta"] == -5.0
    assert comparison["path_ratio_delta"] == 0.1
    assert comparison["trend"] == [70.0, 80.0, 77.5] and comparison["runs_before"] == 2
    assert drills.compare(now, [])["previous"] is None and drills.compare(now, [])["score_delta"] is None


def test_profiles_answer_around_their_share_of_the_deadline() -> None:
    rng = random.Random(3)
    deadline = timedelta(hours=2)

    def shares(profile: str, history: tuple[float, ...] = ()) -> list[float]:
        return [drills.plan_delay(profile, deadline, rng, history) / deadline for _ in range(4000)]

    normal = shares("normal")
    assert statistics.median(normal) == pytest.approx(0.4, abs=0.02)
    assert statistics.quantiles(normal, n=100)[-1] < 1.0  # normal: 99 in 100 answers well within the deadline
    stress = shares("stress")
    assert statistics.median(stress) == pytest.approx(1.25, abs=0.1)
    assert max(stress) == pytest.approx(drills.STRESS_CAP, abs=0.01)  # the heavy tail, capped
    assert sum(s > 1 for s in stress) > 0.6 * len(stress)
    assert statistics.quantiles(stress, n=20)[-1] > 2.5 * statistics.median(stress)
    # history: the department's past shares resampled; with too few it is the normal profile.
    history = shares("history", (0.9, 1.1, 1.0, 0.95))
    assert statistics.median(history) == pytest.approx(1.0, abs=0.06)
    assert statistics.quantiles(history, n=100)[0] > 0.7
    assert statistics.median(shares("history", (3.0, 3.0))) == pytest.approx(0.4, abs=0.02)
    with pytest.raises(ValueError, match="unknown drill profile"):
        drills.plan_delay("panic", deadline, rng)


def test_history_comes_from_the_departments_answers_on_real_incidents(baton: str) -> None:
    real = drive.open_("flood", level="IV")
    drive.step(real)
    drill = drive.open_("flood", level="IV", drill=True, clock_speed=3600)
    drive.step(drill)
    for incident_id in (real, drill):
        drive.complete_step(incident_id, "rainstorm_forecast")
    with session_scope() as session:
        shares = drills.department_history(session, "meteorology")
        assert drills.department_history(session, "water_affairs") == []
    # One answer (the drill's does not count), given at once: a tiny share of its hour.
    assert len(shares) == 1 and 0 <= shares[0] < 0.01
    # With three such answers the history profile has the simulated meteorology answer at once too (on a real
    # clock: the normal profile would take some 24 minutes of the hour).
    for _ in range(2):
        real = drive.open_("flood", level="IV")
        drive.step(real)
        drive.complete_step(real, "rainstorm_forecast")
    answers = {}
    for profile in ("history", "normal"):
        incident_id = drive.open_("flood", level="IV", drill=True)
        drive.step(incident_id)
        sim = drills.SimulatedIncident(incident_id, "-", "flood", "IV", 1.0, profile, random.Random(1))
        tick(drills.Simulator([sim]))
        (when,) = sim.answer_at.values()
        assert not sim.history_fallbacks  # meteorology has three past answers
        assigned = drive.tasks(incident_id)["rainstorm_forecast"].assigned_at
        assert assigned is not None
        answers[profile] = when - assigned
    assert answers["history"] < timedelta(minutes=1) < timedelta(minutes=10) < answers["normal"]


def test_drill_answers_open_every_conditional_step() -> None:
    """The simulated departments answer so that the incident goes on ('respond') and the plan's conditions hold:
    every conditional step of every shipped plan is opened by some seed (exclusive branches by different ones)."""
    for type_key in list_types():
        plan = parse_plan_text(current_plan_text(type_key), f"{type_key}.yaml")
        conditional = [(s.key, s.when.condition) for _, s in plan.steps() if s.when and s.when.condition]
        opened: set[str] = set()
        for seed in range(12):
            rng = random.Random(seed)
            answers = {step.key: simulated_outputs(plan, step, rng) for _, step in plan.steps()
                       if step.kind == "human"}
            for _, step in plan.steps():
                if step.kind == "human" and step.field("decision") is not None:
                    assert answers[step.key]["decision"] == "respond", (type_key, step.key)
            opened |= {key for key, condition in conditional if holds(condition, answers.get(condition.step, {}))}
        assert opened == {key for key, _ in conditional}, type_key


def test_a_simulated_department_acknowledges_then_completes_its_task(baton: str) -> None:
    incident_id = drive.open_("flood", level="IV")
    drive.step(incident_id)
    task = drive.open_tasks(incident_id)["rainstorm_forecast"]
    with session_scope() as session:
        done = answer_task(session, task_id=task.id, rng=random.Random(3), by="demo", note="模拟 simulated")
    assert (done.task.status, done.task.note, done.step.key, done.late) == (
        "completed", "模拟 simulated", "rainstorm_forecast", False)
    with session_scope() as session:
        entries = [(e.kind, e.actor) for e in ledger.read_chain(session, incident_id)
                   if e.step_key == "rainstorm_forecast"]
    assert entries[-2:] == [("task.acknowledged", "demo:meteorology"), ("task.completed", "demo:meteorology")]
    with pytest.raises(TaskStateConflict), session_scope() as session:
        answer_task(session, task_id=task.id, rng=random.Random(3), by="demo", note="again")


def holds(condition: Condition, outputs: dict[str, Any]) -> bool:
    return condition.holds(outputs)


# -- end to end on a real worker ------------------------------------------------------------------------------


@pytest.fixture
def worker(workers: StartWorker) -> Callable[[], object]:
    return lambda: workers("drill-worker")


def public_feed() -> str:
    from api.app import app

    with TestClient(app) as client:
        response = client.get("/public/warnings.atom")
        assert response.status_code == 200
        return response.text


def _release_warning(incident_id: str) -> None:
    """The office reviews the incident's drafted warning and the meteorology bureau's director signs it off."""
    from core.sharing import warnings as release

    leader = drive.person("met_director", "bureau_director@meteorology", role="department", department="meteorology")
    with session_scope() as session:
        [draft] = session.exec(select(CapAlert).where(CapAlert.incident_id == incident_id)).all()
        release.review(session, incident_id=incident_id, alert_id=draft.id, actor="user:office")
        release.sign(session, incident_id=incident_id, alert_id=draft.id, signer=leader)


@pytest.mark.prefect
def test_every_shipped_plan_drills_to_a_readiness_report_on_a_real_worker(worker: Callable[[], object]) -> None:
    # A real (not drill) flood whose warning is published: the public feed is not empty, so its check means something.
    real = drive.open_("flood", level="IV")
    drive.step(real, real_actions=True)
    drive.complete_step(real, "rainstorm_forecast")
    drive.step(real, real_actions=True)
    _release_warning(real)
    worker()
    started = time.monotonic()
    specs = [DrillSpec(type=t, level="I", speed=36000, seed=i, delay_scale=0.2) for i, t in enumerate(list_types())]
    reports = run_drills(specs, timeout=240, start_system=False)
    took = time.monotonic() - started
    assert took < 240
    assert [r["incident"]["type"] for r in reports] == list_types()
    for report in reports:
        code = report["incident"]["code"]
        assert report["incident"]["status"] == "closed" and not report["timed_out"], code
        assert report["incident"]["drill"] is True and report["incident"]["clock_speed"] == 36000
        assert report["incident"]["level"] == "I" and report["plan"]["skipped_steps"] == [], code
        assert report["readiness"] is not None and 0 <= report["readiness"] <= 100
        # Every human step counts, but one its stage ended before it came due (a gate closed the stage first).
        assert 0 < report["steps"]["counted"] <= report["plan"]["human_steps"]
        assert report["critical_path"]["steps"][0]["stage"] == "warning"
        assert report["critical_path"]["steps"][-1]["stage"] == "learning"
        assert report["critical_path"]["deadline_seconds"] > 0 and report["bottlenecks"]
        assert report["comparison"]["previous"] is None  # the first drill of each plan
        # A drill's messages are all marked drill; its CAP alerts are Exercise and never published.
        assert report["safety"]["ok"] and report["safety"]["cap_alerts"] >= 1, report["safety"]
    with session_scope() as session:
        drill_ids = {r["incident"]["id"] for r in reports}
        for incident_id in drill_ids:
            assert ledger.verify_incident(session, incident_id).valid
        runs = session.exec(select(DrillRun)).all()
        assert {r.incident_id for r in runs} == drill_ids and all(r.finished_at and r.score for r in runs)
        deliveries = session.exec(select(OutboundDelivery)
                                  .where(col(OutboundDelivery.incident_id).in_(drill_ids))).all()
        assert deliveries and all(d.drill and d.payload["drill"] for d in deliveries)
        alerts = session.exec(select(CapAlert).where(col(CapAlert.incident_id).in_(drill_ids))).all()
        assert alerts and all(a.status == "Exercise" and not a.published for a in alerts)
        feed = active_public(session)
        assert {a.incident_id for a in feed} == {real}
        codes = {session.get(Incident, i).code for i in drill_ids}  # type: ignore[union-attr]
    atom = public_feed()
    assert drive.incident(real).code in atom and not any(code in atom for code in codes)

    # A second drill of the flood plan is compared with the first.
    (again,) = run_drills([DrillSpec(type="flood", level="I", speed=36000, seed=99, delay_scale=0.2)], timeout=120,
                          start_system=False)
    first = next(r for r in reports if r["incident"]["type"] == "flood")
    comparison = again["comparison"]
    assert again["incident"]["status"] == "closed"
    assert comparison["previous"]["drill_run_id"] == first["drill_run_id"] and comparison["runs_before"] == 1
    assert comparison["score_delta"] == pytest.approx(again["readiness"] - first["readiness"], abs=0.051)
    assert comparison["trend"] == [first["readiness"], again["readiness"]]
    print(f"\n8 plans drilled side by side in {took:.1f} s; flood again in {again['elapsed_seconds']:.0f} plan-s")


@pytest.mark.prefect
def test_baton_drill_run_starts_a_worker_and_writes_the_report(prefect_server: PrefectServer, baton: str,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "drill.json"
    env = dict(os.environ, BATON_PREFECT_API_URL=prefect_server.api_url, COLUMNS="160")
    result = subprocess.run([sys.executable, "-m", "flows.cli", "drill", "run", "typhoon", "--level", "II",
                             "--speed", "36000", "--delay-scale", "0.2", "--seed", "5", "--claim-wait", "1",
                             "--out", str(out), "--quiet"], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["incident"]["type"] == "typhoon" and report["incident"]["status"] == "closed"
    assert report["seed"] == 5 and report["profile"] == "normal" and report["speed"] == 36000
    assert "readiness" in result.stdout and "Critical path" in result.stdout and "drill safety" in result.stdout
    assert "with a worker started for it" in result.stdout
    # Nothing is left running: the worker it started has stopped and released the incident.
    with session_scope() as session:
        row = session.get(Incident, report["incident"]["id"])
        assert row is not None and row.lease_owner is None
    result = subprocess.run([sys.executable, "-m", "flows.cli", "drill", "list", "typhoon"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and report["incident"]["code"] in result.stdout
