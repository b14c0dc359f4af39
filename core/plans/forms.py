"""Check a department's outputs against its step's form, naming every bad field."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.platform.errors import FormInvalid
from process_defs.schema import FieldType, FormField, Step

MAX_TEXT = 20_000


def _check(field: FormField, value: Any) -> tuple[Any, str | None]:
    kind = field.type
    if kind is FieldType.text:
        if not isinstance(value, str):
            return None, "must be text"
        if len(value) > MAX_TEXT:
            return None, f"must be at most {MAX_TEXT} characters"
        return value, None
    if kind is FieldType.number:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, "must be a number" + (f" (in {field.unit})" if field.unit else "")
        if value != value or value in (float("inf"), float("-inf")):
            return None, "must be a finite number"
        return value, None
    if kind is FieldType.boolean:
        if not isinstance(value, bool):
            return None, "must be true or false"
        return value, None
    if kind is FieldType.choice:
        allowed = [c.value for c in field.choices or []]
        values = value if field.multiple and isinstance(value, list) else [value]
        bad = [v for v in values if v not in allowed]
        if bad or (field.multiple and not isinstance(value, list)):
            return None, f"must be one of {', '.join(allowed)}" + (" (a list)" if field.multiple else "")
        return value, None
    if kind is FieldType.datetime:
        if not isinstance(value, str):
            return None, "must be an ISO 8601 date and time"
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None, "must be an ISO 8601 date and time, e.g. 2026-07-20T18:00:00+08:00"
        if parsed.tzinfo is None:
            return None, "must carry a UTC offset, e.g. +08:00"
        return value, None
    if kind is FieldType.location:
        if isinstance(value, str) and value.strip():
            return {"name": value}, None
        if isinstance(value, dict) and set(value) <= {"name", "lat", "lon"} and value:
            lat, lon = value.get("lat"), value.get("lon")
            if (lat is None) != (lon is None):
                return None, "needs both lat and lon, or neither"
            if lat is not None and not (isinstance(lat, int | float) and isinstance(lon, int | float)
                                        and -90 <= lat <= 90 and -180 <= lon <= 180):
                return None, "lat must be within -90..90 and lon within -180..180"
            return value, None
        return None, "must be a place name or {name, lat, lon}"
    # attachment: a reference (id or URL) to a file stored elsewhere, or several when `multiple`.
    refs = value if field.multiple and isinstance(value, list) else [value]
    if not all(isinstance(r, str) and 0 < len(r) <= 500 for r in refs):
        return None, "must be an attachment reference" + (" list" if field.multiple else "")
    return value, None


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
        else:
            clean[form_field.key] = checked
    if errors:
        listing = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise FormInvalid(f"the form has {len(errors)} bad field(s): {listing}", details=errors)
    return clean
