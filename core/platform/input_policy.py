"""The input policy: what Baton accepts from outside as text, a moment, a number or a page offset.

Whatever Baton stores may later be published as XML (the CAP alerts, the public Atom feed), shown on a page in
Baton's time zone, sent as JSON to a department's system, or printed in a report; PostgreSQL refuses a NUL in
text, XML most control characters, JSON NaN, and Python's clock a year past 9999. So every edge that takes input
(the API's request models, the pages' forms, signal intake, step outputs, reports, follow-ups, plan proposals)
holds it to these rules, written here once:

- text is Unicode NFC, has no control character (C0, DEL, C1) except a tab or a newline where the field is
  multi-line (CR and CRLF become a newline), no lone surrogate and no U+FFFE/U+FFFF (XML cannot carry them),
  and is at most as long as its field allows (after normalising);
- a moment carries a UTC offset (unless its field says a time without one is read in Baton's time zone) and
  lies in the years 1900 to 2200;
- a number is finite (no NaN or ±Infinity, also not the text "Infinity") and within ±10^15;
- a page offset is 0 to 10^9.

The plain functions raise `Violation` (a ValueError) with a stable reason code; the `Annotated` types below
apply them to pydantic request models (FastAPI answers 422 `invalid_request`, the reason in `details`);
`Refusals` gathers a service's violations into one `InputInvalid` (422 `input_invalid`).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

from annotated_types import Ge, Le
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from core.platform.errors import BatonError, InputInvalid
from core.platform.settings import get_settings

MIN_YEAR, MAX_YEAR = 1900, 2200
EARLIEST = datetime(MIN_YEAR, 1, 1, tzinfo=UTC)
LATEST = datetime(MAX_YEAR, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
# Any real count, measure or amount fits; and every integer up to it is exact as a float (2^53 ≈ 9·10^15).
MAX_NUMBER = 10**15
MAX_OFFSET = 10**9
MAX_TEXT = 1_000_000  # no field is longer (the body limit is 1 MB); each field has its own, smaller bound

# Control characters (C0, DEL, C1), lone surrogates, and the two characters XML 1.0 excludes from the BMP.
_NOT_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_NOT_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
# What XML 1.0 cannot carry at all: the repair of text that reaches a renderer without passing this policy.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

T = TypeVar("T")


class Violation(ValueError):
    """One value breaks the policy: `reason` is a stable code, `message` says why in English."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# -- the rules ------------------------------------------------------------------------------------------------
def text(value: str, *, max_length: int = MAX_TEXT, multiline: bool = False) -> str:
    """`value` NFC-normalised (newlines as LF when multi-line), or a Violation."""
    if multiline and "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    bad = (_NOT_TEXT if multiline else _NOT_LINE).search(value)
    if bad is not None:
        kind = ("a line break or tab" if bad.group() in "\n\t"
                else f"the character U+{ord(bad.group()):04X}, which cannot be stored or published")
        raise Violation("control_character", f"must not contain {kind} (at position {bad.start() + 1})")
    if not unicodedata.is_normalized("NFC", value):
        value = unicodedata.normalize("NFC", value)
    if len(value) > max_length:
        raise Violation("too_long", f"must be at most {max_length} characters")
    return value


def moment(value: datetime, *, local: tzinfo | None = None) -> datetime:
    """`value` if it carries an offset (or `local` gives it one) and lies in the years 1900 to 2200."""
    if value.tzinfo is None or value.utcoffset() is None:
        if local is None:
            raise Violation("no_offset", "must carry a UTC offset, e.g. 2026-07-20T18:00:00+08:00")
        value = value.replace(tzinfo=local)
    if not (EARLIEST <= value <= LATEST):
        raise Violation("out_of_range", f"must lie in the years {MIN_YEAR} to {MAX_YEAR}")
    return value


def moment_text(value: str, *, local: tzinfo | None = None) -> datetime:
    """An ISO 8601 date and time (`Z` allowed) held to `moment`."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise Violation("not_a_moment", "must be an ISO 8601 date and time, e.g. 2026-07-20T18:00:00+08:00") from None
    return moment(parsed, local=local)


def number(value: Any, *, low: float = -MAX_NUMBER, high: float = MAX_NUMBER) -> int | float:
    """`value` if it is a finite JSON number (not a boolean, not text) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Violation("not_a_number", "must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Violation("not_finite", "must be a finite number (not NaN or Infinity)")
    if not (low <= value <= high):
        raise Violation("out_of_range", f"must be from {low:g} to {high:g}")
    return value


def xml_safe(value: str) -> str:
    """`value` without the characters XML 1.0 cannot carry: how a renderer repairs text that never passed this
    policy (stored before it, or written by a planner), rather than failing the whole document."""
    return _NOT_XML.sub("", value)


# -- for services: every field's violations at once -------------------------------------------------------------
class Refusals:
    """Check a service's fields one by one and refuse them all together:

        refusals = Refusals()
        title = refusals.check("title", text, title, max_length=200)
        refusals.raise_any()  # InputInvalid naming every bad field, if there was one
    """

    def __init__(self) -> None:
        self.problems: list[dict[str, str]] = []

    def check(self, field: str, rule: Callable[..., T], value: Any, **options: Any) -> T:
        try:
            return rule(value, **options)
        except Violation as exc:
            self.problems.append({"field": field, "reason": exc.reason, "message": exc.message})
            return value  # type: ignore[no-any-return]  # kept as given: raise_any refuses it before use

    def raise_any(self, error: type[BatonError] = InputInvalid) -> None:
        """Refuse with `error` (a service's own 422, or InputInvalid) listing every bad field."""
        if self.problems:
            listing = "; ".join(f"{p['field']}: {p['message']}" for p in self.problems)
            raise error(f"the input is not accepted: {listing}", details=self.problems)


def checked(field: str, rule: Callable[..., T], value: Any, **options: Any) -> T:
    """One field: its clean value, or InputInvalid."""
    refusals = Refusals()
    clean = refusals.check(field, rule, value, **options)
    refusals.raise_any()
    return clean


# -- for pydantic request models ---------------------------------------------------------------------------------
def _pydantic(rule: Callable[..., Any], **options: Any) -> Callable[[Any], Any]:
    def run(value: Any) -> Any:
        try:
            return rule(value, **options)
        except Violation as exc:
            raise PydanticCustomError(exc.reason, exc.message) from None

    return run


def _text_before(multiline: bool) -> Callable[[Any], Any]:
    # Before the str schema, so that the field's max_length counts the normalised text; a non-string is left
    # for the str schema to refuse.
    checker = _pydantic(text, multiline=multiline)
    return lambda value: checker(value) if isinstance(value, str) else value


Line = Annotated[str, BeforeValidator(_text_before(multiline=False))]
"""One line of text (a title, a name, a key); give the field its `max_length`."""
Lines = Annotated[str, BeforeValidator(_text_before(multiline=True))]
"""Text that may hold tabs and newlines (a description, a note, a reason); give the field its `max_length`."""
Moment = Annotated[datetime, AfterValidator(_pydantic(moment))]
"""A date and time with a UTC offset, in the years 1900 to 2200."""
Number = Annotated[float, Field(allow_inf_nan=False), Ge(-MAX_NUMBER), Le(MAX_NUMBER)]
"""A finite number within ±10^15."""
Count = Annotated[int, Ge(0), Le(MAX_NUMBER)]
"""A whole number from 0 to 10^15."""
Offset = Annotated[int, Ge(0), Le(MAX_OFFSET)]
"""Where a page of a listing starts: 0 to 10^9."""



def _in_baton_zone(value: datetime) -> datetime:
    checked_value: datetime = _pydantic(moment, local=ZoneInfo(get_settings().timezone))(value)
    return checked_value


LocalMoment = Annotated[datetime, AfterValidator(_in_baton_zone)]
"""A date and time in the years 1900 to 2200; without an offset it is read in Baton's time zone."""
