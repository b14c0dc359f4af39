"""Domain errors. Each carries a stable code; the API maps them to HTTP once, the CLI prints them."""

from __future__ import annotations

from typing import Any


class BatonError(Exception):
    code = "baton_error"
    http_status = 400

    def __init__(self, message: str, *, details: Any = None, retry_after: int | None = None,
                 lang: str = "en") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after = retry_after  # seconds, for a refusal that passes (sent as Retry-After)
        # The language `message` is in: English, unless the service worded it for its reader (a position's name
        # in the user's language); the API words it for any other reader (api/refusals.py).
        self.lang = lang


class NotFound(BatonError):
    code = "not_found"
    http_status = 404


class UnknownIncidentType(BatonError):
    code = "unknown_incident_type"
    http_status = 422


class InvalidLevel(BatonError):
    code = "invalid_level"
    http_status = 422


class TaskStateConflict(BatonError):
    """The task is not in a state that allows this action (e.g. completing it twice)."""

    code = "task_state_conflict"
    http_status = 409


class IncidentClosed(BatonError):
    code = "incident_closed"
    http_status = 409


class FormInvalid(BatonError):
    """Outputs do not match the step's form; `details` lists `{field, message}` for each bad field."""

    code = "form_invalid"
    http_status = 422


class LeaseLost(BatonError):
    """This worker no longer holds the incident; another worker has taken it over."""

    code = "lease_lost"
    http_status = 409


class PlanInvalid(BatonError):
    code = "plan_invalid"
    http_status = 422


class ReasonRequired(BatonError):
    """An action that must say why (a level change, a hand-back) came without a reason."""

    code = "reason_required"
    http_status = 422


class InputInvalid(BatonError):
    """Input that breaks the input policy (core/platform/input_policy.py); `details` lists
    `{field, reason, message}` for each bad field."""

    code = "input_invalid"
    http_status = 422


class OpenWork(BatonError):
    """Leaving a stage (a gate's decision, a lower level) would cancel open tasks: `details.open` lists them;
    the request must confirm it with a reason."""

    code = "open_work"
    http_status = 409


class DepartmentUnstaffed(BatonError):
    """Nobody active in the department can act on a task (`core.incidents.permissions.able_to_act`)."""

    code = "department_unstaffed"
    http_status = 409


class AlertResolved(BatonError):
    """The office's choice on a hand-back alert was already made, or there is no open alert on the task."""

    code = "alert_resolved"
    http_status = 409


class AttachmentRefused(BatonError):
    """An uploaded file that is not one of the kinds a form takes (a photo: JPEG, PNG, WebP, HEIC; a PDF), judged
    by its own bytes, not by its name or what the sender said it is."""

    code = "attachment_type_refused"
    http_status = 415


class AttachmentTooLarge(BatonError):
    """An uploaded file over `attachment_max_bytes`."""

    code = "attachment_too_large"
    http_status = 413


class AttachmentEmpty(BatonError):
    """An uploaded file with nothing in it."""

    code = "attachment_empty"
    http_status = 422


class EvidenceRequired(BatonError):
    """A rectification (整改) is closed only with evidence: at least one photo or document sent for it."""

    code = "evidence_required"
    http_status = 422
