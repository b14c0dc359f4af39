"""Check a department's outputs against its step's form, naming every bad field."""

from __future__ import annotations

from typing import Any

from core.platform import input_policy as policy
from core.platform.errors import FormInvalid
from core.platform.input_policy import Violation
from process_defs.law_rules import REASON_FIELD
from process_defs.schema import STAGES, FieldType, FormField, IncidentType, Step

MAX_TEXT = 20_000
MAX_PLACE = 200
MAX_REFERENCE = 500


def _check(field: FormField, value: Any) -> tuple[Any, str | None]:
    """The value as stored, or why it is refused: the form's rules, then the input policy's."""
    try:
        return _checked(field, value), None
    except Violation as exc:
        return None, exc.message


def _checked(field: FormField, value: Any) -> Any:
    kind = field.type
    if kind is FieldType.text:
        if not isinstance(value, str):
            raise Violation("not_text", "must be text")
        return policy.text(value, max_length=MAX_TEXT, multiline=True)
    if kind is FieldType.number:
        try:
            return policy.number(value)
        except Violation as exc:
            unit = f" (in {field.unit})" if field.unit and exc.reason == "not_a_number" else ""
            raise Violation(exc.reason, exc.message + unit) from None
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
        policy.moment_text(value)
        return value
    if kind is FieldType.location:
        return _location(value)
    # attachment: a reference (id or URL) to a file stored elsewhere, or several when `multiple`.
    refs = value if field.multiple and isinstance(value, list) else [value]
    if not all(isinstance(r, str) and r for r in refs):
        raise Violation("not_a_reference", "must be an attachment reference" + (" list" if field.multiple else ""))
    clean = [policy.text(r, max_length=MAX_REFERENCE) for r in refs]
    return clean if field.multiple and isinstance(value, list) else clean[0]


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


def validate_outputs(step: Step, outputs: Any) -> dict[str, Any]:
    if not isinstance(outputs, dict):
        raise FormInvalid("outputs must be an object of field values",
                          details=[{"field": None, "message": "must be an object"}])
    errors: list[dict[str, Any]] = []
    clean: dict[str, Any] = {}
    known = {f.key for f in step.form}
    for key in outputs:
        if key not in known:
            errors.append({"field": key, "message": f"'{key}' is not a field of this form"})
    for form_field in step.form:
        value = outputs.get(form_field.key)
        if value is None or value == "" or value == []:
            if form_field.required:
                errors.append({"field": form_field.key, "message": "is required"})
            continue
        checked, problem = _check(form_field, value)
        if problem:
            errors.append({"field": form_field.key, "message": problem})
        elif form_field.criterion is not None and not form_field.criterion.holds(checked):
            # A decision on measurable criteria (ending the response) stands only when they hold.
            errors.append({"field": form_field.key, "code": "criterion_unmet",
                           "message": f"{form_field.criterion.describe()} for this decision"})
        else:
            clean[form_field.key] = checked
    if errors:
        listing = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise FormInvalid(f"the form has {len(errors)} bad field(s): {listing}", details=errors)
    return clean


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
