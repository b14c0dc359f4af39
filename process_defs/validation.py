"""Load plan files and report every problem at once, as `file:line path: message`.

Malformed YAML, shape errors (pydantic) and meaning errors (references, cycles, deadlines, activation: the
rules of `process_defs.plan_rules`) all come back as `Problem`s; nothing here raises on bad input.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from process_defs import law_rules
from process_defs.plan_rules import check_plan
from process_defs.problems import LoadedYaml, PathT, Problem, error_message, format_path
from process_defs.schema import (
    DepartmentRegistry,
    IncidentType,
    parse_duration,
)
from process_defs.signals import SIGNALS_FILE, SignalRules

PLAN_DIR = Path(__file__).resolve().parent
REGISTRY_FILE = "departments.yaml"

MAX_YAML_NODES = 200_000
"""Aliases can make a small file expand enormously ("billion laughs"); stop building beyond this many values."""

_MERGE_TAG = "tag:yaml.org,2002:merge"

_FastLoader: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def _construct_error(exc: Exception) -> str:
    """One line saying why a scalar could not be read (PyYAML's own messages span several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        return str(exc.problem or exc.context or "cannot read the value")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _compose(text: str) -> tuple[yaml.SafeLoader | yaml.CSafeLoader, yaml.Node | None]:
    """The document's node tree, by libyaml's parser when PyYAML has it (its wheels do): the pure-Python one
    spends about a second on a plan, and every process that opens or advances an incident parses its plan. A
    file libyaml refuses is read again by the pure-Python parser, whose messages (and positions) the problems
    quote; bad files are rare, so only they pay."""
    if _FastLoader is not None:
        fast = _FastLoader(text)
        try:
            return fast, fast.get_single_node()
        except yaml.YAMLError:
            fast.dispose()
    loader = yaml.SafeLoader(text)  # checks for unprintable characters already
    try:
        return loader, loader.get_single_node()
    except yaml.YAMLError:
        loader.dispose()
        raise


def _load_yaml(text: str, file: str, problems: list[Problem]) -> LoadedYaml | None:
    try:
        loader, node = _compose(text)
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
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else 1
        problems.append(Problem(file, line, "", f"malformed YAML: {_construct_error(exc)}"))
        return None
    try:
        return _build(loader, node, file, problems)
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader | yaml.CSafeLoader, node: yaml.Node | None, file: str,
           problems: list[Problem]) -> LoadedYaml | None:
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


def _shape_problems(exc: ValidationError, file: str, loaded: LoadedYaml) -> list[Problem]:
    problems = []
    for err in exc.errors():
        loc, message = error_message(err)
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
    for path, message in law_rules.registry_rules(registry):
        add(path, message)
    role_keys: set[str] = set()
    for i, role in enumerate(registry.roles):
        if role.key in role_keys:
            add(("roles", i, "key"), f"duplicate role '{role.key}'")
        role_keys.add(role.key)
        if role.department not in seen:
            add(("roles", i, "department"), f"unknown department '{role.department}'")
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
    text: str, file: str, registry: DepartmentRegistry | None, law: bool = True
) -> tuple[IncidentType | None, LoadedYaml | None, list[Problem]]:
    plan, loaded, problems = _parse(IncidentType, text, file)
    if plan is None or loaded is None:
        return None, loaded, problems
    problems = check_plan(plan, registry, file, loaded, law_rules_apply=law)
    return (None if problems else plan), loaded, sorted(problems, key=lambda p: p.line)


def parse_plan(
    text: str, file: str, registry: DepartmentRegistry | None, *, stored: bool = False
) -> tuple[IncidentType | None, list[Problem]]:
    """Parse and check a plan. `stored`: a version kept for the incidents opened on it, checked when it was
    stored; the law rules added since (`process_defs.law_rules`) do not unmake it."""
    plan, _, problems = _parse_plan(text, file, registry, law=not stored)
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


def load_signal_rules(path: Path, plans: dict[str, IncidentType]) -> tuple[SignalRules | None, list[Problem]]:  # noqa: C901
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
        plan = plans.get(rule.type)
        if not rule.cap and plan is not None:
            for finding, message in law_rules.signal_grading(rule.kind, plan):
                add((*base, *finding), message)
    return (None if problems else rules), problems


class _AnyFields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return key
