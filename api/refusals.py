"""A refusal worded for the person who reads it: one sentence per stable code, in the reader's language.

The services say why they refuse in English, naming the values (`task 12 is completed`); the API answers a
Chinese reader in Chinese, from the code (and the `reason` of its details, where one code has several), with the
service's English beside it (`message_en`), and lists each refused field with the rule it broke. The sentences
are the message catalogue's (core/locales), like the pages'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.plans.wording import Wording
from core.platform.errors import BatonError
from core.platform.templating import translations


def N_(message: str) -> str:  # noqa: N802 (gettext's conventional name for a marker)
    """Marks a message for the catalogue (tests/test_i18n.py extracts it); it is translated when said."""
    return message


# By an answer's code (a domain error's, the API's own, an HTTP status's) or a refusal's `details.reason`.
SAID: dict[str, str] = {
    # who may ask
    "not_authenticated": N_("Log in first."),
    "authentication_failed": N_("Wrong user name or password."),
    "login_throttled": N_("Too many failed logins. Try again in 15 minutes."),
    "csrf_failed": N_("The form was out of date or not sent by Baton. Reload the page and try again."),
    "forbidden": N_("You may not do this."),
    "not_found": N_("It does not exist, or it is not yours to see."),
    "position_required": N_("This needs a position you do not hold."),
    "position_unheld": N_("Nobody holds that position just now."),
    "office_decides": N_("The plan names no positions for its levels: the emergency office decides."),
    "signer_is_drafter": N_("Who drafted it may not sign it off: another person signs it."),
    # what was sent
    "invalid_request": N_("The request is not valid."),
    "bad_request": N_("The request is not valid."),
    "input_invalid": N_("Something sent is not accepted: a line break in a one-line field, or a character that "
                        "cannot be stored or published (such as a control character). Nothing was saved; remove "
                        "it and try again."),
    "form_invalid": N_("The form has errors: nothing was saved."),
    "reason_required": N_("Give a reason."),
    "casualty_decrease_needs_reason": N_("A casualty figure lower than the one checked before needs the reason "
                                         "for lowering it."),
    "evidence_required": N_("This needs evidence attached: a photo or a document."),
    "attachment_type_refused": N_("This file is not a photo (JPEG, PNG, WebP, HEIC) or a PDF, whatever its name "
                                  "says: it was not accepted."),
    "attachment_empty": N_("The file is empty: choose it again or take the photo again."),
    "attachment_too_large": N_("The file is too large: send a smaller one."),
    "body_too_large": N_("What was sent is too large."),
    "unsupported_media_type": N_("This kind of content is not accepted here."),
    "method_not_allowed": N_("This address does not take this kind of request."),
    "unknown_incident_type": N_("There is no response plan for this incident type."),
    "invalid_level": N_("This is not one of the plan's response levels."),
    "plan_invalid": N_("The plan is not valid: nothing of it was taken."),
    "geometry_invalid": N_("The area or point is not valid."),
    "invalid_filter": N_("The filter is not valid."),
    "target_invalid": N_("No task can go to that department."),
    "user_invalid": N_("The user's details are not valid."),
    "absence_invalid": N_("The absence is not valid: check the person and its dates."),
    "channel_invalid": N_("The notification channel is not valid."),
    "upward_report_invalid": N_("The report to the authority above is not valid."),
    "report_invalid": N_("The situation report is not valid."),
    "warning_invalid": N_("The warning is not valid."),
    "lesson_invalid": N_("The lesson is not valid."),
    "follow_up_invalid": N_("The follow-up item is not valid."),
    "proposal_invalid": N_("The proposed change to the plan is not valid."),
    "signal_rejected": N_("The signal is not valid."),
    "signal_out_of_window": N_("The signal's time is too far from now."),
    "occupancy_invalid": N_("Give the number of people as a whole number from 0."),
    "file_unreadable": N_("The file cannot be read: nothing of it was imported."),
    "roster_unreadable": N_("The roster cannot be read: nothing of it was imported."),
    "register_file_invalid": N_("The register file cannot be read: nothing of it was imported."),
    # the state of what it is about
    "conflict": N_("This is not possible in its present state."),
    "task_state_conflict": N_("The task is not in a state that allows this: it may have been completed or "
                              "handed back meanwhile."),
    "task_not_overdue": N_("Only an open task past its due time is chased up."),
    "incident_closed": N_("The incident is closed."),
    "open_work": N_("Required work of this stage is still open: confirm leaving it, with a reason."),
    "department_unstaffed": N_("No active user works for that department: nobody could act on the task."),
    "lease_lost": N_("Another worker has taken this incident over: try again."),
    "alert_resolved": N_("This alert has been dealt with already."),
    "authorisation_conflict": N_("This decision is not awaiting confirmation."),
    "level_proposal_conflict": N_("This proposal was decided already, or a level change made it moot."),
    "warning_state_conflict": N_("The warning is not in a state that allows this."),
    "warning_not_reviewed": N_("The warning has not been reviewed by the office yet."),
    "warning_expired": N_("The warning has expired."),
    "report_state_conflict": N_("The report is not in a state that allows this: a signed report is not edited."),
    "report_not_signed": N_("The report has not been signed off yet."),
    "user_state_conflict": N_("The user is not in a state that allows this."),
    "duty_log_conflict": N_("The duty log entry was changed meanwhile, or is closed."),
    "sheet_state_conflict": N_("The event record sheet has been reviewed already."),
    "instruction_closed": N_("This instruction is closed."),
    "instruction_tasks_open": N_("The instruction still has open tasks."),
    "signal_not_held": N_("The signal is not held for the duty desk, or was dealt with already."),
    "follow_up_state_conflict": N_("The follow-up item is not in a state that allows this."),
    "proposal_state_conflict": N_("The proposal is not in a state that allows this."),
    "resource_request_state": N_("The resource request is not in a state that allows this."),
    "not_committed": N_("Nothing is committed for this request yet."),
    "insufficient_stock": N_("Not enough in stock for this: ask for fewer, or ask another department."),
    "over_capacity": N_("That is more people than the shelter holds."),
    "replenishment_done": N_("This replenishment is done already."),
    "not_replayable": N_("This delivery cannot be sent again."),
    "answer_link_invalid": N_("This link is not valid."),
    "answer_link_expired": N_("This link has expired."),
    "answer_link_used": N_("This link has been used already."),
    # the server
    "too_many_requests": N_("Too many requests: try again shortly."),
    "signal_rate_limited": N_("Too many signals: try again shortly."),
    "pdf_busy": N_("Too many PDFs are being printed: try again shortly."),
    "pdf_unavailable": N_("This server cannot print PDFs."),
    "pdf_failed": N_("The PDF could not be made; it has been logged."),
    "database_unavailable": N_("The database is not reachable just now; nothing was stored, try again."),
    "internal_error": N_("Something went wrong on the server; it has been logged."),
}

# One refused value, by the rule it broke: the input policy's and the form check's codes, and the request
# validation's (pydantic's error types).
FIELD_SAID: dict[str, str] = {
    "required": N_("This field is required."),
    "missing": N_("This field is required."),
    "unknown_field": N_("This is not a field of this form."),
    "extra_forbidden": N_("This is not a field of this form."),
    "too_long": N_("This is too long."),
    "string_too_long": N_("This is too long."),
    "too_short": N_("This is too short."),
    "string_too_short": N_("This is too short."),
    "control_character": N_("This holds a character that is not allowed."),
    "not_text": N_("Enter text."),
    "string_type": N_("Enter text."),
    "not_a_number": N_("Enter a number."),
    "float_parsing": N_("Enter a number."),
    "float_type": N_("Enter a number."),
    "not_finite": N_("Enter a number."),
    "finite_number": N_("Enter a number."),
    "not_integer": N_("Enter a whole number: this is a count."),
    "not_whole": N_("Enter a whole number: this is a count."),
    "int_parsing": N_("Enter a whole number: this is a count."),
    "int_type": N_("Enter a whole number: this is a count."),
    "int_from_float": N_("Enter a whole number: this is a count."),
    "not_a_boolean": N_("Tick or untick the box."),
    "bool_parsing": N_("Tick or untick the box."),
    "bool_type": N_("Tick or untick the box."),
    "not_a_choice": N_("Choose one of the listed options."),
    "enum": N_("Choose one of the listed options."),
    "literal_error": N_("Choose one of the listed options."),
    "not_a_moment": N_("Enter a date and time."),
    "no_offset": N_("Enter a date and time with its time zone."),
    "datetime_parsing": N_("Enter a date and time."),
    "datetime_type": N_("Enter a date and time."),
    "out_of_range": N_("This is out of range."),
    "below_min": N_("Must be at least %(bound)s."),
    "greater_than_equal": N_("Must be at least %(bound)s."),
    "greater_than": N_("Must be more than %(bound)s."),
    "above_max": N_("Must be at most %(bound)s."),
    "less_than_equal": N_("Must be at most %(bound)s."),
    "less_than": N_("Must be less than %(bound)s."),
    "in_the_past": N_("Must not be in the past."),
    "in_the_future": N_("Must not be in the future."),
    "beyond_horizon": N_("Must be no later than %(bound)s."),
    "check_failed": N_("Does not agree with the field it is checked against."),
    "criterion_unmet": N_("This answer does not meet the plan's criteria for this decision."),
    "reason_required": N_("Give a reason."),
    "not_a_location": N_("Enter a place name, with latitude and longitude if known."),
    "coordinates": N_("Give both latitude (-90 to 90) and longitude (-180 to 180), or neither."),
    "not_a_reference": N_("Enter an attachment reference (at most 500 characters)."),
    "unknown_attachment": N_("This names a file that was not uploaded for this task: choose the file again."),
    "json_invalid": N_("This is not valid JSON."),
    "list_type": N_("Give a list."),
    "dict_type": N_("Give an object."),
    "model_attributes_type": N_("Give an object."),
    "not_an_object": N_("Give an object."),
}
SOMETHING_WRONG = N_("This is not accepted.")
REFUSED = N_("The request was refused (%(code)s).")
FIELD_LISTED = N_("%(field)s: %(why)s")
IN_STOCK = N_("Not enough in stock: %(available)s in stock, %(requested)s asked for. Ask for fewer, or ask another "
              "department.")


def language_of(accept_language: str | None, user_lang: str | None) -> str:
    """The reader's language: the user's own setting when they are known (their pages and their services' messages
    use it), else the first of Chinese and English in `Accept-Language`; Chinese when neither says."""
    if user_lang:
        return "en" if user_lang.startswith("en") else "zh"
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if weight > 0 and tag[:2] in ("zh", "en"):
            ranked.append((-weight, position, tag[:2]))
    return min(ranked)[2] if ranked else "zh"


def said(code: str, lang: str) -> str | None:
    """The sentence of `code` in `lang`, or None when the code has none."""
    english = SAID.get(code)
    return None if english is None else _gettext(english, lang)


def field_said(item: Mapping[str, Any], lang: str) -> str:
    """One refused field's rule in `lang`, with the bound it broke (a number with its unit, a moment as sent)."""
    code = str(item.get("code") or item.get("reason") or "")
    english = FIELD_SAID.get(code)
    if english is None:
        return _gettext(SOMETHING_WRONG, lang)
    if "%(bound)s" not in english:
        return _gettext(english, lang)
    bound = item.get("bound")
    if bound is None and isinstance(item.get("ctx"), Mapping):
        bound = next((v for k, v in item["ctx"].items() if k in ("ge", "gt", "le", "lt")), None)
    if isinstance(bound, int | float) and not isinstance(bound, bool):
        shown = Wording(lang).quantity(bound, item.get("unit") if isinstance(item.get("unit"), str) else None)
    else:
        shown = str(bound)[:64] if bound is not None else "—"
    return _gettext(english, lang) % {"bound": shown}


def fields_listed(items: Any, lang: str, limit: int = 10) -> str:
    """`field: why; …` for the refused fields of a refusal's details (a list of `{field, code, …}`)."""
    if isinstance(items, Mapping):
        # one field's refusal: listed when its rule is one of FIELD_SAID's (else the code's sentence says it)
        known = str(items.get("code") or items.get("reason") or "") in FIELD_SAID
        items = [items] if isinstance(items.get("field"), str) and known else []
    parts = []
    for item in items[:limit] if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            field = str(item.get("field") or "body")[:64]
            why = field_said(item, lang).rstrip("。.")
            parts.append(_gettext(FIELD_LISTED, lang) % {"field": field, "why": why})
    return ("；" if lang != "en" else "; ").join(parts)


def worded(code: str, message: str, details: Any, lang: str, *, worded_in: str = "en") -> dict[str, str]:
    """What an error answer says: `message` in the reader's language and, when that is not the language the
    service worded it in, the service's own beside it (`message_en`)."""
    lang = "en" if lang == "en" else "zh"  # a reader of both (zh-en) reads refusals in Chinese
    if lang == worded_in:
        return {"message": message}
    if lang == "en":
        english = details.get("message_en") if isinstance(details, Mapping) else None
        return {"message": str(english) if english else message}
    own = details.get("message_zh") if isinstance(details, Mapping) else None
    if isinstance(own, str) and own:
        return {"message": own, "message_en": message}
    reason = details.get("reason") if isinstance(details, Mapping) else None
    sentence = (said(str(reason), lang) if reason else None) or _with_figures(code, details, lang) or said(code, lang)
    if sentence is None:
        sentence = _gettext(REFUSED, lang) % {"code": code[:64]}
    listing = fields_listed(details, lang)
    if listing:
        sentence = f"{sentence.rstrip('。.')}：{listing}"
    return {"message": sentence, "message_en": message}


def refusal_said(exc: BatonError, lang: str) -> str:
    """A refused action as a page says it to its reader: the service's words when they are the reader's
    language, else the code's sentence (with the refused fields)."""
    return worded(exc.code, exc.message, exc.details, lang, worded_in=exc.lang)["message"]


def _with_figures(code: str, details: Any, lang: str) -> str | None:
    """The sentences that name the figures of their details (what is in stock against what was asked)."""
    if not isinstance(details, Mapping):
        return None
    figures = {k: details.get(k) for k in ("available", "requested")}
    if code == "insufficient_stock" and all(isinstance(v, int) for v in figures.values()):
        unit = details.get("unit") if isinstance(details.get("unit"), str) else None
        wording = Wording(lang)
        return _gettext(IN_STOCK, lang) % {"available": wording.quantity(figures["available"], unit),
                                           "requested": wording.quantity(figures["requested"], unit)}
    return None


def _gettext(english: str, lang: str) -> str:
    return translations(lang).gettext(english) if lang != "en" else english
