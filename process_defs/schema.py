"""The response-plan language: one YAML file per incident type plus a department registry.

Pydantic checks the shape of each file (unknown keys forbidden); `process_defs.validation` checks the
meaning (references, cycles, deadlines, activation) and reports every problem with file, line and path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

LEVELS: tuple[str, ...] = ("IV", "III", "II", "I")
"""China's response levels from least to most severe (IV general … I particularly significant)."""

LEVEL_COLOURS: dict[str, str] = {"IV": "blue", "III": "yellow", "II": "orange", "I": "red"}
LEVEL_NAMES: dict[str, dict[str, str]] = {
    "IV": {"zh": "一般（Ⅳ级，蓝色）", "en": "General (IV, blue)"},
    "III": {"zh": "较大（Ⅲ级，黄色）", "en": "Large (III, yellow)"},
    "II": {"zh": "重大（Ⅱ级，橙色）", "en": "Significant (II, orange)"},
    "I": {"zh": "特别重大（Ⅰ级，红色）", "en": "Particularly significant (I, red)"},
}

STAGES: tuple[str, ...] = ("warning", "response", "recovery", "learning")
STAGE_NAMES: dict[str, dict[str, str]] = {
    "warning": {"zh": "预警", "en": "Warning"},
    "response": {"zh": "响应", "en": "Response"},
    "recovery": {"zh": "恢复", "en": "Recovery"},
    "learning": {"zh": "总结", "en": "Learning"},
}

Level = Literal["IV", "III", "II", "I"]
KEY_PATTERN = r"^[a-z][a-z0-9_]*$"


def level_rank(level: str) -> int:
    """0 for IV (least severe) up to 3 for I (most severe)."""
    return LEVELS.index(level)


_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration without years or months (their length is not fixed), e.g. `PT2H30M`."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not an ISO 8601 duration such as PT30M, PT4H or P2D")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return timedelta(**parts)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Text(Strict):
    """A human-readable text in Chinese (zh-CN, shown first) and English."""

    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def get(self, lang: str) -> str:
        return self.en if lang.startswith("en") else self.zh


class Category(StrEnum):
    natural_disaster = "natural_disaster"
    accident = "accident"
    public_health = "public_health"
    social_security = "social_security"


class DepartmentKind(StrEnum):
    government = "government"
    sub_district = "sub_district"
    community = "community"
    enterprise = "enterprise"
    volunteer = "volunteer"
    liaison = "liaison"


class Department(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    name: Text
    kind: DepartmentKind
    supervisor: str | None = None
    endpoint: str | None = Field(
        default=None,
        pattern=KEY_PATTERN,
        description="Name of the department's system endpoint; the URL and secret come from settings.",
    )
    duty_phone: str | None = Field(default=None, pattern=r"^[0-9+\- ]{3,20}$")


class Role(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    name: Text
    department: str


class DepartmentRegistry(Strict):
    version: int = Field(ge=1)
    departments: list[Department] = Field(min_length=1)
    roles: list[Role] = Field(default_factory=list)

    def department(self, key: str) -> Department | None:
        return next((d for d in self.departments if d.key == key), None)

    def role(self, key: str) -> Role | None:
        return next((r for r in self.roles if r.key == key), None)


class Classification(StrEnum):
    public = "public"
    internal = "internal"
    restricted = "restricted"


EVERYONE = "all"
"""`with: all` in a share: every department on the incident."""

PUBLIC = "(the public)"
"""The reader of published warnings and the public feed (not a department: a key has no spaces)."""


class Share(Strict):
    with_: list[str] = Field(alias="with", min_length=1)
    classification: Classification = Classification.internal

    @field_validator("with_", mode="before")
    @classmethod
    def _all(cls, value: Any) -> Any:
        return [EVERYONE] if value == EVERYONE else value

    @property
    def all_departments(self) -> bool:
        return EVERYONE in self.with_


_STRICTNESS = {Classification.public: 0, Classification.internal: 1, Classification.restricted: 2}


def reaches(reader: str | None, *, owner: str, share: Share | None) -> bool:
    """Whether a value that the department `owner` reported under `share` may be shown to `reader`. The one
    rule behind the board, task inputs, webhooks, exports, published warnings and the plan check.

    - `None` reads everything (the office, managers, administrators); the owner always reads its own values.
    - With no share a value stays with its owner.
    - The public (`PUBLIC`) reads `public` values only.
    - `restricted` values reach only the departments the share names; `all` does not open them.
    - `public` and `internal` values reach the departments named, or every department when it says `all`
      (the callers only show an incident to the departments on it).
    """
    if reader is None or reader == owner:
        return True
    if share is None:
        return False
    if reader == PUBLIC:
        return share.classification is Classification.public
    if share.classification is Classification.restricted:
        return reader in share.with_
    return share.all_departments or reader in share.with_


class FieldType(StrEnum):
    text = "text"
    number = "number"
    boolean = "boolean"
    choice = "choice"
    datetime = "datetime"
    location = "location"
    attachment = "attachment"


class Choice(Strict):
    value: str = Field(pattern=KEY_PATTERN)
    label: Text


class FormField(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    label: Text
    type: FieldType
    required: bool = True
    help: Text | None = None
    unit: str | None = None
    choices: list[Choice] | None = None
    multiple: bool = False
    share: Share | None = Field(
        default=None,
        description="Who may read this field's value when it differs from the step's share, e.g. one public "
                    "figure of a restricted step.",
    )


class Condition(Strict):
    """Activates a step only when an earlier step's output field satisfies `op value`."""

    step: str
    field: str
    op: Literal["eq", "ne", "gt", "ge", "lt", "le", "in", "truthy"] = "eq"
    value: Any = None


class When(Strict):
    min_level: Level | None = None
    condition: Condition | None = None


class StepKind(StrEnum):
    human = "human"
    action = "action"


class Step(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    title: Text
    description: Text | None = None
    department: str
    kind: StepKind
    action: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    when: When | None = None
    deadline: dict[Level, str] | None = None
    escalate_to: str | None = None
    required: bool = True
    after_action: bool = False
    form: list[FormField] = Field(default_factory=list)
    inputs: list[str] = Field(default_factory=list)
    share: Share | None = None

    @field_validator("deadline", mode="before")
    @classmethod
    def _one_deadline_for_all_levels(cls, value: Any) -> Any:
        return {"IV": value} if isinstance(value, str) else value

    @property
    def min_level(self) -> str:
        return self.when.min_level if self.when and self.when.min_level else "IV"

    def active_at(self, level: str) -> bool:
        """Level rule only; conditions on outputs are evaluated at run time."""
        return level_rank(level) >= level_rank(self.min_level)

    def deadline_for(self, level: str) -> timedelta | None:
        """The deadline at `level`: the value for the nearest level at or below it (tighter ones win)."""
        if not self.deadline:
            return None
        for candidate in reversed(LEVELS[: level_rank(level) + 1]):
            if candidate in self.deadline:
                return parse_duration(self.deadline[candidate])
        return parse_duration(next(iter(self.deadline.values())))

    def field(self, key: str) -> FormField | None:
        return next((f for f in self.form if f.key == key), None)

    def field_share(self, key: str) -> Share | None:
        """Who may read the output `key`: the field's own share, else the step's (an output that is not a form
        field, such as an automated step's result, has the step's)."""
        form_field = self.field(key)
        return form_field.share if form_field is not None and form_field.share is not None else self.share

    def visible_outputs(self, reader: str | None, *, owner: str, outputs: dict[str, Any] | None) -> dict[str, Any]:
        """The outputs that `owner` reported on this step which `reader` may see (`reaches`, field by field)."""
        return {key: value for key, value in (outputs or {}).items()
                if reaches(reader, owner=owner, share=self.field_share(key))}

    def classification_of(self, keys: Iterable[str]) -> Classification | None:
        """The strictest classification among the shares of these outputs (of the step's shares if none)."""
        shares = [s for s in (self.field_share(k) for k in keys) if s is not None] or self.shares()
        return max((s.classification for s in shares), key=_STRICTNESS.__getitem__, default=None)

    def shares(self) -> list[Share]:
        """Every share under which this step's outputs may go out (the step's and its fields' own)."""
        found = [self.share] if self.share is not None else []
        return found + [f.share for f in self.form if f.share is not None]


class Stage(Strict):
    gate: str | None = Field(
        default=None, description="A step whose completion ends the stage, whatever else is still open."
    )
    steps: list[Step] = Field(default_factory=list)


class Stages(Strict):
    warning: Stage
    response: Stage
    recovery: Stage
    learning: Stage

    def get(self, name: str) -> Stage:
        stage: Stage = getattr(self, name)
        return stage


class IncidentType(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    name: Text
    category: Category
    version: int = Field(ge=1)
    description: Text
    default_level: Level
    code_prefix: str = Field(pattern=r"^[A-Z]{2,5}$")
    stages: Stages

    def steps(self) -> list[tuple[str, Step]]:
        """Every step with its stage, in plan order."""
        return [(name, step) for name in STAGES for step in self.stages.get(name).steps]

    def step(self, key: str) -> Step:
        for _, step in self.steps():
            if step.key == key:
                return step
        raise KeyError(key)

    def stage_of(self, key: str) -> str:
        for name, step in self.steps():
            if step.key == key:
                return name
        raise KeyError(key)
