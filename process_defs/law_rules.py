"""The rules a plan must keep because Chinese emergency law and practice have them: a gate's decision says
where the incident goes; levels are graded by measurable criteria that rise with the level; the positions
that may start, raise and lower each level are named; the response ends by a termination decision on
measurable criteria, never waiting for repair, reconstruction or relief; deadlines order across levels by
what a step is for. Each rule returns `(path, message)` pairs;
`process_defs.validation` turns them into problems with file and line.

These rules apply to the plans in use (the files, and versions a planner accepts). A version stored for an
incident was checked when it was stored; a rule added later does not unmake it (see `validation.parse_plan`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise

from process_defs.schema import (
    AFTER_TERMINATION,
    DEADLINE_RULES,
    GATE_OUTCOMES,
    LEVELS,
    POSITION_REF,
    STAGES,
    DepartmentKind,
    DepartmentRegistry,
    FieldType,
    IncidentType,
    parse_duration,
    split_position,
)

PathT = tuple[str | int, ...]
Finding = tuple[PathT, str]

REASON_FIELD = "reason"
"""The text field in which a gate's decider says why, when the decision skips a stage or closes."""


def check(plan: IncidentType, registry: DepartmentRegistry | None) -> list[Finding]:
    return [*gate_outcomes(plan), *grading(plan), *authority(plan, registry), *desks(plan, registry),
            *termination(plan, registry),
            *field_criteria(plan), *deadline_order(plan)]


def gate_outcomes(plan: IncidentType) -> Iterator[Finding]:  # noqa: C901  (one branch per way a gate can be wrong)
    """A gate's choice is its decision: every value leads somewhere (`next`, `close`, or a later stage), and a
    decision that skips a stage needs a reason field. Outcomes anywhere else mean nothing, so they are refused."""
    outcomes = ", ".join(GATE_OUTCOMES)
    for stage in STAGES:
        stage_def = plan.stages.get(stage)
        for i, step in enumerate(stage_def.steps):
            base: PathT = ("stages", stage, "steps", i)
            is_gate = step.key == stage_def.gate
            choice_fields = [(j, f) for j, f in enumerate(step.form) if f.type is FieldType.choice and f.choices]
            if not is_gate:
                for j, form_field in choice_fields:
                    for k, choice in enumerate(form_field.choices or []):
                        if choice.outcome is not None:
                            yield ((*base, "form", j, "choices", k, "outcome"),
                                   f"only a gate's decision has outcomes; '{step.key}' is not its stage's gate")
                continue
            if len(choice_fields) > 1:
                j = choice_fields[1][0]
                yield ((*base, "form", j), "a gate has one choice, its decision; make the others text or numbers")
            skips = False
            for j, form_field in choice_fields[:1]:
                fpath: PathT = (*base, "form", j)
                if form_field.multiple:
                    yield (*fpath, "multiple"), "a gate's decision takes one value"
                if not form_field.required:
                    yield (*fpath, "required"), "a gate's decision must be required"
                for k, choice in enumerate(form_field.choices or []):
                    cpath: PathT = (*fpath, "choices", k)
                    if choice.outcome is None:
                        yield (cpath, f"the gate's choice '{choice.value}' has no outcome: say where it leads "
                                      f"({outcomes})")
                    elif choice.outcome not in GATE_OUTCOMES:
                        yield (*cpath, "outcome"), f"unknown outcome '{choice.outcome}' ({outcomes})"
                    elif choice.outcome in STAGES and STAGES.index(choice.outcome) <= STAGES.index(stage):
                        yield ((*cpath, "outcome"),
                               f"outcome '{choice.outcome}' is not a stage after '{stage}'; a decision goes on")
                    elif choice.outcome != "next" and not (choice.outcome in STAGES and STAGES.index(
                            choice.outcome) == STAGES.index(stage) + 1):
                        skips = True
            reason = step.field(REASON_FIELD)
            if skips and (reason is None or reason.type is not FieldType.text):
                yield ((*base, "form"), f"a decision that skips a stage or closes must say why: add a text field "
                                        f"'{REASON_FIELD}' to gate '{step.key}'")


def grading(plan: IncidentType) -> Iterator[Finding]:
    """Each criterion measures a number a step reports or a signal carries; the same measure needs a strictly
    higher threshold at a more severe level, so that Ⅰ is strictly the most severe."""
    if not plan.grading:
        return
    steps = {step.key: step for _, step in plan.steps()}
    thresholds: dict[str, list[tuple[int, float, PathT, str]]] = {}
    for level in LEVELS:
        grade = plan.grading.get(level)  # type: ignore[call-overload]
        if grade is None:
            continue
        seen: set[str] = set()
        for i, criterion in enumerate(grade.any):
            cpath: PathT = ("grading", level, "any", i)
            if (criterion.step is None) == (criterion.signal is None):
                yield cpath, "a criterion measures either a step's form field (step) or a signal's value (signal)"
                continue
            if criterion.step is not None:
                step = steps.get(criterion.step)
                if step is None:
                    yield (*cpath, "step"), f"unknown step '{criterion.step}'"
                    continue
                form_field = step.field(criterion.field)
                if form_field is None:
                    yield (*cpath, "field"), f"step '{criterion.step}' has no form field '{criterion.field}'"
                    continue
                if form_field.type is not FieldType.number:
                    yield ((*cpath, "field"), f"a level is graded on numbers; '{criterion.field}' is a "
                                              f"{form_field.type.value} field")
                    continue
            if criterion.measure in seen:
                yield cpath, f"'{criterion.measure}' is graded twice at level {level}"
                continue
            seen.add(criterion.measure)
            thresholds.setdefault(criterion.measure, []).append(
                (LEVELS.index(level), criterion.value, cpath, f"{criterion.op} {criterion.value:g}"))
    for measure, points in thresholds.items():
        points.sort()
        for (rank_low, low, _, low_text), (rank_high, high, path, high_text) in pairwise(points):
            if high <= low:
                yield ((*path, "value"),
                       f"grading is not monotonic: '{measure}' {high_text} at level {LEVELS[rank_high]} is not above "
                       f"{low_text} at level {LEVELS[rank_low]}; thresholds must rise with the level (Ⅰ the most "
                       "severe)")


def signal_grading(kind: str, plan: IncidentType) -> Iterator[Finding]:
    """A signal rule takes its levels from the plan it opens (one source of truth): the plan must grade on
    the signal, or the rule must be a CAP rule (its level is the alert's severity)."""
    if not any(c.signal == kind for grade in (plan.grading or {}).values() for c in grade.any):
        yield (("kind",), f"plan '{plan.key}' grades nothing on signal '{kind}': add a criterion "
                          f"{{signal: {kind}, field: …}} to its grading, or make the rule cap: true")


def position_ref_problem(ref: str, registry: DepartmentRegistry) -> str | None:
    """Why `position@organisation` names no post that exists, or None."""
    if not re.fullmatch(POSITION_REF, ref):
        return f"'{ref}' is not a position reference such as commander@flood_control_hq"
    key, organisation = split_position(ref)
    position = registry.position(key)
    if position is None:
        return f"unknown position '{key}' (known: {', '.join(p.key for p in registry.positions) or 'none'})"
    if organisation is None:
        return None
    dept = registry.department(organisation)
    if dept is None:
        return f"unknown organisation '{organisation}'"
    if dept.kind not in position.held_in:
        return (f"a {dept.kind.value} ('{organisation}') has no {key}; it is held in "
                f"{', '.join(k.value for k in position.held_in)}")
    return None


def authority(plan: IncidentType, registry: DepartmentRegistry | None) -> Iterator[Finding]:
    """The plan names who may start, raise to and lower from every level, by positions that exist."""
    if plan.command is not None and registry is not None:
        dept = registry.department(plan.command)
        if dept is None or dept.kind is not DepartmentKind.headquarters:
            yield ("command",), f"'{plan.command}' is not a headquarters in the registry"
    if plan.authority is None:
        return
    for level in LEVELS:
        rule = plan.authority.get(level)  # type: ignore[call-overload]
        if rule is None:
            yield ("authority",), f"the plan names no positions for level {level}; name them for every level"
            continue
        for act, key in (("start", "start"), ("raise", "raise"), ("lower", "lower")):
            for j, ref in enumerate(rule.needed(act)):
                why = position_ref_problem(ref, registry) if registry is not None else None
                if why is not None:
                    yield ("authority", level, key, j), why


def desks(plan: IncidentType, registry: DepartmentRegistry | None) -> Iterator[Finding]:
    """A headquarters is a command body, not a desk: its work is done by its office, in a department."""
    if registry is None:
        return
    for stage in STAGES:
        for i, step in enumerate(plan.stages.get(stage).steps):
            dept = registry.department(step.department)
            if dept is not None and dept.kind is DepartmentKind.headquarters:
                yield (("stages", stage, "steps", i, "department"),
                       f"'{step.department}' is a headquarters, not a desk: give the step to its office "
                       f"('{dept.office}')")


def registry_rules(registry: DepartmentRegistry) -> Iterator[Finding]:
    """Positions are named once; a headquarters has its office in a department, and members that exist."""
    seen: set[str] = set()
    for i, position in enumerate(registry.positions):
        if position.key in seen:
            yield ("positions", i, "key"), f"duplicate position '{position.key}'"
        seen.add(position.key)
    for i, dept in enumerate(registry.departments):
        base: PathT = ("departments", i)
        if dept.kind is not DepartmentKind.headquarters:
            if dept.office is not None or dept.members:
                yield base, "only a headquarters has an office and members"
            continue
        office = registry.department(dept.office) if dept.office else None
        if dept.office is None:
            yield (*base, "office"), "a headquarters needs the department its office works in"
        elif office is None:
            yield (*base, "office"), f"unknown department '{dept.office}'"
        elif office.kind is DepartmentKind.headquarters:
            yield (*base, "office"), "a headquarters' office works in a department, not another headquarters"
        for j, member in enumerate(dept.members):
            if registry.department(member) is None:
                yield (*base, "members", j), f"unknown department '{member}'"


def _waits_for(plan: IncidentType, key: str) -> dict[str, str]:
    """Every step `key` waits for or reads, directly or through others (dependencies, inputs, conditions),
    with the step through which it is reached first."""
    steps = {step.key: step for _, step in plan.steps()}
    found: dict[str, str] = {}
    stack = [(key, key)]
    while stack:
        current, via = stack.pop()
        step = steps.get(current)
        if step is None:
            continue
        condition = step.when.condition.step if step.when and step.when.condition else None
        for other in [*step.depends_on, *(ref.partition(".")[0] for ref in step.inputs),
                      *([condition] if condition else [])]:
            if other not in found and other != key:
                found[other] = via if via != key else other
                stack.append((other, found[other]))
    return found


def termination(plan: IncidentType, registry: DepartmentRegistry | None) -> Iterator[Finding]:
    """The response ends by one decision, the response stage's gate, on measurable criteria (form fields with a
    criterion) and by a named authority; it never waits for repair, reconstruction or relief."""
    ends = [(stage, i, step) for stage in STAGES for i, step in enumerate(plan.stages.get(stage).steps)
            if step.terminates is not None]
    steps = {step.key: step for _, step in plan.steps()}
    for n, (stage, i, step) in enumerate(ends):
        base: PathT = ("stages", stage, "steps", i)
        assert step.terminates is not None
        if n:
            yield (*base, "terminates"), f"the response ends once: '{ends[0][2].key}' already ends it"
            continue
        if stage != "response" or plan.stages.response.gate != step.key:
            yield ((*base, "terminates"), "the decision to end the response is the response stage's gate: put it in "
                                          "the response stage and name it as the gate (recovery follows it)")
        if not any(f.criterion is not None for f in step.form):
            yield ((*base, "form"), "ending the response needs measurable criteria: give form fields a criterion "
                                    "(e.g. rain_stopped with {op: eq, value: true})")
        approved_by = step.terminates.approved_by
        if approved_by is None and plan.authority is None:
            yield ((*base, "terminates", "approved_by"), "name the positions that approve ending the response, or "
                                                         "give the plan its authority per level")
        for j, ref in enumerate(approved_by or []):
            why = position_ref_problem(ref, registry) if registry is not None else None
            if why is not None:
                yield (*base, "terminates", "approved_by", j), why
        for other, via in sorted(_waits_for(plan, step.key).items()):
            found = steps.get(other)
            if found is not None and found.purpose in AFTER_TERMINATION:
                through = f" (through '{via}')" if via != other else ""
                yield ((*base, "depends_on"),
                       f"ending the response waits for '{other}'{through}, a {found.purpose.value} step: repair, "
                       "reconstruction and relief follow the end of the response; they are not its conditions")


def field_criteria(plan: IncidentType) -> Iterator[Finding]:
    """A criterion belongs to a decision's form (a termination), on a required field it can hold for."""
    for stage in STAGES:
        for i, step in enumerate(plan.stages.get(stage).steps):
            for j, form_field in enumerate(step.form):
                criterion = form_field.criterion
                if criterion is None:
                    continue
                cpath: PathT = ("stages", stage, "steps", i, "form", j, "criterion")
                if step.terminates is None:
                    yield cpath, "only the decision that ends the response has criteria on its form"
                    continue
                if not form_field.required:
                    yield (*cpath[:-1], "required"), "a field with a criterion must be required"
                kind, value, op = form_field.type, criterion.value, criterion.op
                if op == "truthy":
                    continue
                if kind is FieldType.boolean:
                    ok = isinstance(value, bool) and op in ("eq", "ne")
                elif kind is FieldType.number:
                    ok = isinstance(value, int | float) and not isinstance(value, bool)
                elif kind is FieldType.choice:
                    ok = op in ("eq", "ne") and value in {c.value for c in form_field.choices or []}
                else:
                    ok = isinstance(value, str) and op in ("eq", "ne")
                if not ok:
                    yield cpath, f"'{op} {value!r}' cannot be a criterion of a {kind.value} field"


DEADLINE_WORDING = {"tighten": ("looser", "must tighten as the level rises"),
                    "loosen": ("tighter", "must not tighten as the level rises")}
DEADLINE_REASONS = {
    "warning": "a bigger event needs faster warning", "decision": "a bigger event needs a faster decision",
    "response": "a bigger event needs a faster response", "report": "a bigger event is reported sooner",
    "relief": "a bigger event needs faster relief", "investigation": "a bigger event takes longer to investigate",
    "review": "a bigger event takes longer to review", "reconstruction": "a bigger event takes longer to rebuild",
}


def deadline_order(plan: IncidentType) -> Iterator[Finding]:
    """The rule per step purpose (`DEADLINE_RULES`): response actions, decisions, warnings, reports and relief
    tighten as the level rises; investigations, reviews and reconstruction may loosen but never tighten; repair
    follows the damage either way."""
    for stage in STAGES:
        for i, step in enumerate(plan.stages.get(stage).steps):
            rule = DEADLINE_RULES[step.purpose]
            if rule == "any" or not step.deadline:
                continue
            worse, must = DEADLINE_WORDING[rule]
            purpose = step.purpose.value
            kind = f"{'an' if purpose[0] in 'aeiou' else 'a'} {purpose} step"
            previous = None
            for level in LEVELS:
                text = step.deadline.get(level)  # type: ignore[call-overload]
                if text is None:
                    continue
                try:
                    value = parse_duration(text)
                except (ValueError, OverflowError):
                    continue  # named by the plan's deadline rule
                if previous is not None and (value > previous[1] if rule == "tighten" else value < previous[1]):
                    yield (("stages", stage, "steps", i, "deadline", level),
                           f"deadline {text} at level {level} is {worse} than {previous[0]} at level {previous[2]}; "
                           f"deadlines {must} ({kind}: {DEADLINE_REASONS[purpose]})")
                previous = (text, value, level)
