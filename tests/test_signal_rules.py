"""Signal rules (`process_defs/signals.yaml`) are checked like plans: every problem named with file, line and
field, a rule's templates may only name payload fields, and a rule's levels are its plan's grading."""

from __future__ import annotations

from pathlib import Path

import pytest

from process_defs.signals import SIGNALS_FILE
from process_defs.validation import PLAN_DIR, check_paths, load_signal_rules

GOOD_RULE = """\
version: 1
rules:
  - key: rainfall_threshold
    name: {zh: 雨量超阈值, en: Rainfall over threshold}
    kind: rainfall
    type: flood
    dedupe: "rainfall:{area}"
    window: PT6H
    title: {zh: "{area}强降雨", en: "Heavy rain in {area}"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / SIGNALS_FILE
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_rules_are_valid() -> None:
    plans = check_paths().plans
    rules, problems = load_signal_rules(PLAN_DIR / SIGNALS_FILE, plans)
    assert problems == [] and rules is not None and len(rules.rules) >= 3


@pytest.mark.parametrize(("change", "expected"), [
    (('"rainfall:{area}"', '"rainfall:{area.__class__}"'),
     "signals.yaml:7 rules[0].dedupe: '{area.__class__}': a template names payload fields only"),
    (('"Heavy rain in {area}"', '"Heavy rain in {area[0]}"'),
     "signals.yaml:9 rules[0].title.en: '{area[0]}': a template names payload fields only"),
    (('"{area}强降雨"', '"{area强降雨"'), "signals.yaml:9 rules[0].title.zh: not a valid template"),
    (("type: flood", "type: tsunami"), "signals.yaml:6 rules[0].type: unknown incident type 'tsunami'"),
    (("window: PT6H", "window: PT0S"), "signals.yaml:8 rules[0].window: the dedupe window must be longer than zero"),
    (("kind: rainfall", "kind: snowfall"),
     "signals.yaml:5 rules[0].kind: plan 'flood' grades nothing on signal 'snowfall': add a criterion "
     "{signal: snowfall, field: …} to its grading, or make the rule cap: true"),
    (("window: PT6H", "window: PT6H\n    levels: [{level: II, value: 70}]"),
     "signals.yaml:9 rules[0].levels: unknown key 'levels'"),
])
def test_a_broken_rule_is_named_with_its_line_and_field(tmp_path: Path, change: tuple[str, str],
                                                        expected: str) -> None:
    old, new = change
    assert old in GOOD_RULE
    plans = check_paths().plans
    assert load_signal_rules(write(tmp_path, GOOD_RULE), plans)[1] == []
    rules, problems = load_signal_rules(write(tmp_path, GOOD_RULE.replace(old, new, 1)), plans)
    assert rules is None
    assert [str(p) for p in problems if str(p).startswith(expected)], [str(p) for p in problems]
