"""The automated actions a plan may name, with the parameters each accepts.

The implementations live in `tasks/`; a test checks that every name here has one, so a plan that passes
`baton defs check` never names an action the workers cannot run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from process_defs.schema import Strict, Text


class NotifyDepartmentParams(Strict):
    """POST a signed notice to a department's system (the step's department unless `target` is set)."""

    target: str | None = None
    message: Text


class PublishWarningParams(Strict):
    """Render and publish a CAP 1.2 alert for the incident."""

    event: Text
    headline: Text
    instruction: Text
    category: Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport",
                      "Infra", "CBRNE", "Other"] = "Met"
    response_type: Literal["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess",
                           "AllClear", "None"] = "Prepare"
    msg_type: Literal["Alert", "Update", "Cancel"] = "Alert"


class SituationSummaryParams(Strict):
    """Compile the shared outputs of the incident so far into one situation summary."""

    audience: list[str] = Field(default_factory=lambda: ["all"])


class OpenLinkedIncidentParams(Strict):
    """Open a linked child incident of another type (a cascade), at the parent's level unless given."""

    type: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    level: Literal["IV", "III", "II", "I"] | None = None
    reason: Text


ACTIONS: dict[str, type[Strict]] = {
    "notify_department": NotifyDepartmentParams,
    "publish_warning": PublishWarningParams,
    "compile_situation_summary": SituationSummaryParams,
    "open_linked_incident": OpenLinkedIncidentParams,
}
