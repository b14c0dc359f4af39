"""`baton defs …`: check, show and draw response plans."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from process_defs import graph
from process_defs.schema import (
    LEVEL_COLOURS,
    LEVEL_NAMES,
    LEVELS,
    STAGE_NAMES,
    STAGES,
    DepartmentRegistry,
    IncidentType,
    Step,
    StepKind,
)
from process_defs.validation import PLAN_DIR, REGISTRY_FILE, check_paths

app = typer.Typer(help="Response plans: check, show, graph.", no_args_is_help=True)


def _console() -> Console:
    return Console(highlight=False, emoji=False)


def _err_console() -> Console:
    return Console(stderr=True, highlight=False, emoji=False)


class Lang(StrEnum):
    zh = "zh"
    en = "en"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    svg = "svg"
    both = "both"


# Roman numerals as typed on Chinese keyboards (Ⅳ) and plain digits are accepted too.
_LEVEL_ALIASES = {"Ⅳ": "IV", "Ⅲ": "III", "Ⅱ": "II", "Ⅰ": "I", "4": "IV", "3": "III", "2": "II", "1": "I"}
_RICH_COLOURS = {"blue": "blue", "yellow": "yellow", "orange": "dark_orange", "red": "red"}

_WORDS = {
    "zh": {"category": "类别", "version": "版本", "prefix": "编号前缀", "level": "响应级别", "active": "启动",
           "default": "默认", "steps": "步", "gate": "关卡", "human": "人工", "action": "自动",
           "deadline": "时限", "depends": "依赖", "only_if": "仅当", "escalate": "超时升级", "from_level": "级起启动",
           "inactive": "未启动", "no_steps": "（无步骤）", "hidden": "另有 {n} 步在本级别不启动",
           "ends_stage": "完成即结束本阶段", "no_deadline": "无时限", "inputs": "读取"},
    "en": {"category": "category", "version": "version", "prefix": "code prefix", "level": "level",
           "active": "active", "default": "default", "steps": "steps", "gate": "gate", "human": "human",
           "action": "action", "deadline": "deadline", "depends": "depends on", "only_if": "only if",
           "escalate": "escalates to", "from_level": "and above", "inactive": "inactive", "no_steps": "(no steps)",
           "hidden": "{n} more step(s) inactive at this level", "ends_stage": "completing it ends the stage",
           "no_deadline": "no deadline", "inputs": "reads"},
}

ACTIVE_MARK = "●"
INACTIVE_MARK = "○"


def format_duration(value: timedelta) -> str:
    """A short human reading of a deadline: `30 min`, `2 h`, `1 h 30 min`, `3 d`, `1 d 12 h`."""
    seconds = round(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n} {unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")) if n]
    return " ".join(parts) or "0 s"


def parse_level(text: str) -> str | None:
    """`II`, `ii`, `Ⅱ` or `2` -> `II`; None when it is not a response level."""
    value = text.strip()
    value = _LEVEL_ALIASES.get(value, value.upper())
    return value if value in LEVELS else None


def known_plans() -> list[str]:
    return sorted(p.stem for p in PLAN_DIR.glob("*.yaml") if p.name != REGISTRY_FILE)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err_console().print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


def load_one(plan_type: str) -> tuple[IncidentType, DepartmentRegistry | None]:
    """The plan named `plan_type` (a shipped plan's key, or a path to a plan file), validated."""
    candidate = Path(plan_type)
    if plan_type.endswith((".yaml", ".yml")) or candidate.is_file():
        path = candidate
        if not path.is_file():
            raise _fail(f"no such plan file: {plan_type}")
    else:
        path = PLAN_DIR / f"{plan_type}.yaml"
        if not path.is_file() or plan_type == Path(REGISTRY_FILE).stem:
            raise _fail(f"unknown plan '{plan_type}'; known plans: {', '.join(known_plans()) or '(none)'}")
    result = check_paths([path])
    if result.problems:
        err = _err_console()
        for problem in result.problems:
            err.print(str(problem), markup=False, soft_wrap=True)
        raise _fail(f"{path.name} has {len(result.problems)} problem(s); fix them first (baton defs check)", 1)
    plan = next(iter(result.plans.values()))
    return plan, result.registry


def _level_option(plan: IncidentType, level: str | None) -> str:
    if level is None:
        return plan.default_level
    parsed = parse_level(level)
    if parsed is None:
        raise _fail(f"unknown level '{level}'; use one of {', '.join(LEVELS)} (IV least severe, I most severe)")
    return parsed


# --------------------------------------------------------------------------------------------- check


@app.command("check")
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Plan files or folders (default: the shipped plans).")
    ] = None,
) -> None:
    """Validate plans; print every problem as file:line path: message and exit non-zero if any."""
    result = check_paths(paths or None)
    err = _err_console()
    for problem in result.problems:
        err.print(str(problem), markup=False, soft_wrap=True)
    if result.problems:
        err.print(f"[red]{len(result.problems)} problem(s)[/red] in {len(result.files)} file(s)")
        raise typer.Exit(1)
    departments = len(result.registry.departments) if result.registry else 0
    steps = sum(len(plan.steps()) for plan in result.plans.values())
    _console().print(f"[green]OK[/green] {len(result.plans)} plan(s), {steps} steps, {departments} departments")


# --------------------------------------------------------------------------------------------- show


def _department_name(registry: DepartmentRegistry | None, key: str, lang: str) -> str:
    dept = registry.department(key) if registry else None
    return dept.name.get(lang) if dept else key


def _escalation(registry: DepartmentRegistry | None, target: str, lang: str) -> str:
    if target.startswith("role:") and registry is not None:
        role = registry.role(target[5:])
        return role.name.get(lang) if role else target
    if target == "supervisor":
        return "上级部门" if lang == "zh" else "supervisor"
    return _department_name(registry, target, lang)


def step_label(step: Step, level: str, gate: bool, registry: DepartmentRegistry | None, lang: str) -> Text:
    """Two or more lines: marker, key and title; then kind, department, deadline and the rest."""
    words = _WORDS[lang]
    active = step.active_at(level)
    label = Text()
    if not active:
        label.append(f"{INACTIVE_MARK} {step.key}", style="dim")
        label.append(f"  {step.title.get(lang)}", style="dim")
        label.append(f"  [{words['inactive']}: {step.min_level} {words['from_level']}]", style="dim italic")
        return label
    label.append(f"{ACTIVE_MARK} ", style="bold green")
    label.append(step.key, style="bold")
    label.append(f"  {step.title.get(lang)}")
    if gate:
        label.append(f"  [{words['gate']}]", style="bold red")
    details: list[tuple[str, str]] = []
    if step.kind is StepKind.action:
        details.append((f"{words['action']}: {step.action}", "cyan"))
    else:
        details.append((words["human"], "magenta"))
    details.append((_department_name(registry, step.department, lang), ""))
    deadline = step.deadline_for(level)
    if deadline is not None:
        details.append((f"{words['deadline']} {format_duration(deadline)}", "yellow"))
    elif step.kind is StepKind.human:
        details.append((words["no_deadline"], "red"))
    if step.escalate_to:
        details.append((f"{words['escalate']} {_escalation(registry, step.escalate_to, lang)}", "dim"))
    label.append("\n  ")
    for i, (text, style) in enumerate(details):
        if i:
            label.append(" · ", style="dim")
        label.append(text, style=style)
    if step.min_level != "IV":
        label.append(f" · ≥{step.min_level}", style="dim")
    if step.depends_on:
        label.append(f"\n  {words['depends']}: ", style="dim")
        label.append(", ".join(step.depends_on), style="blue")
    cond = graph.condition_text(step)
    if cond is not None:
        label.append(f"\n  {words['only_if']}: ", style="dim")
        label.append(cond, style="italic")
    if gate:
        label.append(f"\n  {words['gate']}: {words['ends_stage']}", style="red")
    return label


def plan_tree(
    plan: IncidentType, level: str, registry: DepartmentRegistry | None, lang: str = "zh", active_only: bool = False
) -> Tree:
    """The plan at `level` as a rich Tree: header, then each stage with its steps."""
    words = _WORDS[lang]
    colour = _RICH_COLOURS[LEVEL_COLOURS[level]]
    active_total = sum(1 for _, s in plan.steps() if s.active_at(level))
    header = Text()
    header.append(plan.name.zh, style="bold")
    header.append(f"  {plan.name.en}", style="bold" if lang == "en" else "")
    header.append(f"  ({plan.key})", style="dim")
    header.append(f"\n{words['category']}: {plan.category.value} · {words['version']}: {plan.version} · "
                  f"{words['prefix']}: {plan.code_prefix}")
    header.append(f"\n{words['level']}: ")
    header.append(f"{level} {LEVEL_NAMES[level][lang]}", style=f"bold {colour}")
    if level == plan.default_level:
        header.append(f" ({words['default']})", style="dim")
    header.append(f" · {words['active']}: {active_total}/{len(plan.steps())} {words['steps']}")
    tree = Tree(header, guide_style="dim")
    for stage in STAGES:
        stage_def = plan.stages.get(stage)
        active = [s for s in stage_def.steps if s.active_at(level)]
        stage_label = Text()
        name = STAGE_NAMES[stage]
        stage_label.append(name[lang], style="bold underline")
        if lang == "zh":
            stage_label.append(f" {name['en']}", style="dim")
        stage_label.append(f"  {words['active']} {len(active)}/{len(stage_def.steps)}", style="dim")
        if stage_def.gate:
            stage_label.append(f" · {words['gate']}: {stage_def.gate}", style="red")
        branch = tree.add(stage_label)
        if not stage_def.steps:
            branch.add(Text(words["no_steps"], style="dim"))
        for step in stage_def.steps:
            if active_only and not step.active_at(level):
                continue
            branch.add(step_label(step, level, stage_def.gate == step.key, registry, lang))
        hidden = len(stage_def.steps) - len(active)
        if active_only and hidden:
            branch.add(Text(words["hidden"].format(n=hidden), style="dim italic"))
    return tree


@app.command("show")
def show(
    plan_type: Annotated[str, typer.Argument(metavar="TYPE", help="Plan key (e.g. flood) or a plan file.")],
    level: Annotated[
        str | None, typer.Option("--level", "-l", help="Response level IV, III, II or I (default: the plan's).")
    ] = None,
    lang: Annotated[Lang, typer.Option("--lang", help="Language of titles and names.")] = Lang.zh,
    active_only: Annotated[
        bool, typer.Option("--active-only", help="Leave out steps that do not start at this level.")
    ] = False,
) -> None:
    """Show a plan as a tree: stages, and for each step whether it starts at the level, who does it and by when."""
    plan, registry = load_one(plan_type)
    chosen = _level_option(plan, level)
    _console().print(plan_tree(plan, chosen, registry, lang.value, active_only))


# --------------------------------------------------------------------------------------------- graph


@app.command("graph")
def graph_command(
    plan_type: Annotated[str, typer.Argument(metavar="TYPE", help="Plan key (e.g. flood) or a plan file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the SVG file.")] = Path("."),
    fmt: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="mermaid: print it; svg: write TYPE.svg; both.")
    ] = GraphFormat.both,
    lang: Annotated[Lang, typer.Option("--lang", help="Language of titles.")] = Lang.zh,
) -> None:
    """Draw the step graph: Mermaid text on stdout and/or an SVG file (OUT/TYPE.svg)."""
    plan, registry = load_one(plan_type)
    if fmt in (GraphFormat.mermaid, GraphFormat.both):
        typer.echo(graph.mermaid(plan, lang.value), nl=False)
    if fmt in (GraphFormat.svg, GraphFormat.both):
        target = out / f"{plan.key}.svg"
        try:
            out.mkdir(parents=True, exist_ok=True)
            target.write_text(graph.svg(plan, lang.value, registry), encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {target}: {exc.strerror or exc}", 1) from None
        _err_console().print(f"wrote {target}", markup=False, soft_wrap=True)
