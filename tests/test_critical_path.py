"""The critical path (`core.learning.critical_path`), the one definition the after-action report and the drills'
readiness score both time: the chain of completed steps that set the end, walked back from the step done last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.learning.critical_path import Ran, critical_path

T0 = datetime(2026, 7, 20, 2, 0, tzinfo=UTC)


def run(step: str, stage: str, assigned: float | None, done: float | None, *depends_on: str) -> Ran:
    """A step first handed out `assigned` minutes after T0 and completed at `done`."""
    return Ran(step_key=step, stage=stage, assigned_at=T0 + timedelta(minutes=assigned) if assigned is not None
               else None, completed_at=T0 + timedelta(minutes=done) if done is not None else None,
               depends_on=depends_on)


def keys(runs: list[Ran]) -> list[str]:
    return [r.step_key for r in critical_path(runs)]


def test_the_chain_follows_dependencies_and_crosses_stages_at_the_step_that_ended_the_stage() -> None:
    runs = [
        run("forecast", "warning", 0, 20),
        run("assessment", "warning", 20, 110, "forecast"),
        run("side_check", "warning", 20, 60, "forecast"),  # done sooner: it held nothing up
        run("lift", "warning", 110, 130, "assessment", "side_check"),
        run("command", "response", 130, 140),  # no dependency: waited for the warning stage to end
        run("drainage", "response", 140, 260, "command"),
        run("traffic", "response", 140, 170, "command"),
        run("open_road", "response", 140, None, "command"),  # never done: not on any path
    ]
    assert keys(runs) == ["forecast", "assessment", "lift", "command", "drainage"]
    # The same runs in another order give the same chain.
    assert keys(list(reversed(runs))) == ["forecast", "assessment", "lift", "command", "drainage"]


def test_an_enabler_must_be_done_before_the_step_was_first_handed_out() -> None:
    # `review` was handed back and done by another department later; its chain starts from its first assignment
    # (minute 30), so `report` (done at 40) did not enable it, `count` (done at 30) did.
    runs = [run("count", "response", 0, 30), run("report", "response", 0, 40),
            run("review", "recovery", 30, 200)]
    assert keys(runs) == ["count", "review"]


def test_of_steps_done_at_the_same_moment_the_later_stage_ends_the_chain_and_a_dependency_enables_first() -> None:
    runs = [run("a", "warning", 0, 10), run("b", "warning", 0, 10),
            run("c", "response", 10, 50), run("d", "response", 10, 50, "a"),
            run("e", "recovery", 50, 50)]
    assert keys(runs)[-1] == "e"
    runs = [run("a", "warning", 0, 10), run("b", "warning", 0, 10), run("d", "response", 10, 50, "b")]
    assert keys(runs) == ["b", "d"]


def test_nothing_done_is_no_path() -> None:
    assert critical_path([]) == []
    assert critical_path([run("a", "warning", 0, None), run("b", "warning", None, None)]) == []
