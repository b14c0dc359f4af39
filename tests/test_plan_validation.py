"""Plan validation: the shipped plans pass, and each broken plan is rejected with the right file, line and message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from process_defs.schema import STAGES
from process_defs.signals import SIGNALS_FILE
from process_defs.validation import (
    PLAN_DIR,
    REGISTRY_FILE,
    Problem,
    check_paths,
    format_path,
    load_plan,
    load_registry,
    parse_plan,
)

BROKEN = Path(__file__).resolve().parent / "broken_plans"
SHIPPED = sorted(p for p in PLAN_DIR.glob("*.yaml") if p.name not in (REGISTRY_FILE, SIGNALS_FILE))

# (file in tests/broken_plans, what `check_paths([file])` must report: its only problem contains this text).
# Lines were checked by hand against the files; the comment at the top of each file says what is broken.
BROKEN_CASES: list[tuple[str, str]] = [
    ("malformed_yaml.yaml",
     "malformed_yaml.yaml:38: malformed YAML: expected ',' or '}', but got ':' "
     "(while parsing a flow mapping that starts on line 37)"),
    ("bad_indentation.yaml", "bad_indentation.yaml:31: malformed YAML: mapping values are not allowed here"),
    ("duplicate_yaml_key.yaml",
     "duplicate_yaml_key.yaml:32 stages.response.steps[0].kind: duplicate key 'kind' (first on line 31)"),
    ("unknown_key.yaml", "unknown_key.yaml:39 stages.response.steps[1].owner: unknown key 'owner'"),
    ("missing_required_key.yaml",
     "missing_required_key.yaml:36 stages.response.steps[1].department: required key 'department' is missing"),
    ("missing_english.yaml", "missing_english.yaml:14 stages.warning.steps[0].title.en: required key 'en' is missing"),
    ("duplicate_step_key.yaml",
     "duplicate_step_key.yaml:36 stages.response.steps[1].key: duplicate step key 'notify' "
     "(first at stages.response.steps[0])"),
    ("unknown_department.yaml",
     "unknown_department.yaml:38 stages.response.steps[1].department: unknown department 'fire_brigade'"),
    ("unknown_dependency.yaml",
     "unknown_dependency.yaml:40 stages.response.steps[1].depends_on[1]: unknown step 'evacuate'"),
    ("flood_unknown_dep.yaml",
     "flood_unknown_dep.yaml:169 stages.response.steps[1].depends_on[1]: unknown step 'evacuate'"),
    ("later_stage_dependency.yaml",
     "later_stage_dependency.yaml:17 stages.warning.steps[0].depends_on[0]: step 'review' is in the later stage "
     "'learning'"),
    ("dependency_cycle.yaml",
     "dependency_cycle.yaml:33 stages.response.steps[0].depends_on: dependency cycle: notify -> act -> notify"),
    ("self_dependency.yaml",
     "self_dependency.yaml:40 stages.response.steps[1].depends_on[0]: a step cannot depend on itself"),
    ("unknown_action.yaml",
     "unknown_action.yaml:32 stages.response.steps[0].action: unknown action 'send_sms' (known: "
     "compile_situation_summary, notify_department, open_linked_incident, publish_warning)"),
    ("action_params_missing.yaml",
     "action_params_missing.yaml:33 stages.response.steps[0].params.message: required key 'message' is missing"),
    ("action_params_unknown.yaml",
     "action_params_unknown.yaml:35 stages.response.steps[0].params.urgency: unknown key 'urgency'"),
    ("action_target_unknown.yaml",
     "action_target_unknown.yaml:34 stages.response.steps[0].params.target: unknown department 'street_office'"),
    ("human_without_deadline.yaml",
     "human_without_deadline.yaml:36 stages.response.steps[1].deadline: a human step needs a deadline"),
    ("zero_deadline.yaml",
     "zero_deadline.yaml:43 stages.response.steps[1].deadline: deadline PT0M must be longer than zero"),
    ("loosening_deadline.yaml",
     "loosening_deadline.yaml:17 stages.warning.steps[0].deadline.II: deadline PT2H at level II is looser than "
     "PT1H at level IV; deadlines must tighten as the level rises"),
    ("bad_duration.yaml",
     "bad_duration.yaml:43 stages.response.steps[1].deadline: '2 hours' is not an ISO 8601 duration"),
    ("unknown_escalation_target.yaml",
     "unknown_escalation_target.yaml:18 stages.warning.steps[0].escalate_to: unknown escalation target 'mayor'"),
    ("unknown_role.yaml", "unknown_role.yaml:44 stages.response.steps[1].escalate_to: unknown role 'night_leader'"),
    ("no_supervisor.yaml",
     "no_supervisor.yaml:18 stages.warning.steps[0].escalate_to: department 'city_government' has no supervisor "
     "to escalate to"),
    ("condition_unknown_step.yaml",
     "condition_unknown_step.yaml:41 stages.response.steps[1].when.condition.step: unknown step 'asses'"),
    ("condition_unknown_field.yaml",
     "condition_unknown_field.yaml:41 stages.response.steps[1].when.condition.field: step 'assess' has no form "
     "field 'level'"),
    ("condition_not_ancestor.yaml",
     "condition_not_ancestor.yaml:33 stages.response.steps[0].when.condition.step: step 'act' is neither an "
     "earlier stage's step nor among this step's dependencies"),
    ("condition_never_true.yaml",
     "condition_never_true.yaml:41 stages.response.steps[1].when.condition: the step can never activate: the "
     "condition 'extreme' is not one of the field's choices (high, low)"),
    ("condition_level_mismatch.yaml",
     "condition_level_mismatch.yaml:41 stages.response.steps[1].when: the condition reads step 'assess', which "
     "only activates from level II"),
    ("inputs_unknown_field.yaml",
     "inputs_unknown_field.yaml:42 stages.response.steps[1].inputs[0]: step 'assess' has no form field 'colour'"),
    ("inputs_unknown_step.yaml",
     "inputs_unknown_step.yaml:42 stages.response.steps[1].inputs[1]: unknown step 'survey'"),
    ("unknown_share_department.yaml",
     "unknown_share_department.yaml:45 stages.response.steps[1].share.with[1]: unknown department 'press'"),
    ("gate_not_in_stage.yaml",
     "gate_not_in_stage.yaml:11 stages.warning.gate: gate step 'act' is not in stage 'warning'"),
    ("gate_unknown_step.yaml", "gate_unknown_step.yaml:11 stages.warning.gate: unknown step 'lift_warning'"),
    ("gate_conditional.yaml",
     "gate_conditional.yaml:27 stages.response.gate: gate step 'act' must activate at every level and without "
     "condition"),
    ("gate_choice_without_outcome.yaml",
     "gate_choice_without_outcome.yaml:25 stages.warning.steps[0].form[0].choices[1]: the gate's choice "
     "'stand_down' has no outcome: say where it leads (next, close, warning, response, recovery, learning)"),
    ("gate_skip_without_reason.yaml",
     "gate_skip_without_reason.yaml:19 stages.warning.steps[0].form: a decision that skips a stage or closes must "
     "say why: add a text field 'reason' to gate 'decide'"),
    ("grading_not_monotonic.yaml",
     "grading_not_monotonic.yaml:17 grading.II.any[0].value: grading is not monotonic: 'count.deaths' ge 3 at level "
     "II is not above ge 10 at level III; thresholds must rise with the level (Ⅰ the most severe)"),
    ("termination_waits_for_repair.yaml",
     "termination_waits_for_repair.yaml:28 stages.response.steps[1].depends_on: ending the response waits for "
     "'repair_mains', a repair step: repair, reconstruction and relief follow the end of the response"),
    ("termination_in_recovery.yaml",
     "termination_in_recovery.yaml:27 stages.recovery.steps[0].terminates: the decision to end the response is the "
     "response stage's gate"),
    ("investigation_hurried.yaml",
     "investigation_hurried.yaml:44 stages.learning.steps[0].deadline.II: deadline P30D at level II is tighter than "
     "P60D at level IV; deadlines must not tighten as the level rises (an investigation step: a bigger event takes "
     "longer to investigate)"),
    ("no_after_action.yaml",
     "no_after_action.yaml:49 stages.learning.steps: the learning stage needs an after-action review step"),
    ("after_action_early.yaml",
     "after_action_early.yaml:40 stages.response.steps[1].after_action: after-action review belongs in the "
     "learning stage"),
    ("stages_out_of_order.yaml",
     "stages_out_of_order.yaml:9 stages: stages must come in the order warning, response, recovery, learning "
     "(found warning, recovery, response, learning)"),
    ("key_mismatch.yaml", "key_mismatch.yaml:2 key: key 'minimal' must equal the file name 'key_mismatch'"),
    ("bad_category.yaml", "bad_category.yaml:4 category: Input should be 'natural_disaster'"),
    ("bad_default_level.yaml", "bad_default_level.yaml:7 default_level: Input should be 'IV', 'III', 'II' or 'I'"),
    ("bad_deadline_level.yaml",
     "bad_deadline_level.yaml:17 stages.warning.steps[0].deadline.2: Input should be 'IV', 'III', 'II' or 'I' "
     "(got '2')"),
    ("bad_min_level.yaml",
     "bad_min_level.yaml:37 stages.response.steps[1].when.min_level: Input should be 'IV', 'III', 'II' or 'I' "
     "(got 2)"),
    ("choice_without_choices.yaml",
     "choice_without_choices.yaml:20 stages.warning.steps[0].form[0].choices: a choice field needs choices"),
    ("bad_date_value.yaml", "bad_date_value.yaml:5 version: bad value '2024-13-45': month must be in 1..12"),
    # Field-level scoping: a step's inputs only name fields its department may read.
    ("inputs_not_shared.yaml",
     "inputs_not_shared.yaml:42 stages.response.steps[1].inputs[0]: department 'fire_rescue' may not read "
     "'assess.severity' (not shared): share the field with it (a form field's own `share`) or drop the input"),
    ("restricted_share_all.yaml",
     "restricted_share_all.yaml:45 stages.response.steps[1].share.with: a restricted share must name the "
     "departments it goes to ('all' opens a restricted value to nobody)"),
    ("field_share_unknown_department.yaml",
     "field_share_unknown_department.yaml:26 stages.warning.steps[0].form[0].share.with[1]: unknown department "
     "'press'"),
]
CASE_IDS = [name.removesuffix(".yaml") for name, _ in BROKEN_CASES]
# Files checked by their own tests below rather than through the table.
SPECIAL_FILES = {"three_problems.yaml", "duplicate_prefix.yaml"}


def problems_of(*paths: Path) -> list[str]:
    return [str(p) for p in check_paths(list(paths)).problems]


# ------------------------------------------------------------------------------------------- shipped plans


def test_shipped_plans_are_present() -> None:
    assert (PLAN_DIR / "flood.yaml") in SHIPPED
    assert (PLAN_DIR / REGISTRY_FILE).is_file()


def test_all_shipped_plans_validate_together() -> None:
    result = check_paths()
    assert [str(p) for p in result.problems] == []
    assert result.registry is not None
    assert sorted(result.plans) == sorted(p.stem for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_each_shipped_plan_validates(path: Path) -> None:
    result = check_paths([path])
    assert [str(p) for p in result.problems] == []
    plan = result.plans[path.stem]
    assert plan.key == path.stem
    assert plan.stages.learning.steps, "the learning stage holds the after-action review"
    assert len({step.key for _, step in plan.steps()}) == len(plan.steps())


def test_shipped_registry_validates() -> None:
    registry, problems = load_registry(PLAN_DIR / REGISTRY_FILE)
    assert problems == []
    assert registry is not None
    assert registry.department("emergency_office") is not None


# ------------------------------------------------------------------------------------------- broken plans


def test_broken_plan_table_is_big_enough() -> None:
    assert len(BROKEN_CASES) >= 25
    assert len({name for name, _ in BROKEN_CASES}) == len(BROKEN_CASES)


def test_every_broken_file_is_in_the_table() -> None:
    on_disk = {p.name for p in BROKEN.glob("*.yaml")}
    assert on_disk == {name for name, _ in BROKEN_CASES} | SPECIAL_FILES
    assert not (BROKEN / REGISTRY_FILE).exists(), "it would become the registry of every broken plan"


@pytest.mark.parametrize(("name", "expected"), BROKEN_CASES, ids=CASE_IDS)
def test_broken_plan_is_rejected_with_file_line_and_message(name: str, expected: str) -> None:
    path = BROKEN / name
    assert path.is_file()
    found = problems_of(path)
    assert len(found) == 1, f"{name} should break exactly one thing, got {found}"
    assert expected in found[0]
    plan, problems = load_plan(path, check_paths([path]).registry)
    assert plan is None
    assert [str(p) for p in problems] == found


@pytest.mark.parametrize(("name", "_expected"), BROKEN_CASES, ids=CASE_IDS)
def test_the_reported_line_holds_what_the_path_names(name: str, _expected: str) -> None:
    """The line of a problem shows the key at the end of its path, or the item (or mapping) that lacks it."""
    (problem,) = check_paths([BROKEN / name]).problems
    line = (BROKEN / name).read_text(encoding="utf-8").splitlines()[problem.line - 1]
    if not problem.path or "missing" in problem.message or "needs" in problem.message:
        return
    last = problem.path.rsplit(".", 1)[-1].split("[")[0]
    assert f"{last}:" in line or line.lstrip().startswith("- ") or f"{last}: " in line, (problem, line)


def test_all_problems_of_a_file_are_reported_at_once() -> None:
    result = check_paths([BROKEN / "three_problems.yaml"])
    assert [str(p) for p in result.problems] == [
        "three_problems.yaml:38 stages.response.steps[1].department: unknown department 'fire_brigade'",
        "three_problems.yaml:40 stages.response.steps[1].depends_on[1]: unknown step 'evacuate'",
        "three_problems.yaml:55 stages.learning.steps[0].deadline: '7 days' is not an ISO 8601 duration such as "
        "PT30M, PT4H or P2D",
    ]
    assert result.plans == {}


def test_problems_of_several_files_are_reported_together() -> None:
    found = problems_of(BROKEN / "unknown_role.yaml", BROKEN / "zero_deadline.yaml", PLAN_DIR / "flood.yaml")
    assert len(found) == 2
    assert found[0].startswith("unknown_role.yaml:44 ")
    assert found[1].startswith("zero_deadline.yaml:43 ")


def test_duplicate_code_prefix_is_reported_at_its_line() -> None:
    alone = check_paths([BROKEN / "duplicate_prefix.yaml"])
    assert alone.problems == [] and "duplicate_prefix" in alone.plans
    found = problems_of(PLAN_DIR / "flood.yaml", BROKEN / "duplicate_prefix.yaml")
    assert found == ["duplicate_prefix.yaml:8 code_prefix: code prefix 'FLD' is already used by flood.yaml"]


def test_a_plan_given_twice_is_checked_once() -> None:
    result = check_paths([PLAN_DIR, PLAN_DIR / "flood.yaml"])
    assert result.problems == []


def test_same_plan_key_in_two_folders(tmp_path: Path) -> None:
    other = tmp_path / "flood.yaml"
    other.write_text((PLAN_DIR / "flood.yaml").read_text(encoding="utf-8").replace("code_prefix: FLD",
                                                                                  "code_prefix: FLDX"),
                     encoding="utf-8")
    found = problems_of(PLAN_DIR / "flood.yaml", other)
    key_line = other.read_text(encoding="utf-8").splitlines().index("key: flood") + 1
    assert len(found) == 1
    assert found[0].startswith(f"flood.yaml:{key_line} key: plan 'flood' is already defined in ")


# ------------------------------------------------------------------------------------------- the registry


def test_broken_registry_beside_a_plan(tmp_path: Path) -> None:
    shutil.copy(BROKEN / "registry" / REGISTRY_FILE, tmp_path / REGISTRY_FILE)
    shutil.copy(PLAN_DIR / "flood.yaml", tmp_path / "flood.yaml")
    expected = ["departments.yaml:15 departments[2].supervisor: unknown department 'fire_department'"]
    by_folder = check_paths([tmp_path])
    assert [str(p) for p in by_folder.problems] == expected
    assert by_folder.registry is None
    # Given only the plan, the registry next to it is still the one used.
    assert problems_of(tmp_path / "flood.yaml") == expected
    # And a registry named among the paths wins over the shipped one.
    assert problems_of(BROKEN / "registry" / REGISTRY_FILE, PLAN_DIR / "flood.yaml") == expected


REGISTRY_HEAD = "version: 1\ndepartments:\n"


def _dept(key: str, supervisor: str | None = None) -> str:
    text = f"  - key: {key}\n    name: {{zh: 部门{key}, en: Department {key}}}\n    kind: government\n"
    return text + (f"    supervisor: {supervisor}\n" if supervisor else "")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_dept("a") + _dept("a"),
         "departments.yaml:6 departments[1].key: duplicate department 'a' (also departments[0])"),
        (_dept("a", "a"), "departments.yaml:6 departments[0].supervisor: a department cannot supervise itself"),
        (_dept("a", "b") + _dept("b", "a"),
         "departments.yaml:6 departments[0].supervisor: supervision cycle: a -> b -> a"),
        (_dept("a") + "roles:\n  - key: r\n    name: {zh: 角色, en: Role}\n    department: nobody\n",
         "departments.yaml:9 roles[0].department: unknown department 'nobody'"),
        (_dept("a").replace("kind: government", "kind: ministry"),
         "departments.yaml:5 departments[0].kind: Input should be"),
    ],
    ids=["duplicate", "self", "cycle", "role", "kind"],
)
def test_registry_problems(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / REGISTRY_FILE
    path.write_text(REGISTRY_HEAD + body, encoding="utf-8")
    registry, problems = load_registry(path)
    assert registry is None
    assert len(problems) == 1, [str(p) for p in problems]
    assert expected in str(problems[0])


# ------------------------------------------------------------------------------------------- never a traceback

FLOOD = (PLAN_DIR / "flood.yaml").read_text(encoding="utf-8")


def flood_line(text: str) -> int:
    """The line of the shipped flood plan that holds `text` (so edits above it do not break these tests)."""
    return next(i for i, line in enumerate(FLOOD.splitlines(), start=1) if text in line)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "flood.yaml:1: the file is empty"),
        ("# only a comment\n", "flood.yaml:1: the file is empty"),
        ("- a\n- b\n", "flood.yaml:1: the file must be a mapping of keys to values"),
        ("key: flood\nname: \x07\n", "flood.yaml:2: malformed YAML: unacceptable character #x0007"),
        ("key: flood\nname: &a [*a]\n", "flood.yaml:2 name[0]: an alias refers to a value that contains it"),
        ("key: flood\n<<: {version: 1}\n", "flood.yaml:2: merge keys ('<<') are not supported"),
        ("key: !!python/name:os.system x\n", "flood.yaml:1 key: bad value 'x': could not determine a constructor"),
        ("key: flood\n? [a, b]\n: 1\n", "flood.yaml:2: mapping keys must be plain words"),
        ("a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
         "flood.yaml:1: the file expands to more than"),
        ("key: flood\n---\nkey: flood\n", "flood.yaml:2: malformed YAML: but found another document"),
        (FLOOD.replace("deadline: P14D", "deadline: P99999999999D"),
         f"flood.yaml:{flood_line('deadline: P14D')} stages.learning.steps[1].deadline: deadline P99999999999D "
         "is too long"),
        (FLOOD.replace("op: gt, value: 0}}", "op: ne, value: zero}}"),
         f"flood.yaml:{flood_line('op: gt, value: 0}}')} stages.response.steps[4].when.condition: the condition "
         "is always true, so it has no "
         "effect: the condition compares a number field with 'zero'"),
    ],
    ids=["empty", "comment", "list", "control-char", "recursive-alias", "merge-key", "python-tag", "list-key",
         "alias-bomb", "two-documents", "huge-duration", "ne-always-true"],
)
def test_odd_input_gives_problems_not_tracebacks(text: str, expected: str) -> None:
    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    plan, problems = parse_plan(text, "flood.yaml", registry)
    assert plan is None
    assert any(expected in str(p) for p in problems), [str(p) for p in problems]


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    latin1 = tmp_path / "latin.yaml"
    latin1.write_bytes("key: caf\xe9\n".encode("latin-1"))
    found = problems_of(latin1, tmp_path / "nowhere.yaml")
    assert found[0].startswith("latin.yaml:1: cannot read the file:")
    assert found[1] == "nowhere.yaml:1: no such file"


def test_problem_formatting() -> None:
    assert format_path(("stages", "warning", "steps", 3, "depends_on", 0)) == "stages.warning.steps[3].depends_on[0]"
    assert str(Problem("a.yaml", 4, "key", "bad")) == "a.yaml:4 key: bad"
    assert str(Problem("a.yaml", 1, "", "empty")) == "a.yaml:1: empty"
    assert list(STAGES) == ["warning", "response", "recovery", "learning"]


@pytest.mark.parametrize(("op", "value"), [("eq", ["a"]), ("ne", {"a": 1}), ("in", [["a"]]), ("eq", 3)])
def test_a_choice_condition_on_an_odd_value_is_a_problem_not_a_crash(op: str, value: object) -> None:
    from process_defs.plan_rules import _value_fits
    from process_defs.schema import FieldType

    why = _value_fits(FieldType.choice, {"a", "b"}, op, value)
    assert why is not None and "is not one of the field's choices (a, b)" in why


# ------------------------------------------------------------------------------------------- field-level scoping


def test_a_fields_own_share_lets_a_step_read_it_and_nothing_else() -> None:
    """The input refused in inputs_not_shared.yaml is accepted once the field is shared with the reading step's
    department; a whole-step input then still needs every field of the step."""
    text = (BROKEN / "inputs_not_shared.yaml").read_text(encoding="utf-8").replace(
        "key: inputs_not_shared", "key: shared_field")
    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    shared = text.replace("              - {value: high, label: {zh: 高, en: High}, outcome: next}\n",
                          "              - {value: high, label: {zh: 高, en: High}, outcome: next}\n"
                          "            share: {with: [fire_rescue], classification: restricted}\n", 1)
    plan, problems = parse_plan(shared, "shared_field.yaml", registry)
    assert problems == [] and plan is not None
    assert plan.step("assess").field_share("severity") is not None
    # An output shared wider than its step (a public figure of a restricted step) reaches every reader it names.
    assert [str(p) for p in parse_plan(shared.replace("inputs: [assess.severity]", "inputs: [assess]"),
                                       "shared_field.yaml", registry)[1]] == []


def test_the_shipped_flood_plan_as_it_was_is_refused_where_it_leaked() -> None:
    """Before field-level scoping, press_release brought evacuation figures (restricted to four other departments)
    to the publicity department, and medical_support read a restricted value shared 'with all' (with nobody)."""
    flood = (PLAN_DIR / "flood.yaml").read_text(encoding="utf-8")
    leaky = (flood.replace("inputs: [drainage_operations, traffic_control.roads_closed, "
                           "evacuate_residents.people_evacuated]",
                           "inputs: [drainage_operations, traffic_control, evacuate_residents]")
             .replace("share: {with: [emergency_office, health_commission], classification: restricted}",
                      "share: {with: all, classification: restricted}"))
    assert leaky != flood
    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    found = [str(p) for p in parse_plan(leaky, "flood.yaml", registry)[1]]
    press = [p for p in found if "department 'publicity' may not read" in p]
    assert any("'evacuate_residents.shelters_open', 'evacuate_residents.shelters_named', "
               "'evacuate_residents.risk_points_cleared' (restricted, shared with "
               "emergency_office, public_security, civil_affairs, transport)" in p for p in press), found
    assert any("'traffic_control.underpasses_closed' (internal, shared with" in p for p in press), found
    assert not any("people_evacuated" in p or "roads_closed" in p for p in press)  # their own share: public
    assert any("department 'health_commission' may not read 'water_rescue.casualties' (restricted, shared with "
               "nobody)" in p for p in found), found
    assert any("a restricted share must name the departments" in p for p in found), found


# ------------------------------------------------------------------------------------ bounds on form fields
FORECAST_FIELDS = """          - key: rainfall_1h
            label: {zh: 预计最大小时雨量, en: Expected peak hourly rainfall}
            type: number
            unit: mm
            min: 0
            max: 500
"""


def _flood_with(old: str, new: str) -> list[str]:
    """The problems of the shipped flood plan with `old` (which it holds) replaced by `new`."""
    flood = (PLAN_DIR / "flood.yaml").read_text(encoding="utf-8")
    assert old in flood
    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    return [str(p) for p in parse_plan(flood.replace(old, new, 1), "flood.yaml", registry)[1]]


def _line_of(text: str) -> int:
    """The line of the shipped flood plan that starts with `text` (stripped)."""
    lines = (PLAN_DIR / "flood.yaml").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().startswith(text))


FORECAST_FIELD_PATH = "stages.warning.steps[0].form[0]"


@pytest.mark.parametrize(("new", "expected"), [
    (FORECAST_FIELDS.replace("min: 0", "min: 600"),
     f"flood.yaml:{{min}} {FORECAST_FIELD_PATH}.min: min 600 is greater than max 500: no answer fits"),
    (FORECAST_FIELDS.replace("type: number\n            unit: mm\n", "type: text\n"),
     f"flood.yaml:{{min}} {FORECAST_FIELD_PATH}.min: only a number field has 'min', not a text field"),
    (FORECAST_FIELDS.replace("max: 500", "max: 500\n            horizon: P1D"),
     f"flood.yaml:{{horizon}} {FORECAST_FIELD_PATH}.horizon: only a datetime field has 'horizon', not a number "
     "field"),
    (FORECAST_FIELDS.replace("min: 0\n            max: 500",
                             "min: 0.2\n            max: 0.8\n            integer: true"),
     f"flood.yaml:{{integer}} {FORECAST_FIELD_PATH}.integer: no whole number lies from 0.2 to 0.8"),
], ids=["min_above_max", "bounds_on_text", "horizon_on_number", "no_whole_number"])
def test_nonsense_bounds_are_refused_at_their_line(new: str, expected: str) -> None:
    found = _flood_with(FORECAST_FIELDS, new)
    key = expected.split(f"{FORECAST_FIELD_PATH}.")[1].split(":")[0]
    line = _line_of("- key: rainfall_1h") + next(i for i, text in enumerate(new.splitlines())
                                                  if text.strip().startswith(f"{key}:"))
    assert expected.format(**{key: line}) in found, found


def test_a_datetime_horizon_must_be_a_duration_and_not_on_a_time_already_past() -> None:
    valid = "            not_before: now\n            horizon: P3D\n"
    line = _line_of("horizon: P3D")
    assert _flood_with(valid, valid.replace("P3D", "3 days")) == [
        f"flood.yaml:{line} stages.warning.steps[0].form[3].horizon: '3 days' is not an ISO 8601 duration such as "
        "PT30M, PT4H or P2D"]
    assert _flood_with(valid, valid.replace("not_before", "not_after")) == [
        f"flood.yaml:{line} stages.warning.steps[0].form[3].horizon: a field that is not after now has no horizon "
        "ahead of it"]
    refused = _flood_with(valid, valid.replace("not_before: now", "not_before: yesterday"))
    assert len(refused) == 1 and "stages.warning.steps[0].form[3].not_before: Input should be 'now'" in refused[0]


@pytest.mark.parametrize(("check", "where", "message"), [
    ("{field: rainfall_1h, op: le, other: rainfall_48h}", ".other", "the form has no field 'rainfall_48h'"),
    ("{field: warning_colour, op: le, other: rainfall_24h}", ".field",
     "'warning_colour' is a choice field; checks compare number or datetime fields"),
    ("{field: rainfall_1h, op: le, other: valid_until}", "",
     "'rainfall_1h' is a number field and 'valid_until' a datetime field: they do not compare"),
    ("{field: rainfall_1h, op: le, other: rainfall_1h}", ".other", "a field compared with itself"),
], ids=["unknown_field", "choice_field", "number_and_datetime", "itself"])
def test_checks_between_fields_name_fields_that_compare(check: str, where: str, message: str) -> None:
    shipped = "{field: rainfall_1h, op: le, other: rainfall_24h}"
    line = _line_of(f"- {shipped}")
    assert _flood_with(shipped, check) == [f"flood.yaml:{line} stages.warning.steps[0].checks[0]{where}: {message}"]


def test_checks_compare_numbers_in_one_unit() -> None:
    flood = (PLAN_DIR / "flood.yaml").read_text(encoding="utf-8")
    start = flood.index("- key: rainfall_24h")
    changed = flood[:start] + flood[start:].replace("unit: mm", "unit: cm", 1)
    registry, _ = load_registry(PLAN_DIR / REGISTRY_FILE)
    found = [str(p) for p in parse_plan(changed, "flood.yaml", registry)[1]]
    assert found == [f"flood.yaml:{_line_of('- {field: rainfall_1h')} stages.warning.steps[0].checks[0]: "
                     "'rainfall_1h' is in mm and 'rainfall_24h' in cm: they do not compare"]


def test_every_count_in_the_shipped_plans_is_a_whole_number_from_zero() -> None:
    """Counts (people, vehicles, points, pumps, shelters, cases …) take whole numbers, never below zero."""
    counts = {"人", "辆", "处", "台", "座", "个", "户", "例", "家", "支", "艘", "所", "栋", "间", "张", "条", "段"}
    seen = 0
    for path in SHIPPED:
        plan, problems = load_plan(path, None)
        assert plan is not None and not problems
        for _, step in plan.steps():
            for field in step.form:
                if field.unit in counts:
                    seen += 1
                    assert field.integer and field.min is not None and field.min >= 0, (path.name, step.key, field.key)
    assert seen > 250


def test_a_condition_or_criterion_beyond_the_fields_bounds_is_refused() -> None:
    """A count from 0 is never below 0, nor 2.5: a step that waits for it never activates, a decision that
    needs it never stands."""
    condition = "{condition: {step: flood_risk_assessment, field: hot_spots, op: gt, value: 0}}"
    line = _line_of(f"when: {condition}")
    assert _flood_with(condition, condition.replace("op: gt, value: 0", "op: lt, value: 0")) == [
        f"flood.yaml:{line} stages.response.steps[4].when.condition: the step can never activate: the condition "
        "asks for lt 0 of a field that takes from 0 (whole numbers)"]
    assert _flood_with(condition, condition.replace("op: gt, value: 0", "op: eq, value: 2.5")) == [
        f"flood.yaml:{line} stages.response.steps[4].when.condition: the step can never activate: the condition "
        "asks for eq 2.5 of a field that takes from 0 (whole numbers)"]
    criterion = "criterion: {op: le, value: 0}"
    found = _flood_with(criterion, "criterion: {op: lt, value: 0}")
    assert found == [f"flood.yaml:{_line_of(criterion)} stages.response.steps[14].form[2].criterion: the decision "
                     "can never stand: the criterion asks for lt 0 of a field that takes from 0 (whole numbers)"]
