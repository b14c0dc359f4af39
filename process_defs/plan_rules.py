"""What a plan must mean, beyond its shape: one function per family of rules, each returning its problems (file,
line and field), and `check_plan`, the driver that runs them in order.

Rules about one step see each step key where it first occurs: a repeated key is reported once (by
`unique_step_keys`) and its later copies are not checked further. The dependency graph holds only the edges
`dependencies` accepts; the cycles in it, and which steps come before which, are computed once per plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from process_defs import law_rules
from process_defs.actions import ACTIONS, WARNING_COLOURS, PublishWarningParams
from process_defs.problems import LoadedYaml, PathT, Problem, error_message
from process_defs.reporting_rules import upward_reporting
from process_defs.schema import (
    EVERYONE,
    LEVELS,
    PUBLIC,
    REGISTER_AREAS,
    REGISTER_FILLS,
    REGISTER_KINDS,
    RESTRICTED_REGISTERS,
    STAGES,
    Classification,
    DepartmentRegistry,
    FieldType,
    FormField,
    IncidentType,
    Share,
    Step,
    leaders_of,
    level_rank,
    parse_duration,
    reaches,
    split_position,
)

STAGE_INDEX = {stage: i for i, stage in enumerate(STAGES)}


@dataclass(frozen=True)
class StepAt:
    """A step where its key first occurs in the plan."""

    stage: str
    index: int
    step: Step

    @property
    def path(self) -> PathT:
        return ("stages", self.stage, "steps", self.index)


class PlanContext:
    """One plan under check, with what several rules read: where each step is, the departments and roles the
    registry knows, and the dependency graph."""

    def __init__(self, plan: IncidentType, registry: DepartmentRegistry | None, file: str,
                 loaded: LoadedYaml) -> None:
        self.plan = plan
        self.file = file
        self.loaded = loaded
        self.registry = registry
        self.dept_keys = {d.key for d in registry.departments} if registry else None
        self.role_keys = {r.key for r in registry.roles} if registry else None
        # step key -> (stage, index) and the step, where each key first occurs
        self.positions: dict[str, tuple[str, int]] = {}
        for stage in STAGES:
            for i, step in enumerate(plan.stages.get(stage).steps):
                self.positions.setdefault(step.key, (stage, i))
        self.steps_by_key = {key: plan.stages.get(stage).steps[i] for key, (stage, i) in self.positions.items()}

    def problem(self, path: PathT, message: str) -> Problem:
        return self.loaded.problem(self.file, path, message)

    def steps(self) -> Iterator[StepAt]:
        for key, (stage, i) in self.positions.items():
            yield StepAt(stage, i, self.steps_by_key[key])

    def dependency_refused(self, at: StepAt, dep: str) -> str | None:
        """Why `at` may not depend on `dep`, or None: the edge is in the graph."""
        if dep == at.step.key:
            return "a step cannot depend on itself"
        if dep not in self.steps_by_key:
            return f"unknown step '{dep}'"
        if STAGE_INDEX[self.positions[dep][0]] > STAGE_INDEX[at.stage]:
            return f"step '{dep}' is in the later stage '{self.positions[dep][0]}'"
        return None

    @cached_property
    def graph(self) -> dict[str, list[str]]:
        """step key -> the steps it depends on (accepted edges only)."""
        graph: dict[str, list[str]] = {key: [] for key in self.steps_by_key}
        for at in self.steps():
            graph[at.step.key] += [dep for dep in at.step.depends_on if self.dependency_refused(at, dep) is None]
        return graph

    @cached_property
    def cycles(self) -> list[list[str]]:
        """Each dependency cycle once (depth-first), as the steps from where it closes."""
        state: dict[str, int] = {}
        found: list[list[str]] = []
        seen: set[frozenset[str]] = set()

        def visit(key: str, trail: list[str]) -> None:
            state[key] = 1
            trail.append(key)
            for dep in self.graph[key]:
                if state.get(dep) == 1:
                    cycle = trail[trail.index(dep):]
                    if frozenset(cycle) not in seen:
                        seen.add(frozenset(cycle))
                        found.append(cycle)
                elif state.get(dep) is None:
                    visit(dep, trail)
            trail.pop()
            state[key] = 2

        for key in self.graph:
            if key not in state:
                visit(key, [])
        return found

    def ancestors(self, key: str) -> set[str]:
        seen: set[str] = set()
        stack = list(self.graph.get(key, []))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.graph.get(current, []))
        return seen

    def exists_before(self, source: str, at: StepAt) -> bool:
        """Whether `source`'s outputs exist by the time `at` starts: it is an earlier stage's step or one of
        `at`'s dependencies (unknowable while the graph has a cycle, so then assumed)."""
        if self.cycles:
            return True
        return source in self.ancestors(at.step.key) or STAGE_INDEX[self.positions[source][0]] < STAGE_INDEX[at.stage]


# -- rules on the whole plan ------------------------------------------------------------------------------------
def stage_order(ctx: PlanContext) -> list[Problem]:
    order = [k for k in ctx.loaded.key_order.get(("stages",), []) if k in STAGES]
    if order != [s for s in STAGES if s in order]:
        return [ctx.problem(("stages",), f"stages must come in the order {', '.join(STAGES)} "
                                         f"(found {', '.join(order)})")]
    return []


def key_matches_file_name(ctx: PlanContext) -> list[Problem]:
    stem = Path(ctx.file).stem
    if stem != ctx.plan.key and stem not in ("-", "<string>"):
        return [ctx.problem(("key",), f"key '{ctx.plan.key}' must equal the file name '{stem}'")]
    return []


def unique_step_keys(ctx: PlanContext) -> list[Problem]:
    problems = []
    for stage in STAGES:
        for i, step in enumerate(ctx.plan.stages.get(stage).steps):
            first_stage, first_i = ctx.positions[step.key]
            if (first_stage, first_i) != (stage, i):
                problems.append(ctx.problem(("stages", stage, "steps", i, "key"),
                                            f"duplicate step key '{step.key}' "
                                            f"(first at stages.{first_stage}.steps[{first_i}])"))
    return problems


# -- rules on one step ------------------------------------------------------------------------------------------
def step_department(ctx: PlanContext, at: StepAt) -> list[Problem]:
    if ctx.dept_keys is not None and at.step.department not in ctx.dept_keys:
        return [ctx.problem((*at.path, "department"), f"unknown department '{at.step.department}'")]
    return step_position(ctx, at)


def step_position(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """A step addressed to a position: a person's step, to a post that exists in the step's own department."""
    step = at.step
    if step.position is None:
        return []
    path = (*at.path, "position")
    position, organisation = split_position(step.position)
    if step.kind != "human":
        return [ctx.problem(path, "only a person's step (kind: human) is addressed to a position")]
    if organisation is None:
        return [ctx.problem(path, f"name the organisation: '{position}@{step.department}'")]
    if organisation != step.department:
        return [ctx.problem(path, f"the position is in '{organisation}', the step is '{step.department}''s")]
    why = law_rules.position_ref_problem(step.position, ctx.registry) if ctx.registry is not None else None
    return [ctx.problem(path, why)] if why else []


def step_kind(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """An action step names a known action with valid params and has no form; a human step has a deadline."""
    step, base = at.step, at.path
    problems = []
    if step.kind == "action":
        if step.action is None:
            problems.append(ctx.problem((*base, "action"), "an action step must name its action"))
        elif step.action not in ACTIONS:
            problems.append(ctx.problem((*base, "action"),
                                        f"unknown action '{step.action}' (known: {', '.join(sorted(ACTIONS))})"))
        else:
            try:
                params = ACTIONS[step.action].model_validate(step.params)
            except ValidationError as exc:
                for err in exc.errors():
                    loc, msg = error_message(err)
                    problems.append(ctx.problem((*base, "params", *loc), msg))
            else:
                target = getattr(params, "target", None)
                if target is not None and ctx.dept_keys is not None and target not in ctx.dept_keys:
                    problems.append(ctx.problem((*base, "params", "target"), f"unknown department '{target}'"))
        if step.form:
            problems.append(ctx.problem((*base, "form"), "an action step has no form; only human steps do"))
    else:
        if step.action is not None:
            problems.append(ctx.problem((*base, "action"), "a human step has no action; use kind: action"))
        if step.params:
            problems.append(ctx.problem((*base, "params"), "a human step has no params"))
        if not step.deadline:
            problems.append(ctx.problem((*base, "deadline"), "a human step needs a deadline"))
    return problems


def form_fields(ctx: PlanContext, at: StepAt) -> list[Problem]:
    problems = []
    seen_fields: set[str] = set()
    for j, form_field in enumerate(at.step.form):
        fpath = (*at.path, "form", j)
        if form_field.key in seen_fields:
            problems.append(ctx.problem((*fpath, "key"), f"duplicate form field '{form_field.key}'"))
        seen_fields.add(form_field.key)
        if form_field.type is FieldType.choice:
            if not form_field.choices:
                problems.append(ctx.problem((*fpath, "choices"), "a choice field needs choices"))
            else:
                values = [c.value for c in form_field.choices]
                dupes = sorted({v for v in values if values.count(v) > 1})
                if dupes:
                    problems.append(ctx.problem((*fpath, "choices"), f"duplicate choice '{dupes[0]}'"))
        elif form_field.choices is not None:
            problems.append(ctx.problem((*fpath, "choices"),
                                        f"only a choice field has choices, not a {form_field.type.value} field"))
        if form_field.unit is not None and form_field.type is not FieldType.number:
            problems.append(ctx.problem((*fpath, "unit"),
                                        f"only a number field has a unit, not a {form_field.type.value} field"))
        if form_field.multiple and form_field.type not in (FieldType.choice, FieldType.attachment):
            problems.append(ctx.problem((*fpath, "multiple"),
                                        "only choice and attachment fields can take several values"))
        problems += _field_bounds(ctx, fpath, form_field)
        criterion = form_field.criterion
        why = _beyond_bounds(form_field, criterion.op, criterion.value) if criterion is not None else None
        if why is not None and criterion is not None and criterion.op != "ne":
            problems.append(ctx.problem((*fpath, "criterion"), f"the decision can never stand: the criterion {why}"))
    return problems


def _field_bounds(ctx: PlanContext, fpath: PathT, form_field: FormField) -> list[Problem]:
    """Bounds a field can have: `min`, `max` and `integer` on a number; `not_before`, `not_after` and `horizon`
    on a datetime; and bounds that leave some answer possible."""
    problems = []
    kind = form_field.type.value
    number_bounds = {"min": form_field.min is not None, "max": form_field.max is not None,
                     "integer": form_field.integer}
    for key, given in number_bounds.items():
        if given and form_field.type is not FieldType.number:
            problems.append(ctx.problem((*fpath, key), f"only a number field has '{key}', not a {kind} field"))
    low, high = form_field.min, form_field.max
    if low is not None and high is not None and low > high:
        problems.append(ctx.problem((*fpath, "min"), f"min {low:g} is greater than max {high:g}: no answer fits"))
    elif form_field.integer and low is not None and high is not None and math.floor(high) < math.ceil(low):
        problems.append(ctx.problem((*fpath, "integer"), f"no whole number lies from {low:g} to {high:g}"))
    time_bounds = {"not_before": form_field.not_before is not None, "not_after": form_field.not_after is not None,
                   "horizon": form_field.horizon is not None}
    for key, set_ in time_bounds.items():
        if set_ and form_field.type is not FieldType.datetime:
            problems.append(ctx.problem((*fpath, key), f"only a datetime field has '{key}', not a {kind} field"))
    if form_field.horizon is not None:
        try:
            horizon = parse_duration(form_field.horizon)
        except ValueError as exc:
            problems.append(ctx.problem((*fpath, "horizon"), str(exc)))
        else:
            if horizon <= timedelta(0):
                problems.append(ctx.problem((*fpath, "horizon"), "the horizon must be longer than zero"))
            elif form_field.not_after is not None:
                problems.append(ctx.problem((*fpath, "horizon"),
                                            "a field that is not after now has no horizon ahead of it"))
    return problems


CHECK_TYPES = (FieldType.number, FieldType.datetime)


def form_checks(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """A check between two fields names two fields of the form, of one type that compares (two numbers in one
    unit, or two datetimes), and not the same field twice."""
    problems = []
    for j, check in enumerate(at.step.checks):
        cpath = (*at.path, "checks", j)
        found = {}
        for part in ("field", "other"):
            key = getattr(check, part)
            form_field = at.step.field(key)
            if form_field is None:
                problems.append(ctx.problem((*cpath, part), f"the form has no field '{key}'"))
            elif form_field.type not in CHECK_TYPES:
                problems.append(ctx.problem((*cpath, part), f"'{key}' is a {form_field.type.value} field; checks "
                                                            "compare number or datetime fields"))
            else:
                found[part] = form_field
        if check.field == check.other:
            problems.append(ctx.problem((*cpath, "other"), "a field compared with itself"))
        elif len(found) == 2 and found["field"].type is not found["other"].type:
            problems.append(ctx.problem(cpath, f"'{check.field}' is a {found['field'].type.value} field and "
                                               f"'{check.other}' a {found['other'].type.value} field: they do "
                                               "not compare"))
        elif len(found) == 2 and found["field"].unit != found["other"].unit:
            problems.append(ctx.problem(cpath, f"'{check.field}' is in {found['field'].unit or 'no unit'} and "
                                               f"'{check.other}' in {found['other'].unit or 'no unit'}: they do "
                                               "not compare"))
    return problems


def dependencies(ctx: PlanContext, at: StepAt) -> list[Problem]:
    problems = []
    for j, dep in enumerate(at.step.depends_on):
        why = ctx.dependency_refused(at, dep)
        if why is not None:
            problems.append(ctx.problem((*at.path, "depends_on", j), why))
    if len(set(at.step.depends_on)) != len(at.step.depends_on):
        problems.append(ctx.problem((*at.path, "depends_on"), "a dependency is listed twice"))
    return problems


def deadlines(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """Each deadline a positive duration (how they order across levels, by the step's purpose, is
    `law_rules.deadline_order`)."""
    problems: list[Problem] = []
    if not at.step.deadline:
        return problems
    for level in LEVELS:
        if level not in at.step.deadline:
            continue
        text = at.step.deadline[level]
        lpath = (*at.path, "deadline", level) if (*at.path, "deadline", level) in ctx.loaded.lines else (
            *at.path, "deadline")
        try:
            value = parse_duration(text)
        except ValueError as exc:
            problems.append(ctx.problem(lpath, str(exc)))
            continue
        except OverflowError:
            problems.append(ctx.problem(lpath, f"deadline {text} is too long"))
            continue
        if value.total_seconds() <= 0:
            problems.append(ctx.problem(lpath, f"deadline {text} must be longer than zero"))
    return problems


def escalation(ctx: PlanContext, at: StepAt) -> list[Problem]:
    step = at.step
    target = step.escalate_to
    if target is None:
        return []
    epath = (*at.path, "escalate_to")
    if target == "supervisor":
        if ctx.registry is not None:
            dept = ctx.registry.department(step.department)
            if dept is not None and dept.supervisor is None:
                return [ctx.problem(epath, f"department '{step.department}' has no supervisor to escalate to")]
    elif target.startswith("role:"):
        if ctx.role_keys is not None and target[5:] not in ctx.role_keys:
            return [ctx.problem(epath, f"unknown role '{target[5:]}'")]
    elif ctx.dept_keys is not None and target not in ctx.dept_keys:
        return [ctx.problem(epath, f"unknown escalation target '{target}' (a department, 'supervisor' or 'role:KEY')")]
    elif target == step.department:
        return [ctx.problem(epath, "a step cannot escalate to its own department")]
    return []


def sharing(ctx: PlanContext, at: StepAt) -> list[Problem]:
    if at.step.share is None or ctx.dept_keys is None:
        return []
    return [ctx.problem((*at.path, "share", "with", j), f"unknown department '{target}'")
            for j, target in enumerate(at.step.share.with_) if target != "all" and target not in ctx.dept_keys]


def registers(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """A step's register entries: registers that exist, an area Baton knows, a person's step (an automated one has
    no page to show them on), restricted registers only for a community's step, and `fill` naming a text or number
    field of the step's form and one of the registers asked for."""
    query = at.step.registers
    if query is None:
        return []
    base = (*at.path, "registers")
    problems = []
    if at.step.kind != "human":
        problems.append(ctx.problem(base, "only a person's step (kind: human) is handed register entries"))
    for i, kind in enumerate(query.kinds):
        if kind not in REGISTER_KINDS:
            problems.append(ctx.problem((*base, "kinds", i), f"unknown register '{kind}' (one of "
                                                              f"{', '.join(REGISTER_KINDS)})"))
        elif kind in RESTRICTED_REGISTERS and ctx.registry is not None:
            dept = ctx.registry.department(at.step.department)
            if dept is not None and dept.kind != "community":
                problems.append(ctx.problem((*base, "kinds", i), f"'{kind}' is read only by the owning community "
                                                                  f"and the emergency office, not by "
                                                                  f"'{at.step.department}' ({dept.kind.value})"))
    if query.within not in REGISTER_AREAS:
        problems.append(ctx.problem((*base, "within"), f"unknown area '{query.within}' (one of "
                                                        f"{', '.join(REGISTER_AREAS)})"))
    for key, kind in query.fill.items():
        form_field = at.step.field(key)
        fpath = (*base, "fill", key)
        if form_field is None:
            problems.append(ctx.problem(fpath, f"the step's form has no field '{key}'"))
        elif form_field.type.value not in REGISTER_FILLS:
            problems.append(ctx.problem(fpath, f"'{key}' is a {form_field.type.value} field; register entries fill "
                                               "a text field (their names) or a number field (how many)"))
        if kind not in query.kinds:
            problems.append(ctx.problem(fpath, f"'{kind}' is not among the registers the step asks for "
                                               f"({', '.join(query.kinds)})"))
    return problems


# -- rules on the order of steps --------------------------------------------------------------------------------
def dependency_cycles(ctx: PlanContext) -> list[Problem]:
    problems = []
    for cycle in ctx.cycles:
        stage, i = ctx.positions[cycle[0]]
        problems.append(ctx.problem(("stages", stage, "steps", i, "depends_on"),
                                    "dependency cycle: " + " -> ".join([*cycle, cycle[0]])))
    return problems


def _value_fits(ftype: FieldType, choices: set[str], op: str, value: Any) -> str | None:
    """None when `op value` can be true for a field of this type, else why it cannot."""
    if op == "truthy":
        return None
    values = value if op == "in" else [value]
    if op == "in" and (not isinstance(value, list) or not value):
        return "'in' needs a non-empty list of values"
    for v in values:
        if ftype is FieldType.number:
            if isinstance(v, bool) or not isinstance(v, int | float):
                return f"compares a number field with {v!r}"
        elif ftype is FieldType.boolean:
            if not isinstance(v, bool):
                return f"compares a boolean field with {v!r}"
            if op not in ("eq", "ne"):
                return f"'{op}' does not apply to a boolean field"
        elif ftype is FieldType.choice:
            if op in ("gt", "ge", "lt", "le"):
                return f"'{op}' does not apply to a choice field"
            if not isinstance(v, str) or v not in choices:  # a list or mapping here is unhashable: name it
                return f"{v!r} is not one of the field's choices ({', '.join(sorted(choices))})"
        elif ftype in (FieldType.text, FieldType.datetime):
            if not isinstance(v, str):
                return f"compares a {ftype.value} field with {v!r}"
        else:
            return f"a {ftype.value} field can only be tested with 'truthy'"
    return None


def _beyond_bounds(form_field: FormField, op: str, value: Any) -> str | None:
    """Why `op value` can never hold for an answer within the number field's `min`, `max` and `integer`, or None."""
    if form_field.type is not FieldType.number or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    low, high = form_field.min, form_field.max
    never = {"gt": high is not None and value >= high, "ge": high is not None and value > high,
             "lt": low is not None and value <= low, "le": low is not None and value < low,
             "eq": (low is not None and value < low) or (high is not None and value > high)
             or (form_field.integer and not float(value).is_integer()),
             "ne": (low is not None and value < low) or (high is not None and value > high)}
    if not never.get(op, False):
        return None
    shown = " ".join(part for part in (f"from {low:g}" if low is not None else "",
                                       f"to {high:g}" if high is not None else "",
                                       "(whole numbers)" if form_field.integer else "") if part)
    return f"asks for {op} {value!r} of a field that takes {shown}"


def condition(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """A step's condition reads a field of a step whose outputs exist by then, with a value it can take."""
    step = at.step
    cond = step.when.condition if step.when else None
    if cond is None:
        return []
    problems = []
    cpath = (*at.path, "when", "condition")
    source = ctx.steps_by_key.get(cond.step)
    if source is None:
        problems.append(ctx.problem((*cpath, "step"), f"unknown step '{cond.step}'"))
    elif cond.step == step.key:
        problems.append(ctx.problem((*cpath, "step"), "a step cannot depend on its own output"))
    elif not ctx.exists_before(cond.step, at):
        problems.append(ctx.problem((*cpath, "step"), f"step '{cond.step}' is neither an earlier stage's step "
                                                      "nor among this step's dependencies, so its output may not "
                                                      "exist yet"))
    else:
        src_field = source.field(cond.field)
        if src_field is None:
            problems.append(ctx.problem((*cpath, "field"), f"step '{cond.step}' has no form field '{cond.field}'"))
        else:
            choices = {c.value for c in src_field.choices or []}
            why = _value_fits(src_field.type, choices, cond.op, cond.value)
            why = why or _beyond_bounds(src_field, cond.op, cond.value)
            if why is not None and cond.op == "ne":  # `ne` a value the field never takes: always true
                problems.append(ctx.problem(cpath, f"the condition is always true, so it has no effect: the "
                                                   f"condition {why}"))
            elif why is not None:
                problems.append(ctx.problem(cpath, f"the step can never activate: the condition {why}"))
    if source is not None and level_rank(source.min_level) > level_rank(step.min_level):
        problems.append(ctx.problem((*at.path, "when"), f"the condition reads step '{cond.step}', which only "
                                                        f"activates from level {source.min_level}; give this step "
                                                        f"min_level {source.min_level} too"))
    return problems


def inputs(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """A step's inputs are fields of steps whose outputs exist by then."""
    problems = []
    for j, ref in enumerate(at.step.inputs):
        ipath = (*at.path, "inputs", j)
        src_key, _, field_key = ref.partition(".")
        source = ctx.steps_by_key.get(src_key)
        if source is None:
            problems.append(ctx.problem(ipath, f"unknown step '{src_key}'"))
        elif src_key == at.step.key:
            problems.append(ctx.problem(ipath, "a step cannot take its own output as input"))
        elif not ctx.exists_before(src_key, at):
            problems.append(ctx.problem(ipath, f"step '{src_key}' is neither an earlier stage's step nor among this "
                                               "step's dependencies, so its output may not exist yet"))
        elif field_key and source.field(field_key) is None:
            problems.append(ctx.problem(ipath, f"step '{src_key}' has no form field '{field_key}'"))
    return problems


def warning_sources(ctx: PlanContext, at: StepAt) -> list[Problem]:
    """A warning's colour, expiry and texts read outputs of steps that exist before it, fields of the right type
    that the public may read (only public values reach a public text); its signers are positions that exist."""
    step = at.step
    if step.action != "publish_warning":
        return []
    try:
        params = PublishWarningParams.model_validate(step.params)
    except ValidationError:
        return []  # reported by step_kind
    base = (*at.path, "params")
    problems: list[Problem] = []
    refs: list[tuple[PathT, str, tuple[FieldType, ...]]] = []
    if params.colour_from:
        refs.append(((*base, "colour_from"), params.colour_from, (FieldType.choice,)))
    if params.expires_from:
        refs.append(((*base, "expires_from"), params.expires_from, (FieldType.datetime,)))
    refs += [((*base, "texts"), ref, tuple(FieldType)) for ref in params.output_refs()]
    for where, ref, types in refs:
        src_key, _, field_key = ref.partition(".")
        source = ctx.steps_by_key.get(src_key)
        form_field = source.field(field_key) if source is not None else None
        if source is None or src_key == step.key:
            problems.append(ctx.problem(where, f"'{ref}': unknown step '{src_key}'"))
        elif not ctx.exists_before(src_key, at):
            problems.append(ctx.problem(where, f"'{ref}': step '{src_key}' is neither an earlier stage's step nor "
                                               "among this step's dependencies, so its output may not exist yet"))
        elif form_field is None:
            problems.append(ctx.problem(where, f"'{ref}': step '{src_key}' has no form field '{field_key}'"))
        elif form_field.type not in types:
            problems.append(ctx.problem(where, f"'{ref}' is a {form_field.type.value} field; this needs "
                                               f"{' or '.join(t.value for t in types)}"))
        elif not reaches(PUBLIC, owner=source.department, share=source.field_share(field_key)):
            problems.append(ctx.problem(where, f"'{ref}' is not shared with the public "
                                               f"({_scope_text(source.field_share(field_key))}), so a public "
                                               "warning may not show it"))
        elif where[-1] == "colour_from":
            odd = sorted({c.value for c in form_field.choices or []} - set(WARNING_COLOURS))
            if odd:
                problems.append(ctx.problem(where, f"'{ref}' has choices that are not signal colours: "
                                                   f"{', '.join(odd)} (colours: {', '.join(WARNING_COLOURS)})"))
    return problems + _warning_signers(ctx, step, params, base)


def _warning_signers(ctx: PlanContext, step: Step, params: PublishWarningParams, base: PathT) -> list[Problem]:
    if ctx.registry is None:
        return []
    problems = []
    for i, ref in enumerate(params.signed_by):
        why = law_rules.position_ref_problem(ref, ctx.registry)
        if why is not None:
            problems.append(ctx.problem((*base, "signed_by", i), why))
    if not params.signed_by and ctx.dept_keys is not None and step.department in ctx.dept_keys and all(
            law_rules.position_ref_problem(ref, ctx.registry) for ref in leaders_of(step.department)):
        problems.append(ctx.problem((*base, "signed_by"), f"nobody in '{step.department}' holds a leader's "
                                                          "position that signs warnings off: name the "
                                                          "positions that sign"))
    return problems


# -- rules on how stages end ------------------------------------------------------------------------------------
def gates(ctx: PlanContext) -> list[Problem]:
    problems = []
    for stage in STAGES:
        stage_def = ctx.plan.stages.get(stage)
        if stage_def.gate is None:
            continue
        gpath: PathT = ("stages", stage, "gate")
        gate_step = next((s for s in stage_def.steps if s.key == stage_def.gate), None)
        if gate_step is None:
            where = ctx.positions.get(stage_def.gate)
            problems.append(ctx.problem(gpath, f"gate step '{stage_def.gate}' is not in stage '{stage}'" if where
                                        else f"unknown step '{stage_def.gate}'"))
        elif gate_step.when is not None:
            problems.append(ctx.problem(gpath, f"gate step '{stage_def.gate}' must activate at every level and "
                                               "without condition"))
    return problems


def after_action_review(ctx: PlanContext) -> list[Problem]:
    """The learning stage holds an after-action review active at every level; no other stage holds one."""
    problems = []
    if not any(s.after_action and s.when is None for s in ctx.plan.stages.learning.steps):
        problems.append(ctx.problem(("stages", "learning", "steps"), "the learning stage needs an after-action "
                                                                     "review step (after_action: true) active at "
                                                                     "every level"))
    for stage in STAGES[:-1]:
        if any(s.after_action for s in ctx.plan.stages.get(stage).steps):
            i = next(i for i, s in enumerate(ctx.plan.stages.get(stage).steps) if s.after_action)
            problems.append(ctx.problem(("stages", stage, "steps", i, "after_action"),
                                        "after-action review belongs in the learning stage"))
    return problems


def answering(ctx: PlanContext) -> list[Problem]:
    """叫应: every official a plan names is a post that exists (`position@organisation`)."""
    if ctx.registry is None or ctx.plan.answering.officials is None:
        return []
    problems = []
    for i, ref in enumerate(ctx.plan.answering.officials):
        why = law_rules.position_ref_problem(ref, ctx.registry)
        if why is not None:
            problems.append(ctx.problem(("answering", "officials", i), why))
    return problems


def _scope_text(share: Share | None) -> str:
    if share is None:
        return "not shared"
    if share.classification is Classification.restricted and share.all_departments:
        return "restricted, shared with nobody"
    return f"{share.classification.value}, shared with {', '.join(share.with_)}"


def field_scopes(ctx: PlanContext) -> list[Problem]:
    """Field-level scoping: a step's `inputs` may only name fields its department may read (`reaches`, the rule
    the board, task pages, webhooks and exports apply), a field's own share names known departments, and a
    restricted share names the departments it goes to (`all` opens a restricted value to nobody)."""
    problems: list[Problem] = []
    for at in ctx.steps():
        step, base = at.step, at.path
        scoped: list[tuple[PathT, Share]] = [((*base, "share"), step.share)] if step.share else []
        scoped += [((*base, "form", j, "share"), f.share) for j, f in enumerate(step.form) if f.share]
        for where, share in scoped:
            if share.classification is Classification.restricted and share.all_departments:
                problems.append(ctx.problem((*where, "with"), "a restricted share must name the departments it "
                                                              "goes to ('all' opens a restricted value to nobody)"))
            if where[-3] == "form" and ctx.dept_keys is not None:  # a field's share (the step's is checked apart)
                for n, target in enumerate(share.with_):
                    if target != EVERYONE and target not in ctx.dept_keys:
                        problems.append(ctx.problem((*where, "with", n), f"unknown department '{target}'"))
        for j, ref in enumerate(step.inputs):
            src_key, _, field_key = ref.partition(".")
            source = ctx.steps_by_key.get(src_key)
            if source is None or src_key == step.key or (field_key and source.field(field_key) is None) \
                    or (ctx.dept_keys is not None and step.department not in ctx.dept_keys):
                continue  # reported by the reference checks
            keys = [field_key] if field_key else [f.key for f in source.form] or [""]
            hidden = [k for k in keys if not reaches(step.department, owner=source.department,
                                                     share=source.field_share(k) if k else source.share)]
            if not hidden:
                continue
            by_scope: dict[str, list[str]] = {}
            for k in hidden:
                by_scope.setdefault(_scope_text(source.field_share(k) if k else source.share), []).append(k)
            shown = "; ".join(f"{', '.join(repr(f'{src_key}.{k}' if k else src_key) for k in names)} ({scope})"
                              for scope, names in by_scope.items())
            problems.append(ctx.problem((*base, "inputs", j), f"department '{step.department}' may not read "
                                                              f"{shown}: share the field with it (a form field's "
                                                              f"own `share`) or drop the input"))
    return problems


# -- the driver -------------------------------------------------------------------------------------------------
PlanRule = Callable[[PlanContext], list[Problem]]
StepRule = Callable[[PlanContext, StepAt], list[Problem]]

# In this order (problems on one line are reported in it): the plan's layout, each step on its own, the
# dependency graph, each step against the steps before it, how stages end, upward reporting.
LAYOUT_RULES: tuple[PlanRule, ...] = (stage_order, key_matches_file_name, unique_step_keys)
STEP_RULES: tuple[StepRule, ...] = (step_department, step_kind, form_fields, form_checks, dependencies, deadlines,
                                    escalation, sharing, registers)
GRAPH_RULES: tuple[PlanRule, ...] = (dependency_cycles,)
FLOW_RULES: tuple[StepRule, ...] = (condition, inputs, warning_sources)
ENDING_RULES: tuple[PlanRule, ...] = (gates, after_action_review, upward_reporting, field_scopes, answering)


def law(ctx: PlanContext) -> list[Problem]:
    """The rules Chinese emergency law and practice add (`process_defs.law_rules`)."""
    return [ctx.problem(path, message) for path, message in law_rules.check(ctx.plan, ctx.registry)]


def check_plan(plan: IncidentType, registry: DepartmentRegistry | None, file: str,
               loaded: LoadedYaml, *, law_rules_apply: bool = True) -> list[Problem]:
    """Every problem of a plan whose shape is valid (a registry of None skips the checks against it);
    `law_rules_apply=False` for a version stored for its incidents (see `validation.parse_plan`)."""
    ctx = PlanContext(plan, registry, file, loaded)
    problems = [p for rule in LAYOUT_RULES for p in rule(ctx)]
    problems += [p for at in ctx.steps() for rule in STEP_RULES for p in rule(ctx, at)]
    problems += [p for rule in GRAPH_RULES for p in rule(ctx)]
    problems += [p for at in ctx.steps() for rule in FLOW_RULES for p in rule(ctx, at)]
    problems += [p for rule in ENDING_RULES for p in rule(ctx)]
    problems += law(ctx) if law_rules_apply else []
    return problems
