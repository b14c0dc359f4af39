"""The response-plan language: one YAML file per incident type plus a department registry.

Pydantic checks the shape of each file (unknown keys forbidden); `process_defs.validation` checks the
meaning (references, cycles, deadlines, activation) and reports every problem with file, line and path.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LEVELS: tuple[str, ...] = ("IV", "III", "II", "I")
"""China's response levels from least to most severe (IV general … I particularly significant)."""

LEVEL_COLOURS: dict[str, str] = {"IV": "blue", "III": "yellow", "II": "orange", "I": "red"}
LEVEL_NAMES: dict[str, dict[str, str]] = {
    "IV": {"zh": "一般（Ⅳ级，蓝色）", "en": "General (IV, blue)"},
    "III": {"zh": "较大（Ⅲ级，黄色）", "en": "Large (III, yellow)"},
    "II": {"zh": "重大（Ⅱ级，橙色）", "en": "Significant (II, orange)"},
    "I": {"zh": "特别重大（Ⅰ级，红色）", "en": "Particularly significant (I, red)"},
}
# One form of a level's numeral on every page and text: the Roman numeral characters, as Chinese documents
# write them (Ⅱ级); English keeps the letters (Level II).
LEVEL_NUMERALS: dict[str, str] = {"IV": "Ⅳ", "III": "Ⅲ", "II": "Ⅱ", "I": "Ⅰ"}

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
    headquarters = "headquarters"  # a command body (防汛抗旱指挥部, 安委会 …): its office works in a department
    sub_district = "sub_district"
    town = "town"  # 乡镇: a sub-district's place outside the city proper, with villages (村) under it
    community = "community"
    enterprise = "enterprise"
    utility = "utility"  # water, gas, power, metro operators
    volunteer = "volunteer"
    liaison = "liaison"
    superior = "superior"  # a body one level up (上级机关) that receives reports; it is given no tasks


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
    office: str | None = Field(default=None, description="A headquarters: the department its office works in.")
    members: list[str] = Field(default_factory=list, description="A headquarters: its member departments.")


class Position(Strict):
    """A post a person holds (总指挥, 局长, 带班领导, 网格员 …), in organisations of the kinds listed."""

    key: str = Field(pattern=KEY_PATTERN)
    name: Text
    held_in: list[DepartmentKind] = Field(min_length=1)


POSITION_REF = r"^[a-z][a-z0-9_]*(@[a-z][a-z0-9_]*)?$"
"""`position@organisation` (commander@flood_control_hq), or a bare position held in any organisation."""


def split_position(ref: str) -> tuple[str, str | None]:
    position, _, organisation = ref.partition("@")
    return position, organisation or None


class Role(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    name: Text
    department: str


class DepartmentRegistry(Strict):
    version: int = Field(ge=1)
    departments: list[Department] = Field(min_length=1)
    roles: list[Role] = Field(default_factory=list)
    positions: list[Position] = Field(default_factory=list)

    def department(self, key: str) -> Department | None:
        return next((d for d in self.departments if d.key == key), None)

    def position(self, key: str) -> Position | None:
        return next((p for p in self.positions if p.key == key), None)

    def position_name(self, ref: str, lang: str = "zh") -> str:
        """`commander@flood_control_hq` as people say it: 市防汛抗旱指挥部总指挥."""
        key, organisation = split_position(ref)
        position = self.position(key)
        title = position.name.get(lang) if position else key
        dept = self.department(organisation) if organisation else None
        if dept is None:
            return title
        return f"{dept.name.get(lang)}{title}" if not lang.startswith("en") else f"{title}, {dept.name.en}"

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


GATE_OUTCOMES: tuple[str, ...] = ("next", "close", *STAGES)
"""Where a gate's decision sends the incident: the next stage, straight to closing, or a named later stage
(`learning` skips to the after-action review)."""


class Choice(Strict):
    value: str = Field(pattern=KEY_PATTERN)
    label: Text
    outcome: str | None = Field(
        default=None, description="On a gate's decision field: next, close, or a later stage (e.g. learning).")


class FieldCriterion(Strict):
    """What a field's answer must be for its step's decision to stand (`op value`), e.g. the measurable
    criteria of ending a response: rain stopped (eq true), no waterlogged point left (le 0)."""

    op: Literal["eq", "ne", "gt", "ge", "lt", "le", "truthy"] = "eq"
    value: Any = None

    def holds(self, answer: Any) -> bool:
        if self.op == "truthy":
            return bool(answer)
        if answer is None:
            return False
        try:
            return bool(_COMPARISONS[self.op](answer, self.value))
        except TypeError:
            return False

    def describe(self) -> str:
        return "must be set" if self.op == "truthy" else f"must be {self.op} {self.value!r}"


NOW = "now"
"""`not_before: now` / `not_after: now` on a datetime field: the moment the answer is given."""

CLOCK_SKEW = timedelta(minutes=10)
"""How far a device's clock may be off: a time "now" on it is still accepted within this much either side."""


class FormField(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    label: Text
    type: FieldType
    required: bool = True
    help: Text | None = None
    unit: str | None = None
    min: float | None = Field(default=None, description="A number field: the smallest answer accepted.")
    max: float | None = Field(default=None, description="A number field: the largest answer accepted.")
    integer: bool = Field(default=False, description="A number field: a count, whole numbers only.")
    not_before: Literal["now"] | None = Field(
        default=None, description="A datetime field: not in the past (`now`, with a few minutes' clock skew).")
    not_after: Literal["now"] | None = Field(
        default=None, description="A datetime field: not in the future (`now`), e.g. when something happened.")
    horizon: str | None = Field(
        default=None, description="A datetime field: ISO 8601 duration; the answer lies no further ahead than "
                                  "now + horizon (a forecast's horizon).")
    choices: list[Choice] | None = None
    multiple: bool = False
    criterion: FieldCriterion | None = Field(
        default=None, description="The answer the decision needs (a termination's measurable criteria).")
    share: Share | None = Field(
        default=None,
        description="Who may read this field's value when it differs from the step's share, e.g. one public "
                    "figure of a restricted step.",
    )


class FieldCheck(Strict):
    """A rule between two fields of one form, checked when both are answered: `field op other`, e.g. the peak
    hourly rainfall is at most the 24-hour rainfall (`{field: rainfall_1h, op: le, other: rainfall_24h}`)."""

    field: str = Field(pattern=KEY_PATTERN)
    op: Literal["lt", "le", "gt", "ge", "eq", "ne"]
    other: str = Field(pattern=KEY_PATTERN)

    def holds(self, value: Any, other: Any) -> bool:
        try:
            return bool(_COMPARISONS[self.op](value, other))
        except TypeError:
            return False


class Condition(Strict):
    """Activates a step only when an earlier step's output field satisfies `op value`."""

    step: str
    field: str
    op: Literal["eq", "ne", "gt", "ge", "lt", "le", "in", "truthy"] = "eq"
    value: Any = None

    def holds(self, outputs: Mapping[str, Any] | None) -> bool:
        """Whether `outputs` (the answers of step `step`) make the condition true.

        A missing answer makes only nothing true (`truthy` is false); a multiple-choice answer is `in` when any
        of its values is allowed; values that do not compare (a number against text) do not hold."""
        value = (outputs or {}).get(self.field)
        if self.op == "truthy":
            return bool(value)
        if value is None:
            return False
        if self.op == "in":
            allowed = self.value or []
            return any(v in allowed for v in value) if isinstance(value, list) else value in allowed
        try:
            return bool(_COMPARISONS[self.op](value, self.value))
        except TypeError:
            return False


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}


class When(Strict):
    min_level: Level | None = None
    condition: Condition | None = None


class StepKind(StrEnum):
    human = "human"
    action = "action"


class StepPurpose(StrEnum):
    """What a step is for; its deadlines follow the purpose's rule as the level rises (`DEADLINE_RULES`)."""

    warning = "warning"  # monitoring, forecasts, warnings
    decision = "decision"  # the command's decisions: start, stand down, end the response
    response = "response"  # the response actions themselves
    report = "report"  # reports upward and to the command
    relief = "relief"  # help to the people affected (救助)
    repair = "repair"  # repairing what was damaged (抢修恢复)
    reconstruction = "reconstruction"  # rebuilding (恢复重建)
    investigation = "investigation"  # investigating the cause and responsibility (调查)
    review = "review"  # reviews, lessons, plan revision (总结评估)


DEADLINE_RULES: dict[StepPurpose, str] = {
    StepPurpose.warning: "tighten", StepPurpose.decision: "tighten", StepPurpose.response: "tighten",
    StepPurpose.report: "tighten", StepPurpose.relief: "tighten", StepPurpose.repair: "any",
    StepPurpose.reconstruction: "loosen", StepPurpose.investigation: "loosen", StepPurpose.review: "loosen",
}
"""As the level rises, a step's deadline must not loosen (`tighten`: a bigger event, a faster response), must
not tighten (`loosen`: a bigger event takes longer to investigate, review or rebuild), or may do either."""

AFTER_TERMINATION: frozenset[StepPurpose] = frozenset({StepPurpose.repair, StepPurpose.reconstruction,
                                                       StepPurpose.relief})
"""Repair, reconstruction and relief follow the end of the response; they are never its conditions."""


class Termination(Strict):
    """The step is the decision that ends the response (响应终止): its form's criteria must hold, and it is taken
    by `approved_by`, or else by whoever may lower the current level (the authority that started it)."""

    approved_by: list[str] | None = None


REGISTER_KINDS: tuple[str, ...] = ("risk_point", "shelter", "reserve", "team", "expert", "vulnerable_resident",
                                   "area")
"""The registers a step may ask for (`core.registers.models.RegisterKind` has the same values; a test holds them
equal, since the plan language imports nothing of Baton's)."""

RESTRICTED_REGISTERS: frozenset[str] = frozenset({"vulnerable_resident"})
"""Registers only the owning community (and the emergency office) read: a plan gives them to community steps only."""

REGISTER_AREAS: tuple[str, ...] = ("warning_area",)
"""Where a step's register entries are looked for: `warning_area`, the areas (CAP polygons and circles) of the
incident's warnings in force when the step is assigned."""

REGISTER_FILLS: frozenset[str] = frozenset({"text", "number"})
"""The form fields a step's register entries pre-fill: a text field with their names (one a line), a number field
with how many there are."""


class RegisterQuery(Strict):
    """A step's register entries (`registers: {kinds: [shelter, risk_point], within: warning_area}`): when the step
    is assigned, the entries of these registers inside the area are resolved for the department holding it, stored
    with its task, shown on its page, and pre-fill the form fields `fill` names (field key -> register kind)."""

    kinds: list[str] = Field(min_length=1)
    within: str = "warning_area"
    fill: dict[str, str] = Field(
        default_factory=dict,
        description="Form field key -> register kind: a text field gets the entries' names, one a line; a number "
                    "field how many there are.")


class Step(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    title: Text
    description: Text | None = None
    department: str
    position: str | None = Field(
        default=None, pattern=POSITION_REF,
        description="A duty position (`duty_officer@water_affairs`) the step is addressed to instead of the whole "
                    "department: whoever holds it now by the duty roster (or their stand-in) acts. The department "
                    "defaults to the position's organisation.")
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
    checks: list[FieldCheck] = Field(default_factory=list,
                                     description="Rules between the form's fields (rainfall_1h le rainfall_24h).")
    inputs: list[str] = Field(default_factory=list)
    share: Share | None = None
    purpose: StepPurpose = StepPurpose.response
    terminates: Termination | None = None
    must_answer: bool = Field(
        default=False, description="叫应: once the step is completed, the officials of the plan's `answering:` block "
                                   "must each confirm it, within the limit for the incident's level colour.")
    registers: RegisterQuery | None = Field(
        default=None, description="Register entries inside the incident's warning area, handed to the task when it is "
                                  "assigned (shelters and risk points for an evacuation).")

    @field_validator("deadline", mode="before")
    @classmethod
    def _one_deadline_for_all_levels(cls, value: Any) -> Any:
        return {"IV": value} if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _department_of_position(cls, value: Any) -> Any:
        """A step addressed to `position@organisation` alone is the organisation's."""
        if isinstance(value, dict) and "department" not in value and isinstance(value.get("position"), str):
            _, organisation = split_position(value["position"])
            if organisation:
                return {**value, "department": organisation}
        return value

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


class Criterion(Strict):
    """One measurable fact that grades an event: a number a step's form reports (`step` and `field`), or a
    value in a monitoring signal's payload (`signal` kind and `field`), at least (`ge`) or above (`gt`) `value`."""

    step: str | None = None
    signal: str | None = Field(default=None, pattern=KEY_PATTERN)
    field: str = Field(pattern=KEY_PATTERN)
    op: Literal["ge", "gt"] = "ge"
    value: float

    @property
    def measure(self) -> str:
        """What is measured, the same at every level: `step.field` or `signal:kind.field`."""
        return f"signal:{self.signal}.{self.field}" if self.signal else f"{self.step}.{self.field}"

    def holds(self, observed: Any) -> bool:
        if isinstance(observed, bool) or not isinstance(observed, int | float):
            return False
        return observed >= self.value if self.op == "ge" else observed > self.value


class Grade(Strict):
    """A response level's criteria: the level applies when any of them holds."""

    text: Text = Field(description="The criteria as the plan words them, e.g. 造成10人以上死亡.")
    any: list[Criterion] = Field(min_length=1)


class LevelAuthority(Strict):
    """Who may start a level, raise the incident to it, and lower it from it (position references)."""

    start: list[str] = Field(min_length=1)
    raise_: list[str] = Field(alias="raise", min_length=1)
    lower: list[str] = Field(min_length=1)

    def needed(self, act: str) -> list[str]:
        return {"start": self.start, "raise": self.raise_, "lower": self.lower}[act]


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


# -- upward reporting (信息报送): what the office must report to whom, by when -------------------------------
class ReportKind(StrEnum):
    initial = "initial"  # 初报
    follow_up = "follow_up"  # 续报, numbered
    final = "final"  # 终报


REPORT_KIND_NAMES: dict[str, dict[str, str]] = {
    "initial": {"zh": "初报", "en": "Initial report"},
    "follow_up": {"zh": "续报", "en": "Follow-up report"},
    "final": {"zh": "终报", "en": "Final report"},
}


class FollowUpTrigger(StrEnum):
    level_change = "level_change"
    casualty_change = "casualty_change"


CASUALTY_KINDS: tuple[str, ...] = ("dead", "missing", "injured", "moved")
CASUALTY_NAMES: dict[str, dict[str, str]] = {
    "dead": {"zh": "死亡", "en": "Dead"},
    "missing": {"zh": "失踪", "en": "Missing"},
    "injured": {"zh": "受伤", "en": "Injured"},
    "moved": {"zh": "转移安置", "en": "Moved to safety"},
}


class Recipient(Strict):
    """A body a report goes to (a registry key: 本级政府, the emergency department or headquarters one level up,
    the province), from a level on: the province hears of a 重大 event, not of every 一般 one."""

    department: str
    min_level: Level = "IV"

    @model_validator(mode="before")
    @classmethod
    def _plain_key(cls, value: Any) -> Any:
        return {"department": value} if isinstance(value, str) else value


class ReportRule(Strict):
    within: str = Field(description="ISO 8601 duration: from the report's trigger to when it must be sent.")
    recipients: list[Recipient] = Field(min_length=1)
    sign_off: bool = Field(default=True, description="A leader must sign the report off (签发) before it goes.")
    signed_by: list[str] = Field(
        default_factory=list,
        description="Positions (`position@organisation`) that may sign the report off; empty: the reporting "
                    "department's leaders (局长, 分管负责同志, 带班领导).")


class InitialReportRule(ReportRule):
    phone_within: str | None = Field(
        default=None, description="ISO 8601 duration from opening: the report by phone, before the written one.")


class FollowUpRule(ReportRule):
    every: dict[Level, str] = Field(
        description="ISO 8601 duration, one for all levels or one per level: a follow-up at this interval "
                    "(at least daily; twice a day for 重大 and above, 国务院令第493号).")
    also_on: list[FollowUpTrigger] = Field(default_factory=lambda: list(FollowUpTrigger),
                                          description="Changes that call for a follow-up at once.")

    @field_validator("every", mode="before")
    @classmethod
    def _one_interval_for_all_levels(cls, value: Any) -> Any:
        return {"IV": value} if isinstance(value, str) else value

    def every_for(self, level: str) -> timedelta:
        """The interval at `level`: the value for the nearest level at or below it."""
        for candidate in reversed(LEVELS[: level_rank(level) + 1]):
            if candidate in self.every:
                return parse_duration(self.every[candidate])
        return parse_duration(next(iter(self.every.values())))


class FinalReportRule(ReportRule):
    after: str | None = Field(
        default=None, description="The step whose completion ends the response; unset, the incident's closing.")


class CasualtySources(Strict):
    """Where the run's data holds each casualty figure: `step.field` number outputs. A draft starts from the
    value of the source completed last (a later count replaces an earlier estimate; they are not added)."""

    dead: list[str] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    injured: list[str] = Field(default_factory=list)
    moved: list[str] = Field(default_factory=list)

    def of(self, kind: str) -> list[str]:
        sources: list[str] = getattr(self, kind)
        return sources


# Who signs a report off when the plan does not say: the reporting department's leaders (a report goes out under
# the unit's leader's name, 签发人); the duty leader (带班领导) signs at night.
DEFAULT_SIGNERS = ("bureau_director", "deputy_director", "duty_leader")


def leaders_of(department: str) -> list[str]:
    """The positions that sign off what `department` issues when a plan names none: its leaders (签发人)."""
    return [f"{position}@{department}" for position in DEFAULT_SIGNERS]


class Reporting(Strict):
    department: str = Field(description="The department that writes and sends the reports (报送单位).")
    initial: InitialReportRule
    follow_up: FollowUpRule | None = None
    final: FinalReportRule | None = None
    casualties: CasualtySources = Field(default_factory=CasualtySources)

    def rule(self, kind: str) -> ReportRule | None:
        found: ReportRule | None = getattr(self, kind)
        return found

    def signers(self, kind: str) -> list[str]:
        """The positions that may sign a report of this kind off (签发): the rule's, or the department's leaders."""
        rule = self.rule(kind)
        if rule is not None and rule.signed_by:
            return list(rule.signed_by)
        return leaders_of(self.department)


ANSWER_COLOURS: tuple[str, ...] = ("orange", "red")
DEFAULT_ANSWER_WITHIN: dict[str, str] = {"red": "PT15M", "orange": "PT30M", "yellow": "PT1H", "blue": "PT2H"}
# Who must answer a warning when a plan names nobody (叫应): the head of the headquarters at the same level (the
# plan's `command`, added where the plan has one), and the heads of the affected sub-districts, towns and
# communities (villages) and their evacuation keepers (转移责任人). Named by bare position, held in any
# organisation: a city has many sub-districts, towns and communities, and which are "affected" is the warning's
# area against each one's administrative area (`core.sharing.answers.Reach`).
DEFAULT_ANSWERING_OFFICIALS: tuple[str, ...] = ("sub_district_head", "town_head", "community_head",
                                                "evacuation_keeper")


WarningColour = Literal["blue", "yellow", "orange", "red"]


def _answer_colours() -> list[WarningColour]:
    return ["orange", "red"]


class Answering(Strict):
    """叫应: which warnings must be answered, by whom, and within what limit ("谁发布、谁叫应")."""

    colours: list[WarningColour] = Field(
        default_factory=_answer_colours,
        description="The warning colours that must be answered (orange and red by default).")
    within: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ANSWER_WITHIN),
        description="Per colour, an ISO 8601 duration: how long each official has to answer before their stand-in "
                    "(AB角), then the level above, is called (15 minutes for red, 30 for orange by default).")
    officials: list[str] | None = Field(
        default=None, description="Positions (`position@organisation`) whose holders must answer; by default the "
                                  "commander of the plan's headquarters, the heads of the affected sub-districts, "
                                  "towns and communities, and the evacuation keepers (转移责任人).")
    response_within: str | None = Field(
        default=None, description="A red warning: if no response has started within this (ISO 8601 duration; by "
                                  "default the red limit), the command is prompted.")

    @field_validator("within")
    @classmethod
    def _durations(cls, value: dict[str, str]) -> dict[str, str]:
        for colour, text in value.items():
            if colour not in ("blue", "yellow", "orange", "red"):
                raise ValueError(f"'{colour}' is not a warning colour (blue, yellow, orange, red)")
            parse_duration(text)
        return value

    @field_validator("response_within")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    def limit(self, colour: str | None) -> timedelta:
        """How long an official has to answer a warning of `colour` (or a step's order: the level's colour)."""
        text = self.within.get(colour or "red") or DEFAULT_ANSWER_WITHIN.get(colour or "red", "PT30M")
        return parse_duration(text)

    def response_limit(self) -> timedelta:
        return parse_duration(self.response_within) if self.response_within else self.limit("red")

    def positions(self, command: str | None) -> list[str]:
        if self.officials is not None:
            return list(self.officials)
        return ([f"commander@{command}"] if command else []) + list(DEFAULT_ANSWERING_OFFICIALS)


class IncidentType(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    name: Text
    category: Category
    version: int = Field(ge=1)
    description: Text
    default_level: Level
    code_prefix: str = Field(pattern=r"^[A-Z]{2,5}$")
    grading: dict[Level, Grade] | None = Field(
        default=None, description="Measurable criteria per level; outputs that meet a higher level propose it.")
    command: str | None = Field(default=None, description="The headquarters that commands the response.")
    authority: dict[Level, LevelAuthority] | None = Field(
        default=None, description="Per level, the positions that may start, raise to and lower from it.")
    stages: Stages
    reporting: Reporting | None = None
    answering: Answering = Field(default_factory=Answering,
                                 description="叫应: the warnings that must be answered, by whom, within what limit.")

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

    def positions_for(self, act: str, level: str) -> list[str] | None:
        """The positions that may `start`, `raise` (to) or `lower` (from) `level`; None when the plan names
        none (an older plan: the office decides its levels)."""
        if self.authority is None:
            return None
        rule = self.authority.get(level)  # type: ignore[call-overload]
        return list(rule.needed(act)) if rule is not None else []

    def grade(self, observed: dict[str, Any]) -> tuple[str, list[tuple[Criterion, Any]]] | None:
        """The most severe level whose criteria hold for the observed values (by `Criterion.measure`), with the
        criteria met; None when no level's do."""
        for level in reversed(LEVELS):
            grade = (self.grading or {}).get(level)  # type: ignore[call-overload]
            met = [(c, observed[c.measure]) for c in grade.any if c.measure in observed
                   and c.holds(observed[c.measure])] if grade else []
            if met:
                return level, met
        return None

    def decision_field(self, stage: str) -> FormField | None:
        """The gate's decision: the choice field of the stage's gate whose choices carry outcomes."""
        gate = self.stages.get(stage).gate
        step = next((s for s in self.stages.get(stage).steps if s.key == gate), None)
        if step is None:
            return None
        return next((f for f in step.form if f.type is FieldType.choice
                     and any(c.outcome is not None for c in f.choices or [])), None)

    def outcome_of(self, stage: str, gate_outputs: dict[str, Any] | None) -> str:
        """What ending `stage` leads to, by its gate's decision: `next`, `close` or a later stage's name."""
        decision = self.decision_field(stage)
        if decision is None or not gate_outputs:
            return "next"
        value = gate_outputs.get(decision.key)
        choice = next((c for c in decision.choices or [] if c.value == value), None)
        return choice.outcome if choice is not None and choice.outcome else "next"

    def stage_after(self, stage: str, gate_outputs: dict[str, Any] | None) -> str | None:
        """The stage the incident enters when `stage` ends (None: it closes)."""
        outcome = self.outcome_of(stage, gate_outputs)
        index = STAGES.index(stage)
        if outcome == "close":
            return None
        if outcome == "next":
            return STAGES[index + 1] if index + 1 < len(STAGES) else None
        return outcome
