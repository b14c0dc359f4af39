"""`baton defs check|show|graph`, run through the real `baton` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from process_defs import graph
from process_defs.cli import format_duration, parse_level
from process_defs.schema import STAGES, IncidentType
from process_defs.signals import SIGNALS_FILE
from process_defs.validation import PLAN_DIR, REGISTRY_FILE, check_paths, load_registry, parse_plan

BROKEN = Path(__file__).resolve().parent / "broken_plans"
SHIPPED = sorted(p.stem for p in PLAN_DIR.glob("*.yaml") if p.name not in (REGISTRY_FILE, SIGNALS_FILE))
SVG = "{http://www.w3.org/2000/svg}"
# Wide enough that rich never wraps a line of the tree.
runner = CliRunner(env={"COLUMNS": "220", "NO_COLOR": "1"})


def baton(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def shipped_plan(key: str) -> IncidentType:
    return check_paths([PLAN_DIR / f"{key}.yaml"]).plans[key]


# ------------------------------------------------------------------------------------------- check


def test_check_passes_on_the_shipped_plans() -> None:
    code, out, err = baton("defs", "check")
    assert code == 0, err
    match = re.search(r"OK (\d+) plan\(s\), (\d+) steps, (\d+) departments", out)
    assert match is not None, out
    assert int(match[1]) == len(SHIPPED)


def test_check_fails_with_the_precise_message() -> None:
    code, out, err = baton("defs", "check", str(BROKEN / "unknown_dependency.yaml"))
    assert code == 1
    assert "unknown_dependency.yaml:40 stages.response.steps[1].depends_on[1]: unknown step 'evacuate'\n" in err
    assert "1 problem(s)" in err
    assert "OK" not in out


def test_check_prints_every_problem_on_one_line_each() -> None:
    code, _, err = baton("defs", "check", str(BROKEN / "three_problems.yaml"), str(BROKEN / "malformed_yaml.yaml"))
    assert code == 1
    lines = [line for line in err.splitlines() if ".yaml:" in line]
    assert len(lines) == 4
    assert lines[0].startswith("three_problems.yaml:38 ")
    assert lines[-1].startswith("malformed_yaml.yaml:38: malformed YAML")
    assert "3 problem(s)" not in err and "4 problem(s)" in err


def test_check_of_a_missing_file() -> None:
    code, _, err = baton("defs", "check", "no/such/plan.yaml")
    assert code == 1
    assert "plan.yaml:1: no such file" in err


# ------------------------------------------------------------------------------------------- show

_GUIDES = re.compile(r"^[\s│├└─┃┣┗━╰╭]*")


def parse_show(output: str) -> tuple[dict[str, timedelta | None], set[str]]:
    """From `defs show` output: active step key -> its deadline (None for none), and the inactive step keys."""
    active: dict[str, timedelta | None] = {}
    inactive: set[str] = set()
    current: str | None = None
    for raw in output.splitlines():
        line = _GUIDES.sub("", raw)
        if line.startswith("● "):
            current = line.split()[1]
            active[current] = None
        elif line.startswith("○ "):
            inactive.add(line.split()[1])
            current = None
        elif current is not None and (found := re.search(r"(?:时限|deadline) ((?:\d+ (?:d|h|min|s) ?)+)", line)):
            active[current] = parse_human_duration(found[1])
    return active, inactive


def parse_human_duration(text: str) -> timedelta:
    units = {"d": 86400, "h": 3600, "min": 60, "s": 1}
    return timedelta(seconds=sum(int(n) * units[u] for n, u in re.findall(r"(\d+) (d|h|min|s)", text)))


def test_show_at_a_higher_level_lists_more_steps_with_shorter_deadlines() -> None:
    plan = shipped_plan("flood")
    code_ii, out_ii, err_ii = baton("defs", "show", "flood", "--level", "II")
    code_iv, out_iv, err_iv = baton("defs", "show", "flood", "--level", "IV")
    assert code_ii == 0 and code_iv == 0, err_ii + err_iv
    active_ii, inactive_ii = parse_show(out_ii)
    active_iv, inactive_iv = parse_show(out_iv)

    # Every step is shown once, active or dimmed, and the split is the plan's own.
    all_keys = {step.key for _, step in plan.steps()}
    assert set(active_ii) | inactive_ii == all_keys == set(active_iv) | inactive_iv
    assert set(active_ii) == {s.key for _, s in plan.steps() if s.active_at("II")}
    assert set(active_iv) == {s.key for _, s in plan.steps() if s.active_at("IV")}

    # More steps at II, and none of the level IV steps drops out.
    assert len(active_ii) > len(active_iv)
    assert set(active_iv) < set(active_ii)

    # The printed deadlines are the plan's, and every one is at least as tight at II, some strictly.
    for key, deadline in active_ii.items():
        assert deadline == plan.step(key).deadline_for("II"), key
    for key, deadline in active_iv.items():
        assert deadline == plan.step(key).deadline_for("IV"), key
    both = [k for k in active_iv if active_iv[k] is not None]
    assert both
    assert all(active_ii[k] <= active_iv[k] for k in both)  # type: ignore[operator]
    assert sum(active_ii[k] < active_iv[k] for k in both) >= len(both) // 2  # type: ignore[operator]
    assert "30 min" in out_ii and "4 h" in out_iv


def test_show_defaults_to_the_plan_default_level() -> None:
    plan = shipped_plan("flood")
    _, default_out, _ = baton("defs", "show", "flood")
    _, explicit_out, _ = baton("defs", "show", "flood", "--level", plan.default_level)
    assert default_out == explicit_out
    assert f"{plan.default_level} " in default_out.splitlines()[2]


def test_show_header_and_stages() -> None:
    plan = shipped_plan("flood")
    code, out, _ = baton("defs", "show", "flood", "-l", "I")
    assert code == 0
    head = "\n".join(out.splitlines()[:3])
    for part in (plan.name.zh, plan.name.en, plan.category.value, plan.code_prefix, f"{plan.version}"):
        assert part in head
    for stage in ("预警", "响应", "恢复", "总结"):
        assert stage in out
    assert "市气象局" in out  # department names, not keys
    assert "仅当: flood_risk_assessment.hot_spots > 0" in out
    assert "关卡" in out and "lift_warning" in out
    active, inactive = parse_show(out)
    assert inactive == set() and len(active) == len(plan.steps())


def test_show_in_english_and_active_only() -> None:
    code, out, _ = baton("defs", "show", "flood", "--level", "iv", "--lang", "en", "--active-only")
    assert code == 0
    assert "Issue rainstorm forecast and rainfall assessment" in out
    assert "Meteorological Bureau" in out
    assert "deadline 1 h" in out
    assert "○" not in out
    assert "2 more step(s) inactive at this level" in out


@pytest.mark.parametrize("spelling", ["II", "ii", "Ⅱ", "2"])
def test_level_spellings(spelling: str) -> None:
    assert parse_level(spelling) == "II"
    code, out, _ = baton("defs", "show", "flood", "--level", spelling)
    assert code == 0 and "重大" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["defs", "show", "volcano"], "unknown plan 'volcano'; known plans: "),
        (["defs", "show", "departments"], "unknown plan 'departments'"),
        (["defs", "show", "flood", "--level", "V"], "unknown level 'V'; use one of IV, III, II, I"),
        (["defs", "show", "flood", "--level", ""], "unknown level ''"),
        (["defs", "graph", "volcano"], "unknown plan 'volcano'"),
        (["defs", "show", "nowhere/plan.yaml"], "no such plan file: nowhere/plan.yaml"),
    ],
)
def test_show_and_graph_errors_are_clean(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # a clean exit, not a traceback
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_show_refuses_a_broken_plan_with_its_problems() -> None:
    code, out, err = baton("defs", "show", str(BROKEN / "zero_deadline.yaml"))
    assert code == 1
    assert "zero_deadline.yaml:43 stages.response.steps[1].deadline: deadline PT0M must be longer than zero" in err
    assert out == ""


def test_show_accepts_a_plan_file() -> None:
    code, out, _ = baton("defs", "show", str(BROKEN / "duplicate_prefix.yaml"), "--level", "II")
    assert code == 0
    active, inactive = parse_show(out)
    assert set(active) == {"assess", "notify", "act", "review"} and not inactive
    assert active["assess"] == timedelta(minutes=30)


@pytest.mark.parametrize(
    ("value", "text"),
    [(timedelta(minutes=30), "30 min"), (timedelta(hours=2), "2 h"), (timedelta(days=3), "3 d"),
     (timedelta(hours=1, minutes=30), "1 h 30 min"), (timedelta(days=1, hours=12), "1 d 12 h"),
     (timedelta(seconds=45), "45 s"), (timedelta(weeks=2), "14 d")],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_human_duration(text) == value


# ------------------------------------------------------------------------------------------- graph


def svg_texts(root: ET.Element) -> str:
    return "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def test_graph_prints_mermaid_and_writes_svg(tmp_path: Path) -> None:
    plan = shipped_plan("flood")
    code, out, err = baton("defs", "graph", "flood", "--out", str(tmp_path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    for stage in STAGES:
        assert any(line.strip().startswith(f"subgraph stage_{stage}[") for line in lines)
    assert sum(line.strip() == "end" for line in lines) == len(STAGES)
    for _, step in plan.steps():
        assert re.search(rf"^    {step.key}(\[\[|\[|\{{\{{)\"", out, re.M), step.key
        for dep in step.depends_on:
            assert f"  {dep} --> {step.key}\n" in out
    edges = sum(len(step.depends_on) for _, step in plan.steps())
    assert out.count(" --> ") == edges
    actions = [s.key for _, s in plan.steps() if s.kind == "action"]
    assert f"  class {','.join(actions)} action" in out
    assert "  class lift_warning,end_response gate" in out  # the warning gate and the termination
    assert 'lift_warning{{"' in out  # the gate is a hexagon
    assert 'publish_rainstorm_warning[["' in out  # actions are subroutine boxes

    svg_file = tmp_path / "flood.svg"
    assert f"wrote {svg_file}" in err
    root = ET.parse(svg_file).getroot()
    assert root.tag == f"{SVG}svg"
    texts = svg_texts(root)
    groups = {g.get("data-key"): g for g in root.iter(f"{SVG}g") if g.get("data-key")}
    assert set(groups) == {step.key for _, step in plan.steps()}
    for _, step in plan.steps():
        assert step.key in texts
        assert step.title.zh[:4] in texts
    assert "action" in (groups["publish_rainstorm_warning"].get("class") or "").split()
    assert "gate" in (groups["lift_warning"].get("class") or "").split()
    paths = [p for p in root.iter(f"{SVG}path") if p.get("data-from")]
    assert len(paths) == edges
    assert {(p.get("data-from"), p.get("data-to")) for p in paths} == {
        (dep, step.key) for _, step in plan.steps() for dep in step.depends_on}


def test_graph_formats(tmp_path: Path) -> None:
    code, out, _ = baton("defs", "graph", "flood", "--format", "mermaid", "--out", str(tmp_path))
    assert code == 0 and out.startswith("flowchart LR")
    assert list(tmp_path.iterdir()) == []
    code, out, _ = baton("defs", "graph", "flood", "-f", "svg", "-o", str(tmp_path / "new" / "dir"), "--lang", "en")
    assert code == 0 and out == ""
    root = ET.parse(tmp_path / "new" / "dir" / "flood.svg").getroot()
    assert "Issue rainstorm forecast" in svg_texts(root)


def test_graph_defaults_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = baton("defs", "graph", "flood")
    assert code == 0
    assert (tmp_path / "flood.svg").is_file()


@pytest.mark.parametrize("key", SHIPPED)
def test_graph_of_every_shipped_plan_is_well_formed(key: str) -> None:
    plan = shipped_plan(key)
    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    root = ET.fromstring(graph.svg(plan, "zh", registry).encode("utf-8"))
    texts = svg_texts(root)
    mermaid = graph.mermaid(plan)
    lay = graph.layout(plan)
    for _, step in plan.steps():
        assert step.key in texts and step.key in mermaid
        for dep in step.depends_on:  # arrows point right
            assert lay.boxes[dep].x < lay.boxes[step.key].x
    assert lay.width > 0 and lay.height > 0


def test_graph_escapes_markup_in_titles() -> None:
    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    text = (BROKEN / "duplicate_prefix.yaml").read_text(encoding="utf-8")
    nasty = 'A <b>&amp; "quoted" </svg> #1'
    text = text.replace("title: {zh: 研判, en: Assess}", f"title: {{zh: '{nasty}', en: 'x'}}")
    plan, problems = parse_plan(text, "duplicate_prefix.yaml", registry)
    assert plan is not None, problems
    root = ET.fromstring(graph.svg(plan, "zh", registry).encode("utf-8"))
    box = next(g for g in root.iter(f"{SVG}g") if g.get("data-key") == "assess")
    tooltip = box.find(f"{SVG}title")
    assert tooltip is not None and nasty in (tooltip.text or "")
    drawn = "".join("".join(t.itertext()) for t in box.iter(f"{SVG}text") if t.get("class") == "step-title")
    assert drawn == nasty  # split over two lines, nothing lost or doubled
    mermaid = graph.mermaid(plan)
    line = next(line for line in mermaid.splitlines() if line.strip().startswith("assess{{"))
    assert line.count('"') == 2 and "<b>" not in line and "#60;b#62;" in line


@pytest.mark.slow  # starts processes of its own
def test_the_installed_baton_command() -> None:
    exe = Path(sys.executable).with_name("baton")
    if not exe.exists():
        pytest.skip("the baton script is not installed next to this Python")
    env = {**os.environ, "COLUMNS": "200"}
    ok = subprocess.run([str(exe), "defs", "check"], capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([str(exe), "defs", "show", "flood", "--level", "X"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2
    assert "unknown level 'X'" in bad.stderr and "Traceback" not in bad.stderr
