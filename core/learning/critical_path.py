"""The critical path of an incident's run: the chain of completed steps that set its end.

From the step completed last, walk back: each step was enabled by whichever of its plan dependencies, or of the
steps of earlier stages (a stage's first steps wait for the step that ended the stage before), completed last
at or before the step was first handed out. A step handed back and done by another department is one step,
handed out at its first assignment.

The after-action report (`core.learning.after_action.compute`) and the drills' readiness score
(`core.learning.drills.score`) both time this chain; neither defines its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from process_defs.schema import STAGES


class StepRun(Protocol):
    """A step as it ran; `assigned_at` is when it was first handed out."""

    @property
    def step_key(self) -> str: ...

    @property
    def stage(self) -> str: ...

    @property
    def assigned_at(self) -> datetime | None: ...

    @property
    def completed_at(self) -> datetime | None: ...

    @property
    def depends_on(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class Ran:
    """A `StepRun` built from task rows (the after-action report's)."""

    step_key: str
    stage: str
    assigned_at: datetime | None
    completed_at: datetime | None
    depends_on: tuple[str, ...] = ()


Run = TypeVar("Run", bound=StepRun)
_NEVER = datetime.min.replace(tzinfo=UTC)


def critical_path(runs: Sequence[Run]) -> list[Run]:
    """The chain of completed steps that set the end (see the module's description), first to last. Of steps
    completed at the same moment, the last is the one of the later stage, and the enabler the one listed first
    (a dependency before a step of an earlier stage, then in the order given)."""
    done = [r for r in runs if r.completed_at is not None and r.assigned_at is not None]
    if not done:
        return []

    def end(run: Run) -> datetime:
        return run.completed_at or _NEVER

    by_key = {r.step_key: r for r in done}
    current = max(done, key=lambda r: (end(r), STAGES.index(r.stage)))
    path = [current]
    seen = {current.step_key}
    while True:
        started = current.assigned_at
        assert started is not None
        stage_index = STAGES.index(current.stage)
        candidates = [by_key[d] for d in current.depends_on if d in by_key]
        candidates += [r for r in done if STAGES.index(r.stage) < stage_index]
        candidates = [r for r in candidates if r.step_key not in seen and end(r) <= started]
        if not candidates:
            break
        current = max(candidates, key=end)
        path.append(current)
        seen.add(current.step_key)
    return list(reversed(path))
