"""Simulated departments' answers, for the demo (`flows.demo`) and for drills (`core.learning.drills`): plausible
form values, values that let the incident go on and open its conditional steps, and a task answered with them
as a department would (acknowledged, then completed)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from core.incidents.handoffs import acknowledge, complete
from core.incidents.models import DepartmentTask, Incident, TaskStatus
from core.plans.store import plan_for_version
from core.platform.clock import utcnow
from core.platform.errors import FormInvalid
from process_defs.schema import Condition, FieldCheck, FieldType, FormField, IncidentType, Step, parse_duration


def sample_value(field: FormField, rng: random.Random) -> Any:
    value = _sample(field, rng)
    criterion = field.criterion
    if criterion is not None and not criterion.holds(value):
        # A simulated department answers a decision's criteria as met (the response may end).
        target = criterion.value
        if criterion.op == "truthy":
            return True if field.type is FieldType.boolean else 1 if field.type is FieldType.number else "是 yes"
        if criterion.op == "ne":
            return (not target) if isinstance(target, bool) else target + 1 if isinstance(target, int | float) \
                else next((c.value for c in field.choices or [] if c.value != target), value)
        return target + 1 if criterion.op == "gt" else target - 1 if criterion.op == "lt" else target
    return value


def _number(field: FormField, rng: random.Random) -> int | float:
    """A number within the field's bounds: from its min (or 0) to 40 above it, at most its max; a count whole."""
    low = field.min if field.min is not None else 0.0
    if low < 0 and (field.max is None or field.max > 0):
        low = 0.0  # a plain answer: a fire on the 12th floor, not in the basement
    high = field.max if field.max is not None else low + 40
    high = min(high, low + 40)
    if field.integer or (float(low).is_integer() and float(high).is_integer() and high - low >= 4):
        return rng.randint(math.ceil(low), math.floor(high))
    return round(rng.uniform(low, high), 1) if round(high, 1) >= round(low, 1) + 0.1 else low


def _moment(field: FormField, rng: random.Random) -> str:
    """A time its field accepts: a past hour for a time that has been (`not_after: now`), else an hour ahead
    within the field's horizon."""
    now = utcnow().replace(microsecond=0)
    if field.not_after is not None:
        return (now - timedelta(minutes=rng.randint(1, 24 * 60))).isoformat()
    ahead = timedelta(hours=rng.randint(1, 24))
    if field.horizon is not None:
        ahead = min(ahead, parse_duration(field.horizon) / 2)
    return (now + ahead).replace(microsecond=0).isoformat()


def _sample(field: FormField, rng: random.Random) -> Any:
    kind = field.type
    if kind is FieldType.number:
        return _number(field, rng)
    if kind is FieldType.boolean:
        return rng.random() < 0.5
    if kind is FieldType.choice:
        values = [c.value for c in field.choices or []]
        value = rng.choice(values)
        # At a gate a simulated department takes the plan's main path: the decision that goes on.
        onward = [c.value for c in field.choices or [] if c.outcome == "next"]
        if onward and value not in onward:
            value = onward[0]
        return [value] if field.multiple else value
    if kind is FieldType.datetime:
        return _moment(field, rng)
    if kind is FieldType.location:
        return {"name": "演示地点 Demo site", "lat": round(31.2 + rng.random() / 10, 5),
                "lon": round(121.4 + rng.random() / 10, 5)}
    if kind is FieldType.attachment:
        return [f"att-{rng.randint(1000, 9999)}"] if field.multiple else f"att-{rng.randint(1000, 9999)}"
    return f"{field.label.zh}：已按预案处置（模拟） / {field.label.en}: handled per plan (simulated)"


def sample_outputs(step: Step, rng: random.Random | None = None) -> dict[str, Any]:
    """Plausible values for the step's form: every required field, and about half of the optional ones."""
    generator = rng or random.Random()
    values = {f.key: sample_value(f, generator) for f in step.form if f.required or generator.random() < 0.5}
    return satisfy_checks(step.checks, values)


def satisfy_checks(checks: Iterable[FieldCheck], values: dict[str, Any],
                   keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`values` with the step's checks between fields made true (rainfall_1h ≤ rainfall_24h): a value that breaks
    one takes the other's (equal satisfies le, ge and eq), or the two swap (lt, gt); the values in `keep` (a
    condition's) stay."""
    for check in checks:
        if check.field in values and check.other in values and not check.holds(values[check.field],
                                                                               values[check.other]):
            if check.op in ("le", "ge", "eq") and check.field in keep:
                values[check.other] = values[check.field]
            elif check.op in ("le", "ge", "eq"):
                values[check.field] = values[check.other]
            elif check.op in ("lt", "gt") and check.holds(values[check.other], values[check.field]):
                values[check.field], values[check.other] = values[check.other], values[check.field]
    return values


def _satisfying(condition: Condition, form_field: FormField | None) -> Any:
    """A value of the field that makes the condition true (so that the conditional step is exercised)."""
    value = condition.value
    choices = [c.value for c in (form_field.choices or [])] if form_field is not None else []
    kind = form_field.type if form_field is not None else None
    result: Any
    if condition.op == "eq":
        result = value
    elif condition.op == "ne":
        if kind is FieldType.boolean:
            result = not value
        elif kind is FieldType.number and isinstance(value, int | float):
            result = value + 1
        else:
            result = next((c for c in choices if c != value), None)
    elif condition.op in ("gt", "ge"):
        result = value + 1 if isinstance(value, int | float) else None
    elif condition.op in ("lt", "le"):
        result = value - 1 if isinstance(value, int | float) else None
    elif condition.op == "in":
        result = (value or [None])[0]
    else:  # truthy
        result = True if kind is FieldType.boolean else 1 if kind is FieldType.number else \
            (choices[0] if choices else "是 yes")
    if result is not None and form_field is not None and form_field.multiple and not isinstance(result, list):
        result = [result]
    return result


def simulated_outputs(plan: IncidentType, step: Step, rng: random.Random) -> dict[str, Any]:
    """Form values that let the incident go on: plausible samples (a gate's decision goes on), and values
    that make the plan's conditions on this step true (so conditional steps are rehearsed too)."""
    values = sample_outputs(step, rng)
    conditions: dict[str, list[Condition]] = {}
    for _, other in plan.steps():
        condition = other.when.condition if other.when else None
        if condition is not None and condition.step == step.key:
            conditions.setdefault(condition.field, []).append(condition)
    for key, on_field in conditions.items():
        options = [v for c in on_field for v in _candidates(c, step.field(key))]
        if not options:
            continue
        # The value that opens the most conditional steps; branches that exclude each other (the source is a
        # tanker / a plant) are chosen between by the seed.
        best = max(sum(c.holds({key: v}) for c in on_field) for v in options)
        values[key] = rng.choice([v for v in options if sum(c.holds({key: v}) for c in on_field) == best])
    return satisfy_checks(step.checks, values, keep=frozenset(conditions))


def _candidates(condition: Condition, form_field: FormField | None) -> list[Any]:
    if condition.op == "in" and isinstance(condition.value, list):
        multiple = form_field is not None and form_field.multiple
        return [[v] if multiple else v for v in condition.value]
    value = _satisfying(condition, form_field)
    return [] if value is None else [value]


@dataclass(frozen=True)
class Answered:
    task: DepartmentTask
    step: Step

    @property
    def late(self) -> bool:
        return self.task.due_at is not None and self.task.completed_at is not None \
            and self.task.completed_at > self.task.due_at


def answer_task(session: Session, *, task_id: str, rng: random.Random, by: str, note: str) -> Answered:
    """A simulated department (actor `<by>:<department>`) acknowledges its task if it has not, and completes it
    with `simulated_outputs`; should the form refuse those (a value a condition needs outside the field's
    limits), with plain samples. Raises `TaskStateConflict` when the task was closed meanwhile."""
    task = session.get(DepartmentTask, task_id)
    assert task is not None
    incident = session.get(Incident, task.incident_id)
    assert incident is not None
    plan = plan_for_version(session, incident.plan_version_id)
    step = plan.step(task.step_key)
    actor = f"{by}:{task.department}"
    if task.status == TaskStatus.assigned:
        acknowledge(session, task_id=task_id, actor=actor)
    try:
        with session.begin_nested():
            done = complete(session, task_id=task_id, actor=actor, outputs=simulated_outputs(plan, step, rng),
                            note=note)
    except FormInvalid:
        done = complete(session, task_id=task_id, actor=actor, outputs=sample_outputs(step, rng), note=note)
    return Answered(done, step)
