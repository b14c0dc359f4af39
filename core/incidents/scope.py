"""Who may see what a department reported: one rule for the board, the API, pages, webhooks and exports.

- The reporting department and readers who see everything (office, managers) always see it.
- `public` and `internal` outputs reach the departments the plan names, or every department on the
  incident when it says `all`; `public` ones may also be published.
- `restricted` outputs reach only the departments named explicitly; `all` does not open them.
"""

from __future__ import annotations

from sqlmodel import Session, select

from core.incidents.models import DepartmentTask

EVERYONE = "all"


def can_see(reader: str | None, *, owner: str, share_with: list[str], classification: str) -> bool:
    if reader is None or reader == owner:
        return True
    if classification == "restricted":
        return reader in share_with
    return EVERYONE in share_with or reader in share_with


def departments_on(session: Session, incident_id: str) -> set[str]:
    return set(session.exec(select(DepartmentTask.department).where(DepartmentTask.incident_id == incident_id)
                            .distinct()).all())


def recipients(session: Session, incident_id: str, *, owner: str, share_with: list[str],
               classification: str, planned: set[str] | None = None) -> list[str]:
    """The departments (other than the owner) an output goes out to: those on the incident, those the plan
    brings in at the incident's level (`planned`, so a sub-district hears the forecast before its own step
    starts), and those named."""
    candidates = departments_on(session, incident_id) | (planned or set()) | {d for d in share_with if d != EVERYONE}
    return sorted(d for d in candidates if d != owner and can_see(d, owner=owner, share_with=share_with,
                                                                  classification=classification))
