"""Property tests: random valid step graphs are accepted; the same graphs with a cycle are rejected.

Plans are built as plain dicts, dumped with `yaml.safe_dump` and validated with `parse_plan` against the shipped
department registry, so the whole path (YAML, line map, pydantic shape, meaning checks) is exercised.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from process_defs import graph
from process_defs.cli import format_duration
from process_defs.schema import LEVELS, STAGES, DepartmentKind, level_rank, parse_duration
from process_defs.validation import PLAN_DIR, REGISTRY_FILE, load_registry, parse_plan

REGISTRY, _problems = load_registry(PLAN_DIR / REGISTRY_FILE)
assert REGISTRY is not None, _problems
# The desks a step may go to: a headquarters (防汛抗旱指挥部 …) works through its office, never as a desk.
DEPARTMENTS = [d.key for d in REGISTRY.departments if d.kind is not DepartmentKind.headquarters]
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Plan = dict[str, Any]


def _minutes(total: int) -> str:
    hours, minutes = divmod(total, 60)
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A valid plan: steps s0, s1, … over the four stages, each depending only on earlier steps of its own or an
    earlier stage (so the graph is acyclic), with random kinds, levels, tightening deadlines, gates and
    conditions on ancestors."""
    sizes = [draw(st.integers(0, 5)) for _ in STAGES[:-1]] + [draw(st.integers(0, 3))]
    stages: dict[str, dict[str, Any]] = {}
    steps_so_far: list[tuple[str, dict[str, Any]]] = []  # (stage, step) in plan order
    ancestors: dict[str, set[str]] = {}
    min_levels: dict[str, str] = {}
    index = 0
    for stage, size in zip(STAGES, sizes, strict=True):
        stage_steps: list[dict[str, Any]] = []
        for _ in range(size):
            key = f"s{index}"
            index += 1
            step: dict[str, Any] = {
                "key": key,
                "title": {"zh": f"步骤{index}", "en": f"Step {index}"},
                "department": draw(st.sampled_from(DEPARTMENTS)),
            }
            earlier = [s["key"] for _, s in steps_so_far]
            deps = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
            if deps:
                step["depends_on"] = deps
            ancestors[key] = set(deps).union(*(ancestors[d] for d in deps)) if deps else set()
            level = draw(st.sampled_from(LEVELS))
            when: dict[str, Any] = {}
            if level != "IV":
                when["min_level"] = level
            # A condition on an ancestor (or an earlier stage's step) that has a number field.
            readable = [s for st_name, s in steps_so_far if s.get("form")
                        and (s["key"] in ancestors[key] or STAGES.index(st_name) < STAGES.index(stage))]
            if readable and bool(draw(st.booleans())):
                source = draw(st.sampled_from(readable))
                when["condition"] = {"step": source["key"], "field": "count",
                                     "op": draw(st.sampled_from(["gt", "ge", "eq", "truthy"])), "value": 0}
                if level_rank(min_levels[source["key"]]) > level_rank(level):
                    level = min_levels[source["key"]]
                    when["min_level"] = level
                step["inputs"] = [f"{source['key']}.count"]
                # An input must be a field the step's department may read (`reaches`).
                source["share"] = {"with": "all", "classification": "internal"}
            min_levels[key] = level
            if when:
                step["when"] = when
            if draw(st.integers(0, 3)) == 0:
                step["kind"] = "action"
                step["action"] = "notify_department"
                step["params"] = {"message": {"zh": "请注意。", "en": "Take note."}}
            else:
                step["kind"] = "human"
                levels = sorted(draw(st.sets(st.sampled_from(LEVELS), min_size=1)), key=level_rank)
                if level_rank(levels[0]) > level_rank(level):
                    levels[0] = level
                durations = sorted(draw(st.lists(st.integers(1, 60 * 72), min_size=len(levels),
                                                 max_size=len(levels))), reverse=True)
                step["deadline"] = {lv: _minutes(d) for lv, d in zip(levels, durations, strict=True)}
                if draw(st.booleans()):
                    step["form"] = [{"key": "count", "label": {"zh": "数量", "en": "Count"}, "type": "number"}]
                if draw(st.booleans()):
                    step["escalate_to"] = "role:duty_leader"
            stage_steps.append(step)
            steps_so_far.append((stage, step))
        stage_def: dict[str, Any] = {"steps": stage_steps}
        candidates = [s["key"] for s in stage_steps if "when" not in s]
        if candidates and bool(draw(st.booleans())):
            stage_def["gate"] = draw(st.sampled_from(candidates))
        stages[stage] = stage_def
    stages["learning"]["steps"].append({
        "key": "review", "title": {"zh": "复盘", "en": "Review"}, "department": "emergency_office",
        "kind": "human", "after_action": True, "deadline": "P7D",
    })
    return {
        "key": "random_plan",
        "name": {"zh": "随机预案", "en": "Random plan"},
        "category": draw(st.sampled_from(["natural_disaster", "accident", "public_health", "social_security"])),
        "version": draw(st.integers(1, 9)),
        "description": {"zh": "随机生成。", "en": "Generated."},
        "default_level": draw(st.sampled_from(LEVELS)),
        "code_prefix": "RND",
        "stages": stages,
    }


def dump(plan: Plan) -> str:
    return yaml.safe_dump(plan, allow_unicode=True, sort_keys=False)


def all_steps(plan: Plan) -> list[tuple[str, dict[str, Any]]]:
    return [(stage, step) for stage in STAGES for step in plan["stages"][stage]["steps"]]


def same_stage_ancestors(plan: Plan) -> dict[str, set[str]]:
    """step key -> the steps it waits for, directly or not, along dependencies inside its own stage."""
    out: dict[str, set[str]] = {}
    for stage in STAGES:
        steps = {s["key"]: s for s in plan["stages"][stage]["steps"]}
        for key, step in steps.items():  # plan order: dependencies come first
            deps = [d for d in step.get("depends_on", []) if d in steps]
            out[key] = set(deps).union(*(out[d] for d in deps)) if deps else set()
    return out


@PROFILE
@given(plans())
def test_random_acyclic_plans_are_accepted(plan: Plan) -> None:
    parsed, problems = parse_plan(dump(plan), "random_plan.yaml", REGISTRY)
    assert [str(p) for p in problems] == []
    assert parsed is not None
    assert [s.key for _, s in parsed.steps()] == [s["key"] for _, s in all_steps(plan)]
    for stage, step in all_steps(plan):
        assert parsed.stage_of(step["key"]) == stage
        assert parsed.step(step["key"]).depends_on == step.get("depends_on", [])


@st.composite
def plans_with_a_cycle(draw: st.DrawFn) -> tuple[Plan, str, str]:
    """A valid plan plus an edge `upstream -> downstream` where downstream already waits for upstream."""
    plan = draw(plans())
    ancestors = same_stage_ancestors(plan)
    pairs = sorted((up, down) for down, ups in ancestors.items() for up in ups)
    if not pairs:  # make one: the second step of a stage waits for the first
        stage = draw(st.sampled_from(STAGES[:-1]))
        steps = plan["stages"][stage]["steps"]
        for key in ("c_first", "c_second"):
            steps.append({"key": key, "title": {"zh": "环", "en": "Loop"}, "department": "emergency_office",
                          "kind": "human", "deadline": "PT1H"})
        steps[-1]["depends_on"] = ["c_first"]
        pairs = [("c_first", "c_second")]
    upstream, downstream = draw(st.sampled_from(pairs))
    return plan, upstream, downstream


@PROFILE
@given(plans_with_a_cycle())
def test_the_same_plans_with_a_cycle_are_rejected(case: tuple[Plan, str, str]) -> None:
    plan, upstream, downstream = case
    assert parse_plan(dump(plan), "random_plan.yaml", REGISTRY)[1] == []  # valid before the extra edge
    step = next(s for _, s in all_steps(plan) if s["key"] == upstream)
    step["depends_on"] = [*step.get("depends_on", []), downstream]
    parsed, problems = parse_plan(dump(plan), "random_plan.yaml", REGISTRY)
    assert parsed is None
    cycles = [p for p in problems if "dependency cycle" in p.message]
    assert cycles, [str(p) for p in problems]
    assert len(cycles) == len(problems), [str(p) for p in problems]
    # Each reported cycle is a real one: every arrow is a dependency, and it ends where it starts.
    deps = {s["key"]: set(s.get("depends_on", [])) for _, s in all_steps(plan)}
    for problem in cycles:
        chain = problem.message.removeprefix("dependency cycle: ").split(" -> ")
        assert chain[0] == chain[-1] and len(chain) >= 3
        assert all(b in deps[a] for a, b in itertools.pairwise(chain)), problem.message
        assert re.fullmatch(r"stages\.\w+\.steps\[\d+\]\.depends_on", problem.path)


@PROFILE
@given(plans())
def test_graphs_of_random_plans(plan: Plan) -> None:
    parsed, _ = parse_plan(dump(plan), "random_plan.yaml", REGISTRY)
    assert parsed is not None
    root = ET.fromstring(graph.svg(parsed, "zh", REGISTRY).encode("utf-8"))
    keys = {g.get("data-key") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("data-key")}
    assert keys == {s.key for _, s in parsed.steps()}
    lay = graph.layout(parsed)
    boxes = list(lay.boxes.values())
    for i, a in enumerate(boxes):  # no two boxes overlap
        for b in boxes[i + 1:]:
            assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y, (a, b)
        assert a.x >= 0 and a.x + a.w <= lay.width and a.y >= 0 and a.y + a.h <= lay.height
    for _, step in parsed.steps():
        for dep in step.depends_on:
            assert lay.boxes[dep].x < lay.boxes[step.key].x
    mermaid = graph.mermaid(parsed)
    assert mermaid.count(" --> ") == sum(len(s.depends_on) for _, s in parsed.steps())


@settings(max_examples=60)
@given(st.integers(1, 10**7))
def test_format_duration_reads_back(seconds: int) -> None:
    text = format_duration(timedelta(seconds=seconds))
    units = {"d": "D", "h": "H", "min": "M", "s": "S"}
    parts = dict((unit, int(n)) for n, unit in re.findall(r"(\d+) (d|h|min|s)", text))
    iso = "P" + (f"{parts['d']}D" if "d" in parts else "")
    time = "".join(f"{parts[u]}{units[u]}" for u in ("h", "min", "s") if u in parts)
    assert parse_duration(iso + ("T" + time if time else "")) == timedelta(seconds=seconds)
