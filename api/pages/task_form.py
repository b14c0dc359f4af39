"""A task's form on a page: the step's outputs from the posted fields, stored outputs as the fields' values, and
the form check's refusals as a message code per field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session
from starlette.datastructures import FormData, UploadFile

from api.pages.rendering import field, zone
from core.attachments import service as attachments
from core.incidents.models import DepartmentTask
from core.platform.errors import AttachmentEmpty, AttachmentRefused, AttachmentTooLarge
from process_defs.schema import FieldType, Step

FILE_SUFFIX = "_file"


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # left as text: the form check names it
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def _local_datetime(text: str) -> str:
    """A `datetime-local` value (no offset) in Baton's time zone, as ISO 8601 with its offset (+08:00)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone())
    return parsed.isoformat(timespec="seconds")


def parse_outputs(step: Step, form: FormData) -> tuple[dict[str, Any], dict[str, Any]]:  # noqa: C901
    """The step's outputs from the posted form, and the raw values to show again if they are refused."""
    outputs: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for item in step.form:
        name = f"f_{item.key}"
        if item.type is FieldType.boolean:
            raw[name] = bool(field(form, name))
            outputs[item.key] = raw[name]
        elif item.type is FieldType.choice and item.multiple:
            chosen = [v for v in form.getlist(name) if isinstance(v, str) and v]
            raw[name] = chosen
            outputs[item.key] = chosen
        elif item.type is FieldType.location:
            place, lat_text, lon_text = (field(form, f"{name}_{p}").strip() for p in ("name", "lat", "lon"))
            raw.update({f"{name}_name": place, f"{name}_lat": lat_text, f"{name}_lon": lon_text})
            if place or lat_text or lon_text:
                location: dict[str, Any] = {}
                if place:
                    location["name"] = place
                for part, text in (("lat", lat_text), ("lon", lon_text)):
                    if text:
                        location[part] = _number(text)
                outputs[item.key] = location
        elif item.type is FieldType.attachment and item.multiple:
            text = field(form, name)
            raw[name] = text
            refs = [line.strip() for line in text.splitlines() if line.strip()]
            if refs:
                outputs[item.key] = refs
        else:
            text = field(form, name)
            raw[name] = text
            if item.type is FieldType.text:
                if text.strip():
                    outputs[item.key] = text
            elif text.strip():
                text = text.strip()
                if item.type is FieldType.number:
                    outputs[item.key] = _number(text)
                elif item.type is FieldType.datetime:
                    outputs[item.key] = _local_datetime(text)
                else:
                    outputs[item.key] = text
    return outputs, raw


def take_uploads(session: Session, *, task: DepartmentTask, step: Step, actor: str,
                 form: FormData) -> tuple[FormData, dict[str, str], dict[str, dict[str, Any]]]:
    """Store the files chosen in the form's attachment fields (`f_<key>_file`, a phone's camera or its files) as
    uploads of the task, and name each in its field as `attachment:<id>`: instead of the typed reference (one file
    field), or after the typed ones (several). The form without its files (what the confirmation carries on, so a
    file is sent once), and each refused file's field with its code and what its message needs."""
    chosen: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    params: dict[str, dict[str, Any]] = {}
    for item in step.form:
        if item.type is not FieldType.attachment:
            continue
        for upload in form.getlist(f"f_{item.key}{FILE_SUFFIX}"):
            if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
                continue  # no file chosen: the browser sends an empty part
            try:
                row = attachments.store(session, task=task, step=step, uploaded_by=actor, filename=upload.filename,
                                        stream=upload.file)
            except AttachmentTooLarge as exc:
                errors[item.key] = exc.code
                limit = exc.details.get("limit", 0) if isinstance(exc.details, dict) else 0
                params[item.key] = {"limit": f"{limit / 1024 / 1024:g} MB"}
                continue
            except (AttachmentRefused, AttachmentEmpty) as exc:
                errors[item.key] = exc.code
                continue
            chosen.setdefault(item.key, []).append(attachments.reference(row.id))
    items: list[tuple[str, Any]] = []
    for name, value in form.multi_items():
        if not isinstance(value, str):
            continue
        key = name[2:] if name.startswith("f_") else None
        if key in chosen:
            form_field = step.field(key)
            if form_field is not None and form_field.multiple:
                typed = [line.strip() for line in value.splitlines() if line.strip()]
                value = "\n".join(typed + chosen.pop(key))
            else:
                value = chosen.pop(key)[-1]
        items.append((name, value))
    items += [(f"f_{key}", "\n".join(refs)) for key, refs in chosen.items()]  # a field the form did not send
    return FormData(items), errors, params


def form_values(step: Step, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Stored outputs as the inputs' values (for a completed task's read-only view and defaults)."""
    raw: dict[str, Any] = {}
    for item in step.form:
        name = f"f_{item.key}"
        value = outputs.get(item.key)
        if item.type is FieldType.boolean:
            raw[name] = bool(value)
        elif item.type is FieldType.choice and item.multiple:
            raw[name] = list(value) if isinstance(value, list) else []
        elif item.type is FieldType.location:
            place = value if isinstance(value, Mapping) else {}
            raw.update({f"{name}_name": str(place.get("name") or ""),
                        f"{name}_lat": "" if place.get("lat") is None else str(place.get("lat")),
                        f"{name}_lon": "" if place.get("lon") is None else str(place.get("lon"))})
        elif item.type is FieldType.datetime and isinstance(value, str):
            try:
                raw[name] = datetime.fromisoformat(value).astimezone(zone()).strftime("%Y-%m-%dT%H:%M")
            except (ValueError, OverflowError):  # not a time, or one the zone cannot hold: shown as stored
                raw[name] = value
        elif isinstance(value, list):
            raw[name] = "\n".join(str(v) for v in value)
        else:
            raw[name] = "" if value is None else str(value)
    return raw


# The form check's codes a page words itself (with the bound or the other field); any other refusal is worded by
# the field's type ("Enter a number.").
PAGE_CODES = frozenset({"required", "below_min", "above_max", "not_integer", "in_the_past", "in_the_future",
                        "beyond_horizon", "check_failed", "criterion_unmet", "reason_required",
                        "unknown_attachment"})
TIME_CODES = frozenset({"in_the_past", "in_the_future", "beyond_horizon"})


def field_errors(step: Step, details: Any) -> tuple[dict[str, str], str | None, dict[str, dict[str, Any]]]:
    """FormInvalid details as a message code per field (the template says it in the reader's language), the
    form's general problem, and what each field's message needs: the bound it broke (a number with its unit,
    or a moment), or the field a check compares it with and that field's answer."""
    errors: dict[str, str] = {}
    params: dict[str, dict[str, Any]] = {}
    general = None
    for item in details if isinstance(details, list) else []:
        key = item.get("field") if isinstance(item, Mapping) else None
        form_field = step.field(key) if isinstance(key, str) else None
        if form_field is None or not isinstance(key, str):
            general = "form"
            continue
        message = str(item.get("message") or "")
        code = str(item.get("code") or "")
        if code in PAGE_CODES:
            errors[key] = code
            params[key] = _params(step, item)
        elif message == "is required":
            errors[key] = "required"
        elif form_field.type is FieldType.location and "lat" in message:
            errors[key] = "location_coords"
        else:
            errors[key] = form_field.type.value
    return errors, general, params


def _params(step: Step, item: Mapping[str, Any]) -> dict[str, Any]:
    code, bound = item.get("code"), item.get("bound")
    if code in ("below_min", "above_max") and isinstance(bound, int | float):
        # The unit is worded by the page (mm → 毫米 on a Chinese page), from the field itself.
        return {"bound": bound}
    if code in TIME_CODES and isinstance(bound, str):
        try:
            return {"bound": datetime.fromisoformat(bound)}
        except ValueError:
            return {}
    if code == "check_failed":
        other = step.field(str(item.get("other")))
        return {"op": item.get("op"), "other": other, "value": bound} if other is not None else {}
    return {}
