"""The release of public warnings on the office's incident page (审核签发): review or return a draft, sign it off
(a leader holding a signer's position), update or cancel the warning in force. The same services as the API
(core.sharing.warnings); a refusal is the error page with its code (403 position_required, 409 …)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request, Response
from sqlmodel import Session

from api.deps import OfficePageUser, PageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, field, page_router, redirect
from core.incidents import reads
from core.incidents.models import Incident
from core.platform.errors import NotFound, ReasonRequired
from core.sharing import warnings as release
from core.sharing.models import CapAlert, WarningState
from process_defs.actions import WARNING_COLOURS

router = page_router()


def context(session: Session, incident: Incident) -> dict[str, Any]:
    """What `_warning_release.html` shows: the incident's warnings, newest first, and the one in force."""
    alerts = list(reversed(release.of_incident(session, incident.id)))
    in_force = [a for a in release.current(session, incident.id) if a.msg_type != "Cancel"]
    return {"alerts": alerts, "in_force": in_force[-1] if in_force else None, "colours": WARNING_COLOURS,
            "unreleased": WarningState.UNRELEASED}


def _back(incident_id: str) -> Response:
    return redirect(f"/office/incidents/{incident_id}#warning-release")


@router.post("/office/incidents/{incident_id}/warnings/{alert_id}/review")
def review_draft(incident_id: str, alert_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                 form: Form) -> Response:
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, None)
    release.review(session, incident_id=incident.id, alert_id=alert_id, actor=principal.actor)
    session.commit()
    return _back(incident.id)


@router.post("/office/incidents/{incident_id}/warnings/{alert_id}/return")
def return_draft(incident_id: str, alert_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                 form: Form) -> Response:
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, None)
    release.return_draft(session, incident_id=incident.id, alert_id=alert_id, actor=principal.actor,
                         reason=field(form, "reason"))
    session.commit()
    return _back(incident.id)


@router.post("/office/incidents/{incident_id}/warnings/{alert_id}/sign")
def sign_draft(incident_id: str, alert_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
               form: Form) -> Response:
    """An office user holding a signer's position (the duty leader, say) signs the reviewed draft off."""
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, None)
    release.sign(session, incident_id=incident.id, alert_id=alert_id, signer=principal.user)
    session.commit()
    return _back(incident.id)


@router.post("/office/incidents/{incident_id}/warning-update")
def update_in_force(incident_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                    form: Form) -> Response:
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, None)
    colour = field(form, "colour") or None
    release.update(session, incident_id=incident.id, user=principal.user, key=f"page:{uuid.uuid4()}",
                   colour=colour)
    session.commit()
    return _back(incident.id)


@router.post("/office/incidents/{incident_id}/warning-cancel")
def cancel_in_force(incident_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                    form: Form) -> Response:
    checked_form(principal, form)
    incident = reads.get_incident(session, incident_id, None)
    reason = field(form, "reason").strip()
    if not reason:
        raise ReasonRequired("say why the warning is cancelled")
    release.cancel(session, incident_id=incident.id, user=principal.user, key=f"page:{uuid.uuid4()}",
                   reason=reason)
    session.commit()
    return _back(incident.id)


def to_sign(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """The reviewed drafts the reader may sign off, with their texts, for the inbox's 待签发 list."""
    return [{"alert": alert, **release.alert_texts(alert)}
            for alert in release.awaiting_signature(session, user=principal.user)]


@router.post("/warnings/{alert_id}/sign")
def sign_from_inbox(alert_id: str, request: Request, principal: PageUser, session: SessionDep,
                    form: Form) -> Response:
    """A leader of the issuing agency (a department user holding a signer's position) signs a reviewed draft off
    from their inbox; the same rule as the office's page (403 position_required for anyone else)."""
    checked_form(principal, form)
    alert = session.get(CapAlert, alert_id)
    if alert is None:
        raise NotFound(f"no warning '{alert_id}'")
    release.sign(session, incident_id=alert.incident_id, alert_id=alert.id, signer=principal.user)
    session.commit()
    return redirect("/inbox?done=signed" if principal.acts_for else "/office?done=signed")
