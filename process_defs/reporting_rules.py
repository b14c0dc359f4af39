"""The meaning checks of a plan's `reporting:` block (信息报送): every limit a duration, every recipient a known
body, every casualty source a number field of a step. `upward_reporting` is one of `process_defs.plan_rules`'
plan rules, so its problems come with file, line and field like the others'."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from process_defs.law_rules import position_ref_problem
from process_defs.problems import Problem
from process_defs.schema import (
    CASUALTY_KINDS,
    LEVELS,
    DepartmentRegistry,
    FieldType,
    IncidentType,
    ReportRule,
    leaders_of,
    parse_duration,
)

if TYPE_CHECKING:
    from process_defs.plan_rules import PlanContext

Add = Callable[[tuple[str | int, ...], str], None]


def _duration(text: str | None, path: tuple[str | int, ...], add: Add) -> timedelta | None:
    if text is None:
        return None
    try:
        value = parse_duration(text)
    except ValueError as exc:
        add(path, str(exc))
        return None
    except OverflowError:
        add(path, f"{text} is too long")
        return None
    if value.total_seconds() <= 0:
        add(path, f"{text} must be longer than zero")
        return None
    return value


def upward_reporting(ctx: PlanContext) -> list[Problem]:
    problems: list[Problem] = []
    check_reporting(ctx.plan, ctx.registry, lambda path, message: problems.append(ctx.problem(path, message)))
    return problems


def check_reporting(plan: IncidentType, registry: DepartmentRegistry | None, add: Add) -> None:  # noqa: C901
    reporting = plan.reporting
    if reporting is None:
        return
    base: tuple[str | int, ...] = ("reporting",)
    known = {d.key for d in registry.departments} if registry is not None else None
    if known is not None and reporting.department not in known:
        add((*base, "department"), f"unknown department '{reporting.department}'")

    def recipients(rule: ReportRule, where: tuple[str | int, ...]) -> None:
        if registry is not None:
            for i, ref in enumerate(rule.signed_by):
                why = position_ref_problem(ref, registry)
                if why is not None:
                    add((*where, "signed_by", i), why)
            defaults = leaders_of(reporting.department)
            if (rule.sign_off and not rule.signed_by and known is not None and reporting.department in known
                    and all(position_ref_problem(ref, registry) for ref in defaults)):
                add((*where, "signed_by"), f"nobody in '{reporting.department}' holds a leader's position that "
                                           "signs reports off: name the positions that sign")
        seen: set[str] = set()
        for i, recipient in enumerate(rule.recipients):
            path = (*where, "recipients", i)
            if recipient.department in seen:
                add(path, f"recipient '{recipient.department}' is listed twice")
            seen.add(recipient.department)
            if known is not None and recipient.department not in known:
                add(path, f"unknown department '{recipient.department}'")
            elif recipient.department == reporting.department:
                add(path, "a department does not report to itself")

    initial = reporting.initial
    written = _duration(initial.within, (*base, "initial", "within"), add)
    phone = _duration(initial.phone_within, (*base, "initial", "phone_within"), add)
    if written is not None and phone is not None and phone > written:
        add((*base, "initial", "phone_within"),
            f"the report by phone ({initial.phone_within}) comes before the written one ({initial.within})")
    recipients(initial, (*base, "initial"))

    follow_up = reporting.follow_up
    if follow_up is not None:
        where = (*base, "follow_up")
        within = _duration(follow_up.within, (*where, "within"), add)
        previous: tuple[str, timedelta, str] | None = None
        for level in LEVELS:
            if level not in follow_up.every:
                continue
            text = follow_up.every[level]
            every = _duration(text, (*where, "every", level), add)
            if every is None:
                continue
            if previous is not None and every > previous[1]:
                add((*where, "every", level), f"{text} at level {level} is longer than {previous[2]} at level "
                                              f"{previous[0]}; follow-ups come more often as the level rises")
            if within is not None and within > every:
                add((*where, "within"), f"a follow-up must be due ({follow_up.within}) before the next one "
                                        f"starts ({text} at level {level})")
            previous = (level, every, text)
        if len(set(follow_up.also_on)) != len(follow_up.also_on):
            add((*where, "also_on"), "a change is listed twice")
        recipients(follow_up, where)

    final = reporting.final
    if final is not None:
        where = (*base, "final")
        _duration(final.within, (*where, "within"), add)
        recipients(final, where)
        if final.after is not None and final.after not in {step.key for _, step in plan.steps()}:
            add((*where, "after"), f"unknown step '{final.after}'")

    for kind in CASUALTY_KINDS:
        for i, ref in enumerate(reporting.casualties.of(kind)):
            path = (*base, "casualties", kind, i)
            step_key, _, field_key = ref.partition(".")
            try:
                step = plan.step(step_key)
            except KeyError:
                add(path, f"unknown step '{step_key}'")
                continue
            form_field = step.field(field_key) if field_key else None
            if form_field is None:
                add(path, f"name a number field as step.field ('{ref}' has no field of step '{step_key}')")
            elif form_field.type is not FieldType.number:
                add(path, f"'{ref}' is a {form_field.type.value} field; casualty figures are numbers")
