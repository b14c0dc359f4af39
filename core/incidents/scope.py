"""Who may see what a department reported, field by field: one rule for the board, task inputs, the API, pages,
webhooks, exports and published warnings.

The rule itself is the plan language's (`process_defs.schema.reaches`, which the plan check applies too): a
value's share is its form field's own `share`, else its step's (`Step.field_share`), and `Step.visible_outputs`
keeps what a reader may see. A reader is a department key, `None` for those who see everything (office,
managers, administrators), or `PUBLIC` for the world.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, select

from core.incidents.models import DepartmentTask
from process_defs.schema import EVERYONE, PUBLIC, Classification, Share, reaches

__all__ = ["EVERYONE", "PUBLIC", "can_see", "covers", "departments_on", "reaches", "recipients"]


def can_see(reader: str | None, *, owner: str, share_with: list[str], classification: str) -> bool:
    """`reaches` for a stored scope (a situation report's `share_with` and `classification`)."""
    return reaches(reader, owner=owner, share=Share(with_=share_with, classification=Classification(classification)))


def covers(share: Share | None, *, owner: str, audience: Share | None, audience_owner: str) -> bool:
    """Whether everyone who may read a value under (`audience`, `audience_owner`) may also read one under
    (`share`, `owner`): what a value copied into another step's outputs must satisfy (a compiled summary)."""
    readers = {audience_owner, *(audience.with_ if audience is not None else [])} - {EVERYONE}
    if audience is not None and audience.classification is Classification.public \
            and not reaches(PUBLIC, owner=owner, share=share):
        return False
    opened_to_all = audience is not None and audience.all_departments \
        and audience.classification is not Classification.restricted
    if opened_to_all and (share is None or share.classification is Classification.restricted
                          or not share.all_departments):
        return False
    return all(reaches(reader, owner=owner, share=share) for reader in readers)


def departments_on(session: Session, incident_id: str) -> set[str]:
    return set(session.exec(select(DepartmentTask.department).where(DepartmentTask.incident_id == incident_id)
                            .distinct()).all())


def recipients(session: Session, incident_id: str, *, owner: str, shares: Iterable[Share],
               planned: set[str] | None = None) -> list[str]:
    """The departments (other than the owner) a value goes out to under any of `shares`: those on the incident,
    those the plan brings in at the incident's level (`planned`, so a sub-district hears the forecast before its
    own step starts), and those named."""
    scopes = list(shares)
    named = {d for share in scopes for d in share.with_ if d != EVERYONE}
    candidates = departments_on(session, incident_id) | (planned or set()) | named
    return sorted(d for d in candidates
                  if d != owner and any(reaches(d, owner=owner, share=share) for share in scopes))
