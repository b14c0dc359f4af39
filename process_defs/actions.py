"""The automated actions a plan may name, with the parameters each accepts.

The implementations live in `tasks/`; a test checks that every name here has one, so a plan that passes
`baton defs check` never names an action the workers cannot run.
"""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import Field, field_validator, model_validator

from process_defs.schema import POSITION_REF, Strict, Text, parse_duration


class NotifyDepartmentParams(Strict):
    """POST a signed notice to a department's system (the step's department unless `target` is set)."""

    target: str | None = None
    message: Text


WARNING_COLOURS: tuple[str, ...] = ("blue", "yellow", "orange", "red")
"""The signal colours of a warning (预警信号), least to most severe."""

WARNING_PLACEHOLDERS: dict[str, str] = {
    "issuer": "the issuing agency (发布单位)", "colour": "the signal colour, worded (红色 / Red)",
    "area": "the area warned", "expires": "when the warning expires, Beijing time, worded",
    "hours": "the hours from drafting to expiry", "event": "the event named by `event`",
}
"""What a warning's texts may name besides `{step.field}`: an earlier step's public output, worded."""

OUTPUT_REF = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"


def placeholders(template: str) -> list[str]:
    """The `{names}` a warning text uses (`{{` and `}}` are literal braces)."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"'{template}' is not a text with {{placeholders}}: {exc}") from exc


class PublishWarningParams(Strict):
    """Draft a public warning (CAP 1.2) for the issuing agency (the step's department): it is published only when
    the emergency office has reviewed it and a leader has signed it off (审核签发).

    Texts are written as public notices are, with placeholders: {issuer}, {colour}, {area}, {expires}, {hours},
    {event}, and `{step.field}` for an earlier step's output that is shared with the public (worded: a choice's
    label, 是/否, local times, units). A `description` sentence whose named output is missing is left out."""

    event: Text
    headline: Text
    instruction: Text
    description: list[Text] = Field(
        default_factory=list, description="Sentences of the description; empty: the public outputs, worded.")
    issuer: Text | None = Field(
        default=None, description="The issuing agency as the notice names it (市气象台); unset: the step's "
                                  "department's name.")
    colour_from: str | None = Field(
        default=None, pattern=OUTPUT_REF,
        description="`step.field`: the issuing agency's signal colour (a choice of blue, yellow, orange, red); "
                    "unset, the colour of the incident's response level.")
    expires_from: str | None = Field(
        default=None, pattern=OUTPUT_REF,
        description="`step.field`: a datetime output until which the warning is valid (its forecast's validity).")
    valid_for: str = Field(
        default="PT24H", description="ISO 8601 duration: how long the warning is valid when `expires_from` gives "
                                     "no time.")
    signed_by: list[str] = Field(
        default_factory=list,
        description="Positions (`position@organisation`) that may sign the warning off (签发); empty: the "
                    "issuing department's leaders (局长, 分管负责同志, 带班领导).")
    category: Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport",
                      "Infra", "CBRNE", "Other"] = "Met"
    response_type: Literal["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess",
                           "AllClear", "None"] = "Prepare"
    msg_type: Literal["Alert", "Update", "Cancel"] = "Alert"

    @field_validator("valid_for")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value).total_seconds() <= 0:
            raise ValueError("a warning is valid for some time: give a duration such as PT6H")
        return value

    @field_validator("signed_by")
    @classmethod
    def _positions(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not re.fullmatch(POSITION_REF, ref):
                raise ValueError(f"'{ref}' is not a position reference such as bureau_director@meteorology")
        return value

    @model_validator(mode="after")
    def _known_placeholders(self) -> PublishWarningParams:
        for text in self.texts():
            for name in placeholders(text):
                if name not in WARNING_PLACEHOLDERS and not _is_ref(name):
                    raise ValueError(f"unknown placeholder {{{name}}} (known: "
                                     f"{', '.join(WARNING_PLACEHOLDERS)}, or step.field)")
        return self

    def texts(self) -> list[str]:
        found = [self.headline.zh, self.headline.en, self.instruction.zh, self.instruction.en]
        return found + [t for sentence in self.description for t in (sentence.zh, sentence.en)]

    def output_refs(self) -> list[str]:
        """Every `step.field` the texts name (the colour and expiry sources are listed apart)."""
        return list(dict.fromkeys(name for text in self.texts() for name in placeholders(text) if _is_ref(name)))


def _is_ref(name: str) -> bool:
    return re.fullmatch(OUTPUT_REF, name) is not None


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
