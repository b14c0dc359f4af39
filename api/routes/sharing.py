"""Information sharing: the situation board and reports, public warnings, deliveries to department systems,
monitoring signals in, and the situation-report export."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from pydantic import Field

from api.deps import (
    ActingUser,
    CurrentUser,
    OfficeUser,
    Principal,
    ReviewerUser,
    SessionDep,
    idempotency_digest,
)
from api.schemas import LocationIn, Strict
from core.incidents import reads
from core.incidents.service import COMMAND
from core.outbox.service import attempts, get_delivery, list_deliveries, public, replay
from core.platform.input_policy import Count, Line, Lines, Moment, Number, Offset
from core.reports.sitrep import sitrep
from core.sharing import warnings as release
from core.sharing.board import after, board, key_figures, post_report
from core.sharing.models import CapAlert
from core.sharing.warnings import current
from core.signals import intake
from core.signals.intake import SignalRateLimited, SignalStatus, admit, receive, source_for_key
from core.signals.models import Signal
from process_defs.actions import PublishWarningParams
from process_defs.schema import Text, parse_duration

router = APIRouter(tags=["sharing"])


class ReportIn(Strict):
    text: Lines = Field(min_length=1, max_length=10_000)
    figures: dict[Annotated[Line, Field(max_length=64)], Number] = Field(default_factory=dict, max_length=50)
    location: LocationIn | None = None
    share_with: list[Annotated[Line, Field(max_length=64)]] = Field(default_factory=lambda: ["all"], min_length=1,
                                                                     max_length=50)
    classification: Literal["public", "internal", "restricted"] = "internal"


class WarningText(Strict):
    """A warning's text in Chinese (shown first) and English."""

    zh: Lines = Field(min_length=1, max_length=2000)
    en: Lines = Field(min_length=1, max_length=2000)


Colour = Literal["blue", "yellow", "orange", "red"]


class WarningIn(Strict):
    """A warning the office drafts itself (issuing agency: the emergency office); like every draft it is published
    only when reviewed and signed off. `Update` and `Cancel` act on the warning in force at once (see
    `/warnings/update` and `/warnings/cancel`)."""

    msg_type: Literal["Alert", "Update", "Cancel"] = "Alert"
    event: WarningText
    headline: WarningText
    instruction: WarningText
    description: WarningText | None = None
    colour: Colour | None = Field(default=None, description="The signal colour; unset: the level's colour.")
    valid_for: Annotated[str, Field(pattern=r"^P[0-9WDTHMS.]+$", max_length=32)] = "PT24H"
    category: Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                      "CBRNE", "Other"] = "Met"
    response_type: Literal["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear",
                           "None"] = "Prepare"
    polygons: list[Annotated[str, Field(max_length=20000)]] | None = Field(
        default=None, max_length=20,
        description="The area the warning applies to, as CAP polygons (`lat,lon lat,lon …`, WGS-84, closed); the "
                    "incident's place gives a circle in any case.")


class SignalIn(Strict):
    kind: Line = Field(min_length=1, max_length=64)
    area: Line | None = Field(default=None, max_length=200)
    value: Number | None = None
    unit: Line | None = Field(default=None, max_length=32)
    observed_at: Moment | None = Field(
        default=None, description="When it was observed; refused outside the freshness window "
                                  "(BATON_SIGNAL_MAX_AGE_SECONDS ago to BATON_SIGNAL_MAX_AHEAD_SECONDS ahead).")
    lat: Number | None = Field(default=None, ge=-90, le=90)
    lon: Number | None = Field(default=None, ge=-180, le=180)
    xml: Lines | None = Field(default=None, max_length=200_000)
    syndrome: Line | None = Field(default=None, max_length=100)
    cases: Count | None = None
    over_warning_m: Number | None = None
    over_guarantee_m: Number | None = None
    source_id: Line | None = Field(default=None, max_length=200)


class ReturnIn(Strict):
    reason: Lines = Field(min_length=1, max_length=2000)


class WarningChanges(Strict):
    """What a redraft or an update changes: a new colour or expiry words the texts again; a text given replaces
    the worded one."""

    colour: Colour | None = None
    expires_at: Moment | None = None
    headline: WarningText | None = None
    description: WarningText | None = None
    instruction: WarningText | None = None
    polygons: list[Annotated[str, Field(max_length=20000)]] | None = Field(
        default=None, max_length=20,
        description="A redraft: the area the warning applies to, as CAP polygons (`lat,lon lat,lon …`, WGS-84, "
                    "closed); the incident's place gives a circle in any case.")

    def texts(self) -> dict[str, Any]:
        return {name: (getattr(self, name).model_dump() if getattr(self, name) is not None else None)
                for name in ("headline", "description", "instruction")}


class CancelIn(Strict):
    reason: Lines = Field(min_length=1, max_length=2000, description="Published as the cancellation's text.")


class DismissIn(Strict):
    reason: Lines = Field(min_length=1, max_length=2000)


def _reader(principal: CurrentUser) -> str | None:
    return None if principal.sees_all else principal.user.department


def _alert(alert: CapAlert) -> dict[str, Any]:
    return {"id": alert.id, "identifier": alert.identifier, "msg_type": alert.msg_type, "status": alert.status,
            "state": alert.state, "published": alert.published, "references": alert.references,
            "superseded_by": alert.superseded_by, "sent_at": alert.sent_at, "issued_by": alert.issued_by,
            "department": alert.department, "step": alert.step_key, "colour": alert.colour,
            "expires_at": alert.expires_at, "revision": alert.revision, "signers": alert.signers,
            "drafted_by": alert.drafted_by, "reviewed_by": alert.reviewed_by, "returned_reason": alert.returned_reason,
            "signed_by": alert.signed_by, "signed_position": alert.signed_position, "signed_at": alert.signed_at,
            "texts": {k: alert.content.get(k) for k in ("headline", "description", "instruction", "area", "issuer")}}


def _literal(text: WarningText) -> Text:
    """The office's own words, taken as written: braces are text here, not a plan's placeholders."""
    return Text(**{lang: value.replace("{", "{{").replace("}", "}}") for lang, value in text.model_dump().items()})


def _key(principal: Principal, idempotency_key: str | None) -> str:
    return idempotency_digest(principal.user.id, idempotency_key) if idempotency_key else f"user:{uuid.uuid4()}"


@router.get("/api/incidents/{incident_id}/board")
def get_board(incident_id: str, principal: CurrentUser, session: SessionDep,
              since: Moment | None = None) -> dict[str, Any]:
    """Everything shared on the incident, newest first, as far as the reader's department may see it, and the key
    figures (dead, missing, injured, people moved, shelters open, …) summed from what the reader may see: per
    department its latest report, added up over the departments, each total with its sources. `since` limits the
    items, not the figures."""
    incident = reads.get_incident(session, incident_id, _reader(principal))
    items = board(session, incident, _reader(principal))
    return {"incident_id": incident.id, "code": incident.code,
            "figures": [figure.to_json() for figure in key_figures(items)], "items": after(items, since)}


@router.post("/api/incidents/{incident_id}/reports", status_code=201)
def report(incident_id: str, body: ReportIn, principal: ActingUser, session: SessionDep) -> dict[str, Any]:
    """An ad-hoc situation report from the reader's department, shared with the scope it names."""
    incident = reads.get_incident(session, incident_id, _reader(principal))
    department = principal.acts_for or COMMAND
    location = body.location
    row = post_report(session, incident_id=incident.id, department=department, author=principal.actor,
                      text=body.text, figures=dict(body.figures), share_with=body.share_with,
                      classification=body.classification, location_name=location.name if location else None,
                      lat=location.lat if location else None, lon=location.lon if location else None)
    return {"id": row.id, "incident_id": incident.id, "department": department, "created_at": row.created_at,
            "classification": row.classification, "share_with": row.share_with}


@router.get("/api/incidents/{incident_id}/warnings")
def warnings(incident_id: str, principal: ReviewerUser, session: SessionDep) -> dict[str, Any]:
    incident = reads.get_incident(session, incident_id, None)
    from sqlmodel import col, select

    rows = session.exec(select(CapAlert).where(CapAlert.incident_id == incident.id)
                        .order_by(col(CapAlert.sent_at))).all()
    return {"incident_id": incident.id, "items": [_alert(a) for a in rows],
            "current": [a.id for a in current(session, incident.id)]}


@router.post("/api/incidents/{incident_id}/warnings", status_code=201)
def warn(incident_id: str, body: WarningIn, principal: OfficeUser, session: SessionDep,
         idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
    """Draft a public warning in the office's name (`Alert`: published only once reviewed and signed off), or update
    or cancel the warning in force at once (`Update`, `Cancel`)."""
    incident = reads.get_incident(session, incident_id, None)
    key = _key(principal, idempotency_key)
    if body.msg_type == "Update":
        return _alert(release.update(session, incident_id=incident.id, user=principal.user, key=key,
                                     colour=body.colour, headline=body.headline.model_dump(),
                                     instruction=body.instruction.model_dump(),
                                     description=body.description.model_dump() if body.description else None))
    if body.msg_type == "Cancel":
        return _alert(release.cancel(session, incident_id=incident.id, user=principal.user, key=key,
                                     reason=body.description.zh if body.description else body.headline.zh))
    try:
        parse_duration(body.valid_for)
    except ValueError as exc:
        raise release.WarningInvalid(str(exc)) from exc
    params = PublishWarningParams(event=_literal(body.event), headline=_literal(body.headline),
                                  instruction=_literal(body.instruction), category=body.category,
                                  response_type=body.response_type, valid_for=body.valid_for,
                                  description=[_literal(body.description)] if body.description else [])
    alert = release.draft(session, incident_id=incident.id, params=params, department=COMMAND, actor=principal.actor,
                          key=key, colour=body.colour, polygons=body.polygons)
    assert alert is not None  # an Alert is always drafted
    return _alert(alert)


@router.post("/api/incidents/{incident_id}/warnings/update", status_code=201,
             responses={403: {"description": "Neither the office nor a signer (`position_required`)"},
                        409: {"description": "No released warning in force (`warning_state_conflict`)"}})
def update_warning(incident_id: str, body: WarningChanges, principal: CurrentUser, session: SessionDep,
                   idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
    """Update the released warning in force (CAP Update referencing it), at once: the office or a signer."""
    incident = reads.get_incident(session, incident_id, _reader(principal))
    return _alert(release.update(session, incident_id=incident.id, user=principal.user,
                                 key=_key(principal, idempotency_key), colour=body.colour,
                                 expires_at=body.expires_at, **body.texts()))


@router.post("/api/incidents/{incident_id}/warnings/cancel", status_code=201,
             responses={403: {"description": "Neither the office nor a signer (`position_required`)"},
                        409: {"description": "No released warning in force (`warning_state_conflict`)"}})
def cancel_warning(incident_id: str, body: CancelIn, principal: CurrentUser, session: SessionDep,
                   idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
    """Cancel (解除) the released warning in force (CAP Cancel referencing it), at once: the office or a signer."""
    incident = reads.get_incident(session, incident_id, _reader(principal))
    return _alert(release.cancel(session, incident_id=incident.id, user=principal.user,
                                 key=_key(principal, idempotency_key), reason=body.reason))


@router.post("/api/incidents/{incident_id}/warnings/{alert_id}/review",
             responses={409: {"description": "Not a draft (`warning_state_conflict`)"}})
def review_warning(incident_id: str, alert_id: str, principal: OfficeUser, session: SessionDep) -> dict[str, Any]:
    """The emergency office has reviewed the draft (审核); a leader signs it off next."""
    incident = reads.get_incident(session, incident_id, None)
    return _alert(release.review(session, incident_id=incident.id, alert_id=alert_id, actor=principal.actor))


@router.post("/api/incidents/{incident_id}/warnings/{alert_id}/return",
             responses={409: {"description": "Not an unsigned draft (`warning_state_conflict`)"}})
def return_warning(incident_id: str, alert_id: str, body: ReturnIn, principal: OfficeUser, session: SessionDep
                   ) -> dict[str, Any]:
    """Return the draft to the drafting department with the reason (退回修改)."""
    incident = reads.get_incident(session, incident_id, None)
    return _alert(release.return_draft(session, incident_id=incident.id, alert_id=alert_id, actor=principal.actor,
                                       reason=body.reason))


@router.post("/api/incidents/{incident_id}/warnings/{alert_id}/redraft",
             responses={409: {"description": "Not a returned draft (`warning_state_conflict`)"}})
def redraft_warning(incident_id: str, alert_id: str, body: WarningChanges, principal: ActingUser,
                    session: SessionDep) -> dict[str, Any]:
    """The drafting department (or the office) redrafts a returned draft; it goes back to the office's review."""
    incident = reads.get_incident(session, incident_id, _reader(principal))
    return _alert(release.redraft(session, incident_id=incident.id, alert_id=alert_id, actor=principal.actor,
                                  department=None if principal.sees_all else principal.acts_for,
                                  colour=body.colour, expires_at=body.expires_at, polygons=body.polygons,
                                  **body.texts()))


@router.post("/api/incidents/{incident_id}/warnings/{alert_id}/sign",
             responses={403: {"description": "Not a signer's position (`position_required`)"},
                        409: {"description": "Not reviewed (`warning_not_reviewed`), signed already, expired "
                                             "(`warning_expired`), or the signer drafted it"}})
def sign_warning(incident_id: str, alert_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """A leader signs the reviewed warning off (签发), which publishes it (an Exercise for a drill)."""
    incident = reads.get_incident(session, incident_id, _reader(principal))
    return _alert(release.sign(session, incident_id=incident.id, alert_id=alert_id, signer=principal.user))


@router.get("/api/deliveries")
def deliveries(principal: ReviewerUser, session: SessionDep,
               outcome: Annotated[str | None, Query(pattern="^(pending|delivered|failed|no_endpoint)$")] = None,
               incident: Annotated[str | None, Query(max_length=64)] = None,
               target: Annotated[str | None, Query(max_length=64)] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100,
               offset: Offset = 0) -> dict[str, Any]:
    """The delivery log; `outcome=failed` is the dead-letter list."""
    incident_id = reads.get_incident(session, incident, None).id if incident else None
    page = list_deliveries(session, outcome=outcome, incident_id=incident_id, target=target, limit=limit,
                           offset=offset)
    return {"items": [public(d) for d in page.items], "total": page.total, "limit": limit, "offset": offset}


@router.get("/api/deliveries/{delivery_id}")
def delivery(delivery_id: str, principal: ReviewerUser, session: SessionDep) -> dict[str, Any]:
    row = get_delivery(session, delivery_id)
    return {**public(row, with_payload=True),
            "attempt_log": [{"number": a.number, "at": a.at, "status_code": a.status_code, "error": a.error,
                             "latency_ms": a.latency_ms} for a in attempts(session, delivery_id)]}


@router.post("/api/deliveries/{delivery_id}/replay")
def replay_delivery(delivery_id: str, principal: OfficeUser, session: SessionDep) -> dict[str, Any]:
    """Send a dead-lettered message again (same message id, so receivers can drop repeats)."""
    return public(replay(session, delivery_id=delivery_id, actor=principal.actor))


@router.post("/api/signals", status_code=201,
             responses={429: {"description": "The source is over its rate (`signal_rate_limited`, Retry-After)"}})
def signal_in(body: SignalIn, session: SessionDep,
              x_api_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
    """A monitoring signal, authenticated by its source's API key (not a user login). A source over its hourly
    cap of incidents has its signal held for the duty desk (`outcome: held`) instead of opening one."""
    source = source_for_key(session, x_api_key)
    try:
        admit(session, source=source)
    except SignalRateLimited:
        session.commit()  # the bucket and the audit entry stay, though the request fails
        raise
    session.commit()  # a signal refused below for its content has still used up its share of the rate
    result = receive(session, source=source, payload=body.model_dump(exclude_none=True, mode="json"))
    incident = result.incident
    return {"signal_id": result.signal.id, "outcome": result.signal.outcome, "level": result.signal.level,
            "incident_id": incident.id if incident else None, "code": incident.code if incident else None}


def _signal(row: Signal) -> dict[str, Any]:
    return {"id": row.id, "source": row.source, "kind": row.kind, "rule": row.rule, "level": row.level,
            "status": row.outcome, "received_at": row.received_at, "observed_at": row.observed_at,
            "payload": row.payload, "incident_id": row.incident_id, "handled_by": row.handled_by,
            "handled_at": row.handled_at, "reason": row.reason}


@router.get("/api/signals")
def signals(principal: ReviewerUser, session: SessionDep,
            status: SignalStatus | None = None,
            source: Annotated[str | None, Query(max_length=64)] = None,
            limit: Annotated[int, Query(ge=1, le=500)] = 100,
            offset: Offset = 0) -> dict[str, Any]:
    """Signals as received and what each did, newest first; `status=held` is the duty desk's queue: signals
    over their source's hourly cap of incidents, waiting to be opened or dismissed."""
    page = intake.list_signals(session, status=status, source=source, limit=limit, offset=offset)
    return {"items": [_signal(s) for s in page.items], "total": page.total, "limit": limit, "offset": offset}


@router.post("/api/signals/{signal_id}/open")
def open_held_signal(signal_id: str, principal: OfficeUser, session: SessionDep) -> dict[str, Any]:
    """The duty desk opens the incident a held signal asks for (or merges it into the one open for it now)."""
    result = intake.release(session, signal_id=signal_id, actor=principal.actor)
    incident = result.incident
    return {**_signal(result.signal), "code": incident.code if incident else None}


@router.post("/api/signals/{signal_id}/dismiss")
def dismiss_held_signal(signal_id: str, body: DismissIn, principal: OfficeUser, session: SessionDep
                        ) -> dict[str, Any]:
    """The duty desk decides a held signal needs no incident, and says why."""
    return _signal(intake.dismiss(session, signal_id=signal_id, actor=principal.actor, reason=body.reason))


@router.get("/api/incidents/{incident_id}/sitrep")
def get_sitrep(incident_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """An EDXL-SitRep-like situation report, scoped like the board."""
    incident = reads.get_incident(session, incident_id, _reader(principal))
    return sitrep(session, incident, _reader(principal), prepared_by=principal.actor)
