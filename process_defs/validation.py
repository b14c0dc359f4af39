"""Load plan files and report every problem at once, as `file:line path: message`.

Malformed YAML, shape errors (pydantic) and meaning errors (references, cycles, deadlines, activation)
all come back as `Problem`s; nothing here raises on bad input.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from process_defs.actions import ACTIONS
from process_defs.schema import (
    EVERYONE,
    LEVELS,
    STAGES,
    Classification,
    DepartmentRegistry,
    FieldType,
    IncidentType,
    Share,
    Step,
    level_rank,
    parse_duration,
    reaches,
)
from process_defs.signals import SIGNALS_FILE, SignalRules

PLAN_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = "departments.yaml"

PathT = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LoadedYaml:
    data: Any
    lines: dict[PathT, int] = field(default_factory=dict)
    key_order: dict[PathT, list[str]] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of `path`, or of its nearest ancestor present in the file."""
        current = tuple(path)
        while current:
            if current in self.lines:
                return self.lines[current]
            current = current[:-1]
        return self.lines.get((), 1)


MAX_YAML_NODES = 200_000
"""Aliases can make a small file expand enormously ("billion laughs"); stop building beyond this many values."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_error(exc: Exception) -> str:
    """One line saying why a scalar could not be read (PyYAML's own messages span several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        return str(exc.problem or exc.context or "cannot read the value")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _load_yaml(text: str, file: str, problems: list[Problem]) -> LoadedYaml | None:
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters already
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        problems.append(Problem(file, line, "", f"malformed YAML: {_construct_error(exc)}"))
        return None
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        message = f"malformed YAML: {exc.problem or exc.context}"
        if exc.problem and exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            # e.g. an unclosed `{` is only noticed on a later line; say where it was opened.
            message += f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
        problems.append(Problem(file, line, "", message))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 1, "", f"malformed YAML: {_construct_error(exc)}"))
        return None
    finally:
        loader.dispose()
    if node is None:
        problems.append(Problem(file, 1, "", "the file is empty"))
        return None
    loaded = LoadedYaml(data=None)
    building: set[int] = set()  # ids of the collection nodes on the current path (a recursive alias loops)
    count = 0

    class _TooBigError(Exception):
        pass

    def construct(n: yaml.Node, path: PathT) -> tuple[bool, Any]:
        try:
            return True, loader.construct_object(n, deep=True)
        except Exception as exc:  # PyYAML raises ValueError too, e.g. for the date 2024-13-45
            shown = f" '{n.value}'" if isinstance(n, yaml.ScalarNode) and 0 < len(n.value) <= 40 else ""
            problems.append(Problem(file, n.start_mark.line + 1, format_path(path),
                                    f"bad value{shown}: {_construct_error(exc)}"))
            return False, None

    def build(n: yaml.Node, path: PathT) -> Any:
        nonlocal count
        count += 1
        if count > MAX_YAML_NODES:
            raise _TooBigError
        loaded.lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode | yaml.SequenceNode):
            if id(n) in building:
                problems.append(Problem(file, n.start_mark.line + 1, format_path(path),
                                        "an alias refers to a value that contains it"))
                return None
            building.add(id(n))
            try:
                return build_mapping(n, path) if isinstance(n, yaml.MappingNode) else [
                    build(item, (*path, i)) for i, item in enumerate(n.value)]
            finally:
                building.discard(id(n))
        ok, value = construct(n, path)
        return value if ok else None

    def build_mapping(n: yaml.MappingNode, path: PathT) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        order: list[str] = []
        for key_node, value_node in n.value:
            if key_node.tag == _MERGE_TAG:
                problems.append(Problem(file, key_node.start_mark.line + 1, format_path(path),
                                        "merge keys ('<<') are not supported; write the keys out"))
                continue
            ok, key = construct(key_node, path)
            if not ok:
                continue
            if not isinstance(key, str | int | float | bool) or key is None:
                problems.append(Problem(file, key_node.start_mark.line + 1, format_path(path),
                                        "mapping keys must be plain words"))
                continue
            key = str(key)
            child = (*path, key)
            if key in result:
                problems.append(Problem(file, key_node.start_mark.line + 1, format_path(child),
                                        f"duplicate key '{key}' (first on line {loaded.lines[child]})"))
                continue
            loaded.lines[child] = key_node.start_mark.line + 1
            order.append(key)
            result[key] = build(value_node, child)
        loaded.key_order[path] = order
        return result

    try:
        loaded.data = build(node, ())
    except _TooBigError:
        problems.append(Problem(file, 1, "", f"the file expands to more than {MAX_YAML_NODES} values "
                                             "(aliases repeated inside aliases?)"))
        return None
    return loaded


def _error_message(err: Any) -> tuple[PathT, str]:
    """The location (without pydantic's `[key]` marker for a bad dictionary key) and message of one error."""
    loc = tuple(part for part in err["loc"] if part != "[key]")
    kind = err["type"]
    if kind == "extra_forbidden":
        return loc, f"unknown key '{loc[-1]}'"
    if kind == "missing":
        return loc, f"required key '{loc[-1]}' is missing"
    message = str(err["msg"])
    if kind not in ("value_error", "assertion_error") and "input" in err:
        shown = repr(err["input"])
        if len(shown) <= 60:
            message += f" (got {shown})"
    return loc, message


def _shape_problems(exc: ValidationError, file: str, loaded: LoadedYaml) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc, message = _error_message(err)
        problems.append(Problem(file, loaded.line_of(loc), format_path(loc), message))
    return problems


def _parse(model: type[BaseModel], text: str, file: str) -> tuple[Any, LoadedYaml | None, list[Problem]]:
    problems: list[Problem] = []
    loaded = _load_yaml(text, file, problems)
    if loaded is None or problems:
        return None, loaded, problems
    if not isinstance(loaded.data, dict):
        return None, loaded, [Problem(file, 1, "", "the file must be a mapping of keys to values")]
    try:
        return model.model_validate(loaded.data), loaded, []
    except ValidationError as exc:
        return None, loaded, _shape_problems(exc, file, loaded)


def check_registry(registry: DepartmentRegistry, file: str, loaded: LoadedYaml) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: PathT, message: str) -> None:
        problems.append(Problem(file, loaded.line_of(path), format_path(path), message))

    seen: dict[str, int] = {}
    for i, dept in enumerate(registry.departments):
        if dept.key in seen:
            add(("departments", i, "key"), f"duplicate department '{dept.key}' (also departments[{seen[dept.key]}])")
        seen.setdefault(dept.key, i)
    for i, dept in enumerate(registry.departments):
        if dept.supervisor is not None and dept.supervisor not in seen:
            add(("departments", i, "supervisor"), f"unknown department '{dept.supervisor}'")
        elif dept.supervisor == dept.key:
            add(("departments", i, "supervisor"), "a department cannot supervise itself")
    # A supervision cycle would make escalation loop forever; report each cycle once, at its first department.
    cycles: set[frozenset[str]] = set()
    for i, dept in enumerate(registry.departments):
        chain, current = [dept.key], dept.supervisor
        while current is not None and current in seen and current not in chain:
            chain.append(current)
            current = registry.departments[seen[current]].supervisor
        if current is not None and current == dept.key and len(chain) > 1 and frozenset(chain) not in cycles:
            cycles.add(frozenset(chain))
            add(("departments", i, "supervisor"), "supervision cycle: " + " -> ".join([*chain, dept.key]))
    role_keys: set[str] = set()
    for i, role in enumerate(registry.roles):
        if role.key in role_keys:
            add(("roles", i, "key"), f"duplicate role '{role.key}'")
        role_keys.add(role.key)
        if role.department not in seen:
            add(("roles", i, "department"), f"unknown department '{role.department}'")
    return problems


def _step_paths(plan: IncidentType) -> dict[str, tuple[str, int]]:
    """step key -> (stage, index) for the first occurrence of each key."""
    out: dict[str, tuple[str, int]] = {}
    for stage in STAGES:
        for i, step in enumerate(plan.stages.get(stage).steps):
            out.setdefault(step.key, (stage, i))
    return out


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
            if v not in choices:
                return f"{v!r} is not one of the field's choices ({', '.join(sorted(choices))})"
        elif ftype in (FieldType.text, FieldType.datetime):
            if not isinstance(v, str):
                return f"compares a {ftype.value} field with {v!r}"
        else:
            return f"a {ftype.value} field can only be tested with 'truthy'"
    return None


def check_plan(
    plan: IncidentType, registry: DepartmentRegistry | None, file: str, loaded: LoadedYaml
) -> list[Problem]:
    problems: list[Problem] = []

    def add(path: PathT, message: str) -> None:
        problems.append(Problem(file, loaded.line_of(path), format_path(path), message))

    order = [k for k in loaded.key_order.get(("stages",), []) if k in STAGES]
    if order != [s for s in STAGES if s in order]:
        add(("stages",), f"stages must come in the order {', '.join(STAGES)} (found {', '.join(order)})")

    stem = Path(file).stem
    if stem != plan.key and stem not in ("-", "<string>"):
        add(("key",), f"key '{plan.key}' must equal the file name '{stem}'")

    positions = _step_paths(plan)
    stage_index = {s: i for i, s in enumerate(STAGES)}
    steps_by_key: dict[str, Step] = {}
    for stage in STAGES:
        for i, step in enumerate(plan.stages.get(stage).steps):
            base: PathT = ("stages", stage, "steps", i)
            if step.key in steps_by_key:
                first_stage, first_i = positions[step.key]
                add((*base, "key"), f"duplicate step key '{step.key}' (first at stages.{first_stage}.steps[{first_i}])")
                continue
            steps_by_key[step.key] = step

    dept_keys = {d.key for d in registry.departments} if registry else None
    role_keys = {r.key for r in registry.roles} if registry else None

    # Dependency graph (only edges to known steps).
    graph: dict[str, list[str]] = {key: [] for key in steps_by_key}

    for stage in STAGES:
        stage_def = plan.stages.get(stage)
        for i, step in enumerate(stage_def.steps):
            base = ("stages", stage, "steps", i)
            if positions.get(step.key) != (stage, i):
                continue
            if dept_keys is not None and step.department not in dept_keys:
                add((*base, "department"), f"unknown department '{step.department}'")
            # Kind and action.
            if step.kind == "action":
                if step.action is None:
                    add((*base, "action"), "an action step must name its action")
                elif step.action not in ACTIONS:
                    add((*base, "action"), f"unknown action '{step.action}' (known: {', '.join(sorted(ACTIONS))})")
                else:
                    try:
                        params = ACTIONS[step.action].model_validate(step.params)
                    except ValidationError as exc:
                        for err in exc.errors():
                            loc, msg = _error_message(err)
                            add((*base, "params", *loc), msg)
                    else:
                        target = getattr(params, "target", None)
                        if target is not None and dept_keys is not None and target not in dept_keys:
                            add((*base, "params", "target"), f"unknown department '{target}'")
                if step.form:
                    add((*base, "form"), "an action step has no form; only human steps do")
            else:
                if step.action is not None:
                    add((*base, "action"), "a human step has no action; use kind: action")
                if step.params:
                    add((*base, "params"), "a human step has no params")
                if not step.deadline:
                    add((*base, "deadline"), "a human step needs a deadline")
            # Form fields.
            seen_fields: set[str] = set()
            for j, form_field in enumerate(step.form):
                fpath = (*base, "form", j)
                if form_field.key in seen_fields:
                    add((*fpath, "key"), f"duplicate form field '{form_field.key}'")
                seen_fields.add(form_field.key)
                if form_field.type is FieldType.choice:
                    if not form_field.choices:
                        add((*fpath, "choices"), "a choice field needs choices")
                    else:
                        values = [c.value for c in form_field.choices]
                        dupes = sorted({v for v in values if values.count(v) > 1})
                        if dupes:
                            add((*fpath, "choices"), f"duplicate choice '{dupes[0]}'")
                elif form_field.choices is not None:
                    add((*fpath, "choices"), f"only a choice field has choices, not a {form_field.type.value} field")
                if form_field.unit is not None and form_field.type is not FieldType.number:
                    add((*fpath, "unit"), f"only a number field has a unit, not a {form_field.type.value} field")
                if form_field.multiple and form_field.type not in (FieldType.choice, FieldType.attachment):
                    add((*fpath, "multiple"), "only choice and attachment fields can take several values")
            # Dependencies.
            for j, dep in enumerate(step.depends_on):
                dpath = (*base, "depends_on", j)
                if dep == step.key:
                    add(dpath, "a step cannot depend on itself")
                elif dep not in steps_by_key:
                    add(dpath, f"unknown step '{dep}'")
                elif stage_index[positions[dep][0]] > stage_index[stage]:
                    add(dpath, f"step '{dep}' is in the later stage '{positions[dep][0]}'")
                else:
                    graph[step.key].append(dep)
            if len(set(step.depends_on)) != len(step.depends_on):
                add((*base, "depends_on"), "a dependency is listed twice")
            # Deadlines.
            if step.deadline:
                previous: tuple[str, Any, str] | None = None
                for level in LEVELS:
                    if level not in step.deadline:
                        continue
                    text = step.deadline[level]
                    lpath = (*base, "deadline", level) if (*base, "deadline", level) in loaded.lines else (
                        *base, "deadline")
                    try:
                        value = parse_duration(text)
                    except ValueError as exc:
                        add(lpath, str(exc))
                        continue
                    except OverflowError:
                        add(lpath, f"deadline {text} is too long")
                        continue
                    if value.total_seconds() <= 0:
                        add(lpath, f"deadline {text} must be longer than zero")
                        continue
                    if previous is not None and value > previous[1]:
                        add(lpath, f"deadline {text} at level {level} is looser than {previous[0]} at level "
                                   f"{previous[2]}; deadlines must tighten as the level rises")
                    previous = (text, value, level)
            # Escalation.
            if step.escalate_to is not None:
                target = step.escalate_to
                epath = (*base, "escalate_to")
                if target == "supervisor":
                    if registry is not None:
                        dept = registry.department(step.department)
                        if dept is not None and dept.supervisor is None:
                            add(epath, f"department '{step.department}' has no supervisor to escalate to")
                elif target.startswith("role:"):
                    if role_keys is not None and target[5:] not in role_keys:
                        add(epath, f"unknown role '{target[5:]}'")
                elif dept_keys is not None and target not in dept_keys:
                    add(epath, f"unknown escalation target '{target}' (a department, 'supervisor' or 'role:KEY')")
                elif target == step.department:
                    add(epath, "a step cannot escalate to its own department")
            # Sharing.
            if step.share is not None and dept_keys is not None:
                for j, target in enumerate(step.share.with_):
                    if target != "all" and target not in dept_keys:
                        add((*base, "share", "with", j), f"unknown department '{target}'")

    # Cycles (depth-first, report each cycle once at its first step).
    state: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def visit(key: str, trail: list[str]) -> None:
        state[key] = 1
        trail.append(key)
        for dep in graph[key]:
            if state.get(dep) == 1:
                cycle = trail[trail.index(dep):]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    stage, i = positions[dep]
                    add(("stages", stage, "steps", i, "depends_on"),
                        "dependency cycle: " + " -> ".join([*cycle, dep]))
            elif state.get(dep) is None:
                visit(dep, trail)
        trail.pop()
        state[key] = 2

    for key in graph:
        if key not in state:
            visit(key, [])
    has_cycle = bool(reported)

    def ancestors(key: str) -> set[str]:
        seen: set[str] = set()
        stack = list(graph.get(key, []))
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(graph.get(current, []))
        return seen

    def earlier_stage(dep: str, stage: str) -> bool:
        return stage_index[positions[dep][0]] < stage_index[stage]

    # Conditions and inputs refer to outputs that must exist before this step can start.
    for stage in STAGES:
        for i, step in enumerate(plan.stages.get(stage).steps):
            base = ("stages", stage, "steps", i)
            if positions.get(step.key) != (stage, i):
                continue
            before = set() if has_cycle else ancestors(step.key)
            cond = step.when.condition if step.when else None
            if cond is not None:
                cpath = (*base, "when", "condition")
                source = steps_by_key.get(cond.step)
                if source is None:
                    add((*cpath, "step"), f"unknown step '{cond.step}'")
                elif cond.step == step.key:
                    add((*cpath, "step"), "a step cannot depend on its own output")
                elif not has_cycle and cond.step not in before and not earlier_stage(cond.step, stage):
                    add((*cpath, "step"), f"step '{cond.step}' is neither an earlier stage's step nor among this "
                                          "step's dependencies, so its output may not exist yet")
                else:
                    src_field = source.field(cond.field)
                    if src_field is None:
                        add((*cpath, "field"), f"step '{cond.step}' has no form field '{cond.field}'")
                    else:
                        choices = {c.value for c in src_field.choices or []}
                        why = _value_fits(src_field.type, choices, cond.op, cond.value)
                        if why is not None and cond.op == "ne":  # `ne` a value the field never takes: always true
                            add(cpath, f"the condition is always true, so it has no effect: the condition {why}")
                        elif why is not None:
                            add(cpath, f"the step can never activate: the condition {why}")
                if source is not None and level_rank(source.min_level) > level_rank(step.min_level):
                    add((*base, "when"), f"the condition reads step '{cond.step}', which only activates from level "
                                         f"{source.min_level}; give this step min_level {source.min_level} too")
            for j, ref in enumerate(step.inputs):
                ipath = (*base, "inputs", j)
                src_key, _, field_key = ref.partition(".")
                source = steps_by_key.get(src_key)
                if source is None:
                    add(ipath, f"unknown step '{src_key}'")
                elif src_key == step.key:
                    add(ipath, "a step cannot take its own output as input")
                elif not has_cycle and src_key not in before and not earlier_stage(src_key, stage):
                    add(ipath, f"step '{src_key}' is neither an earlier stage's step nor among this step's "
                               "dependencies, so its output may not exist yet")
                elif field_key and source.field(field_key) is None:
                    add(ipath, f"step '{src_key}' has no form field '{field_key}'")

    # Gates.
    for stage in STAGES:
        stage_def = plan.stages.get(stage)
        if stage_def.gate is None:
            continue
        gpath: PathT = ("stages", stage, "gate")
        gate_step = next((s for s in stage_def.steps if s.key == stage_def.gate), None)
        if gate_step is None:
            where = positions.get(stage_def.gate)
            add(gpath, f"gate step '{stage_def.gate}' is not in stage '{stage}'" if where
                else f"unknown step '{stage_def.gate}'")
        elif gate_step.when is not None:
            add(gpath, f"gate step '{stage_def.gate}' must activate at every level and without condition")

    # Every stage but an empty one needs a way to end.
    learning = plan.stages.learning
    if not any(s.after_action and s.when is None for s in learning.steps):
        add(("stages", "learning", "steps"),
            "the learning stage needs an after-action review step (after_action: true) active at every level")
    for stage in STAGES[:-1]:
        if any(s.after_action for s in plan.stages.get(stage).steps):
            i = next(i for i, s in enumerate(plan.stages.get(stage).steps) if s.after_action)
            add(("stages", stage, "steps", i, "after_action"), "after-action review belongs in the learning stage")
    problems.extend(check_field_scopes(plan, registry, file, loaded))
    return problems


def _scope_text(share: Share | None) -> str:
    if share is None:
        return "not shared"
    if share.classification is Classification.restricted and share.all_departments:
        return "restricted, shared with nobody"
    return f"{share.classification.value}, shared with {', '.join(share.with_)}"


def check_field_scopes(
    plan: IncidentType, registry: DepartmentRegistry | None, file: str, loaded: LoadedYaml
) -> list[Problem]:
    """Field-level scoping: a step's `inputs` may only name fields its department may read (`reaches`, the rule
    the board, task pages, webhooks and exports apply), a field's own share names known departments, and a
    restricted share names the departments it goes to (`all` opens a restricted value to nobody)."""
    problems: list[Problem] = []

    def add(path: PathT, message: str) -> None:
        problems.append(Problem(file, loaded.line_of(path), format_path(path), message))

    dept_keys = {d.key for d in registry.departments} if registry else None
    first = _step_paths(plan)
    steps = {key: plan.stages.get(stage).steps[i] for key, (stage, i) in first.items()}
    for stage in STAGES:
        for i, step in enumerate(plan.stages.get(stage).steps):
            base: PathT = ("stages", stage, "steps", i)
            if first.get(step.key) != (stage, i):
                continue
            scoped: list[tuple[PathT, Share]] = [((*base, "share"), step.share)] if step.share else []
            scoped += [((*base, "form", j, "share"), f.share) for j, f in enumerate(step.form) if f.share]
            for where, share in scoped:
                if share.classification is Classification.restricted and share.all_departments:
                    add((*where, "with"), "a restricted share must name the departments it goes to "
                                          "('all' opens a restricted value to nobody)")
                if where[-3] == "form" and dept_keys is not None:  # a field's share (the step's is checked above)
                    for n, target in enumerate(share.with_):
                        if target != EVERYONE and target not in dept_keys:
                            add((*where, "with", n), f"unknown department '{target}'")
            for j, ref in enumerate(step.inputs):
                src_key, _, field_key = ref.partition(".")
                source = steps.get(src_key)
                if source is None or src_key == step.key or (field_key and source.field(field_key) is None) \
                        or (dept_keys is not None and step.department not in dept_keys):
                    continue  # reported by the reference checks
                keys = [field_key] if field_key else [f.key for f in source.form] or [""]
                hidden = [k for k in keys if not reaches(step.department, owner=source.department,
                                                         share=source.field_share(k) if k else source.share)]
                if not hidden:
                    continue
                by_scope: dict[str, list[str]] = {}
                for k in hidden:
                    by_scope.setdefault(_scope_text(source.field_share(k) if k else source.share), []).append(k)
                shown = "; ".join(f"{', '.join(repr(f'{src_key}.{k}' if k else src_key) for k in keys)} ({scope})"
                                  for scope, keys in by_scope.items())
                add((*base, "inputs", j), f"department '{step.department}' may not read {shown}: share the field "
                                          f"with it (a form field's own `share`) or drop the input")
    return problems


def load_registry(path: Path) -> tuple[DepartmentRegistry | None, list[Problem]]:
    file = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(file, 1, "", f"cannot read the file: {exc}")]
    registry, loaded, problems = _parse(DepartmentRegistry, text, file)
    if registry is not None and loaded is not None:
        problems = check_registry(registry, file, loaded)
        if problems:
            return None, problems
    return registry, problems


def _parse_plan(
    text: str, file: str, registry: DepartmentRegistry | None
) -> tuple[IncidentType | None, LoadedYaml | None, list[Problem]]:
    plan, loaded, problems = _parse(IncidentType, text, file)
    if plan is None or loaded is None:
        return None, loaded, problems
    problems = check_plan(plan, registry, file, loaded)
    return (None if problems else plan), loaded, sorted(problems, key=lambda p: p.line)


def parse_plan(
    text: str, file: str, registry: DepartmentRegistry | None
) -> tuple[IncidentType | None, list[Problem]]:
    plan, _, problems = _parse_plan(text, file, registry)
    return plan, problems


def _load_plan(
    path: Path, registry: DepartmentRegistry | None
) -> tuple[IncidentType | None, LoadedYaml | None, list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, None, [Problem(path.name, 1, "", f"cannot read the file: {exc}")]
    return _parse_plan(text, path.name, registry)


def load_plan(path: Path, registry: DepartmentRegistry | None) -> tuple[IncidentType | None, list[Problem]]:
    plan, _, problems = _load_plan(path, registry)
    return plan, problems


@dataclass
class CheckResult:
    registry: DepartmentRegistry | None
    plans: dict[str, IncidentType]
    problems: list[Problem]
    files: list[Path]


def plan_files(paths: Sequence[Path]) -> tuple[Path | None, list[Path]]:
    """Split the given files or directories into the department registry and the plan files."""
    registry_file: Path | None = None
    files: list[Path] = []
    for path in paths:
        candidates = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.name == REGISTRY_FILE:
                registry_file = candidate
            elif candidate.name != SIGNALS_FILE:
                files.append(candidate)
    return registry_file, files


def check_paths(paths: Sequence[Path] | None = None) -> CheckResult:
    """Validate plans; the registry is the one among `paths`, else the shipped one."""
    registry_file, files = plan_files(list(paths) if paths else [PLAN_DIR])
    if registry_file is None:
        sibling = files[0].parent / REGISTRY_FILE if files else None
        registry_file = sibling if sibling is not None and sibling.exists() else PLAN_DIR / REGISTRY_FILE
    problems: list[Problem] = []
    registry, registry_problems = load_registry(registry_file)
    problems.extend(registry_problems)
    plans: dict[str, IncidentType] = {}
    prefixes: dict[str, str] = {}
    keys: dict[str, Path] = {}
    seen_files: set[Path] = set()
    for file in files:
        if file.resolve() in seen_files:  # e.g. a folder and one of its files both given
            continue
        seen_files.add(file.resolve())
        if not file.exists():
            problems.append(Problem(file.name, 1, "", "no such file"))
            continue
        plan, loaded, plan_problems = _load_plan(file, registry)
        problems.extend(plan_problems)
        if plan is not None and loaded is not None:
            if plan.key in keys:
                problems.append(Problem(file.name, loaded.line_of(("key",)), "key",
                                        f"plan '{plan.key}' is already defined in {keys[plan.key]}"))
                continue
            if plan.code_prefix in prefixes:
                used_by = prefixes[plan.code_prefix]
                problems.append(Problem(file.name, loaded.line_of(("code_prefix",)), "code_prefix",
                                        f"code prefix '{plan.code_prefix}' is already used by {used_by}"))
                continue
            keys[plan.key] = file
            prefixes[plan.code_prefix] = file.name
            plans[plan.key] = plan
    signal_files = [p / SIGNALS_FILE for p in (paths or [PLAN_DIR]) if p.is_dir() and (p / SIGNALS_FILE).exists()]
    signal_files += [p for p in (paths or []) if p.is_file() and p.name == SIGNALS_FILE]
    for file in signal_files:
        _, signal_problems = load_signal_rules(file, plans)
        problems.extend(signal_problems)
    return CheckResult(registry=registry, plans=plans, problems=problems,
                       files=[registry_file, *files, *signal_files])


def load_signal_rules(path: Path, plans: dict[str, IncidentType]) -> tuple[SignalRules | None, list[Problem]]:
    """Signal rules, checked against the plans they open (every rule's type must be one of them)."""
    file = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(file, 1, "", f"cannot read the file: {exc}")]
    rules, loaded, problems = _parse(SignalRules, text, file)
    if rules is None or loaded is None:
        return None, problems

    def add(where: PathT, message: str) -> None:
        problems.append(Problem(file, loaded.line_of(where), format_path(where), message))

    seen: set[str] = set()
    kinds: set[str] = set()
    for i, rule in enumerate(rules.rules):
        base: PathT = ("rules", i)
        if rule.key in seen:
            add((*base, "key"), f"duplicate rule '{rule.key}'")
        seen.add(rule.key)
        if rule.kind in kinds:
            add((*base, "kind"), f"another rule already handles signals of kind '{rule.kind}'")
        kinds.add(rule.kind)
        if plans and rule.type not in plans:
            add((*base, "type"), f"unknown incident type '{rule.type}'")
        try:
            window = parse_duration(rule.window)
            if window.total_seconds() <= 0:
                add((*base, "window"), "the dedupe window must be longer than zero")
        except ValueError as exc:
            add((*base, "window"), str(exc))
        for where, template in ((("dedupe",), rule.dedupe), (("title", "zh"), rule.title.zh),
                                (("title", "en"), rule.title.en)):
            try:
                template.format_map(_AnyFields())
                names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
            except (ValueError, IndexError) as exc:
                add((*base, *where), f"not a valid template: {exc}")
                continue
            # Only plain field names: `{x.__class__}` or `{x[0]}` would reach into what a signal sender chose.
            for name in names:
                if not name.isidentifier():
                    add((*base, *where), f"'{{{name}}}': a template names payload fields only (letters, digits, _)")
        if rule.cap and rule.levels:
            add((*base, "levels"), "a CAP rule takes its level from the alert's severity; remove levels")
        if not rule.cap and not rule.levels:
            add((*base, "levels"), "a rule needs levels (thresholds), or cap: true")
        ranks = [level_rank(t.level) for t in rule.levels]
        if ranks != sorted(ranks, reverse=True):
            add((*base, "levels"), "list thresholds from the most severe level (I) down to the least (IV)")
    return (None if problems else rules), problems


class _AnyFields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key
