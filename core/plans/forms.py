"""Check a department's outputs against its step's form, naming every bad field.

Each refusal is `{field, code, message}` with a stable `code` (the input policy's reasons, and the form's own:
`required`, `unknown_field`, `below_min`, `above_max`, `not_integer`, `in_the_past`, `in_the_future`,
`beyond_horizon`, `check_failed`, `criterion_unmet`), the limit it breaks in `bound` (a number, or an ISO 8601
time in UTC) or the field it is compared with in `other`, so that the API's client and the task page can say
it in the reader's language; `message` says it in English.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import FormInvalid
from core.platform.input_policy import Violation
from process_defs.law_rules import REASON_FIELD
from process_defs.schema import CLOCK_SKEW, STAGES, FieldType, FormField, IncidentType, Step, parse_duration

MAX_TEXT = 20_000
MAX_PLACE = 200
MAX_REFERENCE = 500

CHECK_WORDS = {"lt": "less than", "le": "at most", "gt": "more than", "ge": "at least", "eq": "equal to",
               "ne": "different from"}


class Refused(Violation):
    """A value outside its field's bounds: the Violation with what the refusal adds (`bound`, `unit`)."""

    def __init__(self, reason: str, message: str, **extra: Any) -> None:
        super().__init__(reason, message)
        self.extra = {k: v for k, v in extra.items() if v is not None}


def _check(field: FormField, value: Any, now: datetime) -> tuple[Any, dict[str, Any] | None]:
    """The value as stored, or why it is refused: the form's rules, then the input policy's."""
    try:
        return _checked(field, value, now), None
    except Violation as exc:
        extra = exc.extra if isinstance(exc, Refused) else {}
        return None, {"code": exc.reason, "message": exc.message, **extra}


def _checked(field: FormField, value: Any, now: datetime) -> Any:
    kind = field.type
    if kind is FieldType.text:
        if not isinstance(value, str):
            raise Violation("not_text", "must be text")
        return policy.text(value, max_length=MAX_TEXT, multiline=True)
    if kind is FieldType.number:
        try:
            number = policy.number(value)
        except Violation as exc:
            unit = f" (in {field.unit})" if field.unit and exc.reason == "not_a_number" else ""
            raise Violation(exc.reason, exc.message + unit) from None
        return _bounded(field, number)
    if kind is FieldType.boolean:
        if not isinstance(value, bool):
            raise Violation("not_a_boolean", "must be true or false")
        return value
    if kind is FieldType.choice:
        allowed = [c.value for c in field.choices or []]
        values = value if field.multiple and isinstance(value, list) else [value]
        if any(v not in allowed for v in values) or (field.multiple and not isinstance(value, list)):
            raise Violation("not_a_choice",
                            f"must be one of {', '.join(allowed)}" + (" (a list)" if field.multiple else ""))
        return value
    if kind is FieldType.datetime:
        if not isinstance(value, str):
            raise Violation("not_a_moment", "must be an ISO 8601 date and time")
        _in_time(field, policy.moment_text(value), now)
        return value
    if kind is FieldType.location:
        return _location(value)
    # attachment: a reference (id or URL) to a file stored elsewhere, or several when `multiple`.
    refs = value if field.multiple and isinstance(value, list) else [value]
    if not all(isinstance(r, str) and r for r in refs):
        raise Violation("not_a_reference", "must be an attachment reference" + (" list" if field.multiple else ""))
    clean = [policy.text(r, max_length=MAX_REFERENCE) for r in refs]
    return clean if field.multiple and isinstance(value, list) else clean[0]


def _bounded(field: FormField, number: int | float) -> int | float:
    """A number within its field's `min`, `max` and `integer`; a whole float of a count is stored as an int."""
    unit = f" {field.unit}" if field.unit else ""
    if field.integer:
        if isinstance(number, float) and not number.is_integer():
            raise Refused("not_integer", "must be a whole number (a count)")
        number = int(number)
    if field.min is not None and number < field.min:
        raise Refused("below_min", f"must be at least {field.min:g}{unit}", bound=_plain(field.min), unit=field.unit)
    if field.max is not None and number > field.max:
        raise Refused("above_max", f"must be at most {field.max:g}{unit}", bound=_plain(field.max), unit=field.unit)
    return number


def _plain(bound: float) -> int | float:
    """A bound as the plan wrote it: 0, not 0.0."""
    return int(bound) if bound.is_integer() else bound


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def _in_time(field: FormField, moment: datetime, now: datetime) -> None:
    """A time within its field's `not_before: now`, `not_after: now` and `horizon` (each with `CLOCK_SKEW`)."""
    if field.not_before is not None and moment < now - CLOCK_SKEW:
        raise Refused("in_the_past", "must not be in the past", bound=_iso(now - CLOCK_SKEW))
    if field.not_after is not None and moment > now + CLOCK_SKEW:
        raise Refused("in_the_future", "must not be in the future", bound=_iso(now + CLOCK_SKEW))
    if field.horizon is not None:
        latest = now + parse_duration(field.horizon) + CLOCK_SKEW
        if moment > latest:
            raise Refused("beyond_horizon", f"must be within {field.horizon} from now", bound=_iso(latest),
                          horizon=field.horizon)


def _location(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value.strip():
        return {"name": policy.text(value, max_length=MAX_PLACE)}
    if isinstance(value, dict) and set(value) <= {"name", "lat", "lon"} and value:
        lat, lon = value.get("lat"), value.get("lon")
        if (lat is None) != (lon is None):
            raise Violation("coordinates", "needs both lat and lon, or neither")
        clean = dict(value)
        if lat is not None:
            try:
                clean["lat"] = policy.number(lat, low=-90, high=90)
                clean["lon"] = policy.number(lon, low=-180, high=180)
            except Violation:
                raise Violation("coordinates", "lat must be within -90..90 and lon within -180..180") from None
        name = value.get("name")
        if name is not None:
            if not isinstance(name, str):
                raise Violation("not_text", "the place name must be text")
            clean["name"] = policy.text(name, max_length=MAX_PLACE)
        return clean
    raise Violation("not_a_location", "must be a place name or {name, lat, lon}")


def validate_outputs(step: Step, outputs: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """The outputs as stored, or FormInvalid naming every bad field (each with its stable `code`)."""
    if not isinstance(outputs, dict):
        raise FormInvalid("outputs must be an object of field values",
                          details=[{"field": None, "code": "not_an_object", "message": "must be an object"}])
    moment = now or utcnow()
    errors: list[dict[str, Any]] = []
    clean: dict[str, Any] = {}
    known = {f.key for f in step.form}
    for key in outputs:
        if key not in known:
            errors.append({"field": key, "code": "unknown_field", "message": f"'{key}' is not a field of this form"})
    for form_field in step.form:
        value = outputs.get(form_field.key)
        if value is None or value == "" or value == []:
            if form_field.required:
                errors.append({"field": form_field.key, "code": "required", "message": "is required"})
            continue
        checked, problem = _check(form_field, value, moment)
        if problem:
            errors.append({"field": form_field.key, **problem})
        elif form_field.criterion is not None and not form_field.criterion.holds(checked):
            # A decision on measurable criteria (ending the response) stands only when they hold.
            errors.append({"field": form_field.key, "code": "criterion_unmet",
                           "message": f"{form_field.criterion.describe()} for this decision"})
        else:
            clean[form_field.key] = checked
    errors += _cross_checks(step, clean)
    if errors:
        listing = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise FormInvalid(f"the form has {len(errors)} bad field(s): {listing}", details=errors)
    return clean


def _comparable(form_field: FormField | None, value: Any) -> Any:
    if form_field is not None and form_field.type is FieldType.datetime and isinstance(value, str):
        return policy.moment_text(value)  # checked already
    return value


def _cross_checks(step: Step, clean: dict[str, Any]) -> list[dict[str, Any]]:
    """The step's `checks` between two answered fields (a check with a field unanswered or refused is moot)."""
    errors = []
    for check in step.checks:
        if check.field not in clean or check.other not in clean:
            continue
        value = _comparable(step.field(check.field), clean[check.field])
        other = _comparable(step.field(check.other), clean[check.other])
        if not check.holds(value, other):
            errors.append({"field": check.field, "code": "check_failed", "op": check.op, "other": check.other,
                           "bound": clean[check.other],
                           "message": f"must be {CHECK_WORDS[check.op]} {check.other} ({clean[check.other]})"})
    return errors


def check_decision(plan: IncidentType, step: Step, outputs: dict[str, Any]) -> None:
    """A gate's decision that skips a stage or closes the incident must say why (its `reason` field): the
    ledger records who stood down and why."""
    stage = plan.stage_of(step.key)
    if plan.stages.get(stage).gate != step.key:
        return
    outcome = plan.outcome_of(stage, outputs)
    following = STAGES[STAGES.index(stage) + 1:]
    goes_on = outcome == "next" or (bool(following) and outcome == following[0])
    if not goes_on and not str(outputs.get(REASON_FIELD) or "").strip():
        raise FormInvalid("a decision that skips a stage or closes the incident needs a reason",
                          details=[{"field": REASON_FIELD, "code": "reason_required",
                                    "message": "a decision not to go on needs a reason"}])
