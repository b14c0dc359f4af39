"""A shelter's occupancy reported live, during an incident (人数上报): the shelter's owning department or the
emergency office gives how many people are in it now; the count is held to 0..capacity, stamped with its time
(`occupancy_at`) and recorded in the ledger chain `registers` (kind `shelter.occupancy_reported`), beside the
imports of the register file. The caller commits.

Every shelter is read by every logged-in user (a shared register), so another department (or a manager) finds it
but may not report for it: 403 `forbidden`, and nothing changes. Who writes is the registers' rule: the office
and administrators every entry, a department its own organisation's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.platform.clock import utcnow
from core.platform.db import new_id
from core.platform.errors import BatonError, NotFound
from core.registers.models import Shelter
from core.registers.service import RegisterForbidden, writes_all
from core.users.models import Role, User

MAX_OCCUPANCY = 10_000_000  # beyond any shelter; a bigger figure is a typing slip, not a count


class OccupancyRefused(BatonError):
    """The count is not a whole number from 0 up, or is over the shelter's capacity. The message is in the
    reporter's language; `details` carries the field, both wordings and, for `over_capacity`, the capacity."""

    code = "occupancy_invalid"
    http_status = 422

    def __init__(self, *, lang: str, en: str, zh: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(en if lang == "en" else zh,
                         details={"field": "occupancy", "message_en": en, "message_zh": zh, **(extra or {})},
                         lang="en" if lang == "en" else "zh")


class OverCapacity(OccupancyRefused):
    # 409 like a request over the stock: the figure is well formed, the shelter's capacity refuses it
    code = "over_capacity"
    http_status = 409


def may_report(user: User, shelter: Shelter) -> bool:
    """The office (and an administrator, who writes every register entry) reports for every shelter; a department
    only for the shelters its organisation owns."""
    if writes_all(user):
        return True
    return user.role == Role.department and bool(user.department) and user.department == shelter.organisation


def shelter_of(session: Session, shelter_id: str) -> Shelter:
    found = session.get(Shelter, shelter_id[:36])
    if found is None:
        raise NotFound("no such shelter")
    return found


def _count(value: Any, *, lang: str) -> int:
    """A whole number of people from a JSON number or a form's text (digits, spaces around them)."""
    if isinstance(value, bool) or value is None:
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
        number = int(value.strip())
    else:
        number = None
    if number is None or number < 0 or number > MAX_OCCUPANCY:
        raise OccupancyRefused(lang=lang, en="give the number of people in the shelter now: a whole number from 0",
                               zh="请填写避难场所当前人数：0 或正整数")
    return number


def report(session: Session, *, shelter_id: str, occupancy: Any, user: User, actor: str,
           now: datetime | None = None) -> Shelter:
    """Set the shelter's occupancy as `user` reports it (refused: 403 for one who may not, 422
    `occupancy_invalid`, 409 `over_capacity`), stamp `occupancy_at` and append the report to the chain
    `registers`."""
    shelter = shelter_of(session, shelter_id)
    if not may_report(user, shelter):
        raise RegisterForbidden(f"only {shelter.organisation}, which runs the shelter, or the emergency office "
                                "reports its occupancy")
    lang = user.lang
    number = _count(occupancy, lang=lang)
    if number > shelter.capacity:
        raise OverCapacity(lang=lang, en=f"{number} is more than the shelter holds ({shelter.capacity}): give a "
                                         f"number from 0 to {shelter.capacity}",
                           zh=f"{number} 人超过该避难场所可容纳人数（{shelter.capacity}）：请填写 0 至 "
                              f"{shelter.capacity}", extra={"capacity": shelter.capacity})
    at = now or utcnow()
    previous = shelter.occupancy
    shelter.occupancy, shelter.occupancy_at = number, at
    shelter.updated_at, shelter.updated_by = at, actor
    session.add(shelter)
    session.flush()
    ledger.append_to(session, chain=ledger.REGISTERS, kind=LedgerKind.shelter_occupancy_reported, actor=actor,
                     idempotency_key=f"occupancy:{new_id()}", subject=f"shelter:{shelter.id}",
                     from_party=shelter.organisation,
                     handed_over={"shelter": shelter.id, "occupancy": number, "at": at.isoformat()},
                     details={"shelter": shelter.id, "code": shelter.code, "occupancy": number,
                              "previous": previous, "capacity": shelter.capacity}, at=at)
    return shelter
