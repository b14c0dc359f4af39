"""`Condition.holds`: the one check of a plan condition on a step's answers (the engine activates conditional
steps by it, and the drills' simulated departments choose their answers by it)."""

from __future__ import annotations

from typing import Any

import pytest

from process_defs.schema import Condition


def cond(op: str, value: Any = None) -> Condition:
    return Condition.model_validate({"step": "assess", "field": "spots", "op": op, "value": value})


@pytest.mark.parametrize(("op", "value", "answer", "expected"), [
    ("eq", "red", "red", True), ("eq", "red", "orange", False),
    ("ne", "red", "orange", True), ("ne", "red", "red", False),
    ("gt", 0, 1, True), ("gt", 0, 0, False), ("ge", 0, 0, True), ("lt", 5, 4, True), ("le", 5, 6, False),
    ("in", ["a", "b"], "b", True), ("in", ["a", "b"], "c", False),
    # A multiple-choice answer is in when any of its values is allowed.
    ("in", ["a", "b"], ["c", "a"], True), ("in", ["a", "b"], ["c"], False), ("in", ["a"], [], False),
    ("truthy", None, 3, True), ("truthy", None, 0, False), ("truthy", None, [], False),
    # Values that do not compare hold nothing (never an error in the middle of an incident).
    ("gt", 0, "many", False), ("lt", "z", 3, False),
])
def test_each_operator_on_an_answer(op: str, value: Any, answer: Any, expected: bool) -> None:
    assert cond(op, value).holds({"spots": answer, "other": 1}) is expected


@pytest.mark.parametrize("op", ["eq", "ne", "gt", "in", "truthy"])
def test_a_missing_answer_holds_nothing(op: str) -> None:
    value = [None] if op == "in" else None if op == "truthy" else 0
    for outputs in (None, {}, {"other": 1}, {"spots": None}):
        assert cond(op, value).holds(outputs) is False
