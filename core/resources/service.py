"""Resources in incidents: a department asks for reserves (what, how many, where, by when), the owning department
approves all or part (drawing the reserve down) or refuses with a reason, dispatches, the requester confirms
receipt, and what was not consumed goes back into stock. A reserve under its safety stock opens a replenishment
for its owner. Every step is one ledger entry on the incident.

Stock is drawn down exactly once and never below zero, on SQLite and PostgreSQL alike:

- the request's state changes by one guarded `UPDATE … WHERE status = <expected>` (a replayed or concurrent
  approval finds it changed and moves no stock; a replay with the same terms is answered with the request as it is);
- the draw-down is one guarded `UPDATE register_reserve SET quantity = quantity - n WHERE id = … AND quantity >= n`
  whose row count is checked, in the approving transaction (a refusal rolls the state change back with it);
- each movement is a `ReserveMovement` unique per request and kind.

Who may do what is `core.incidents.permissions` (`acts_for`, `may_act`): the requester's side is the department
that asked, the supplier's side the owning department; who sees a request: `visible_to`. Services do not commit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from core.incidents import permissions
from core.incidents.models import Incident, IncidentStatus
from core.incidents.reads import involved
from core.incidents.service import lock_incident
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import registry
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError, IncidentClosed, InputInvalid, NotFound, ReasonRequired
from core.platform.input_policy import Refusals, Violation
from core.registers.models import MaterialReserve
from core.resources.models import (
    MovementKind,
    Replenishment,
    ReplenishmentStatus,
    RequestStatus,
    ReserveMovement,
    ResourceRequest,
)
from core.users.models import Role, User

MAX_QUANTITY = 10**9  # no reserve holds more units of anything
LEAD_LIMIT = timedelta(days=30)  # "by when" lies at most this far ahead …
PAST_GRACE = timedelta(minutes=10)  # … and not before now (less a little for a slow form)
# WGS-84 bounds of China (mainland, Hainan, Taiwan, the South China Sea islands): a point outside is a mistake.
CHINA_LON = (73.4, 135.1)
CHINA_LAT = (3.8, 53.6)
CATEGORY_DIGITS = (1, 3, 5, 7)  # GB/T 38565-2020: one digit, then up to three two-digit levels


class InsufficientStock(BatonError):
    """More was asked (or approved) than the reserve holds: `details.available` names what is in stock."""

    code = "insufficient_stock"
    http_status = 409


class RequestStateConflict(BatonError):
    """The request is not in the state this step needs (approving a refused one, returning before receipt …)."""

    code = "resource_request_state"
    http_status = 409


class ReplenishmentDone(BatonError):
    code = "replenishment_done"
    http_status = 409


@dataclass(frozen=True)
class Side:
    """One party of a request, as `permissions.may_act` sees work: the department that acts on it."""

    department: str


# -- who sees and who acts --------------------------------------------------------------------------------------
def reader_of(user: User) -> str | None:
    """None for those who read every department's work (office, managers, administrators), else the user's
    department: the same split as the incidents' reads."""
    return None if user.role in (Role.office, Role.manager, Role.admin) else (user.department or "")


def visible_to(request: ResourceRequest, reader: str | None) -> bool:
    """A department sees the requests it made and those made to it (for its reserves); the office sees all."""
    return reader is None or reader in (request.requester, request.supplier)


def get_request(session: Session, request_id: str, reader: str | None) -> ResourceRequest:
    request = session.get(ResourceRequest, request_id)
    if request is None or not visible_to(request, reader):
        raise NotFound(f"no resource request '{request_id}'")
    return request


def list_requests(session: Session, *, reader: str | None, incident_id: str | None = None,
                  open_only: bool = False, limit: int = 200) -> list[ResourceRequest]:
    query = select(ResourceRequest)
    if reader is not None:
        query = query.where(or_(col(ResourceRequest.requester) == reader, col(ResourceRequest.supplier) == reader))
    if incident_id is not None:
        query = query.where(ResourceRequest.incident_id == incident_id)
    if open_only:
        query = query.where(col(ResourceRequest.status).in_([s.value for s in RequestStatus if s.is_open]))
    return list(session.exec(query.order_by(col(ResourceRequest.requested_at).desc()).limit(limit)).all())


def may_supply(user: User, request: ResourceRequest) -> bool:
    """Approving, refusing, dispatching: whoever acts for the owning department."""
    return permissions.may_act(user, Side(request.supplier))


def may_receive(user: User, request: ResourceRequest) -> bool:
    """Confirming receipt and returning: whoever acts for the requesting department."""
    return permissions.may_act(user, Side(request.requester))


def may_act_for(user: User, department: str) -> bool:
    """Restocking a reserve: whoever acts for its owning department."""
    return permissions.may_act(user, Side(department))


def replenishments(session: Session, *, reader: str | None, open_only: bool = True) -> list[Replenishment]:
    query = select(Replenishment)
    if reader is not None:
        query = query.where(Replenishment.organisation == reader)
    if open_only:
        query = query.where(Replenishment.status == ReplenishmentStatus.open)
    return list(session.exec(query.order_by(col(Replenishment.opened_at).desc()).limit(200)).all())


def get_replenishment(session: Session, replenishment_id: str, reader: str | None) -> Replenishment:
    found = session.get(Replenishment, replenishment_id)
    if found is None or (reader is not None and found.organisation != reader):
        raise NotFound(f"no replenishment '{replenishment_id}'")
    return found


# -- input ------------------------------------------------------------------------------------------------------
def whole_number(value: Any, *, low: int = 1, high: int = MAX_QUANTITY) -> int:
    """A whole number of units from `low` to `high`: a JSON integer, or text of digits (a form), never a
    boolean, a fraction, NaN or infinity."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            raise Violation("not_a_number", "must be a whole number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Violation("not_a_number", "must be a whole number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Violation("not_finite", "must be a finite number (not NaN or Infinity)")
        if not value.is_integer():
            raise Violation("not_whole", "must be a whole number")
        value = int(value)
    if value < low:
        raise Violation("too_small", f"must be at least {low}")
    if value > high:
        raise Violation("too_large", f"must be at most {high}")
    return int(value)


def _needed_by(value: Any, now: datetime) -> datetime:
    moment = policy.moment_text(value) if isinstance(value, str) else policy.moment(value)
    if moment < now - PAST_GRACE:
        raise Violation("in_the_past", "must not lie in the past")
    if moment > now + LEAD_LIMIT:
        raise Violation("too_far", f"must lie within {LEAD_LIMIT.days} days from now")
    return moment


def _coordinate(value: Any, bounds: tuple[float, float]) -> float:
    number = float(policy.number(value))
    if not bounds[0] <= number <= bounds[1]:
        raise Violation("outside_china", f"must lie inside China's bounds ({bounds[0]} to {bounds[1]})")
    return number


def _category(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text.isdigit() or len(text) not in CATEGORY_DIGITS:
        raise Violation("not_a_category", "must be a GB/T 38565 category code (1, 3, 5 or 7 digits)")
    return text


def _department(value: Any) -> str:
    key = value.strip() if isinstance(value, str) else ""
    if registry().department(key) is None:
        raise Violation("unknown_department", "names no department of the registry")
    return key


def stock_of(session: Session, *, supplier: str, category: str) -> list[MaterialReserve]:
    """The supplier's reserves of the category (a category code matches its sub-categories), largest first."""
    return list(session.exec(select(MaterialReserve).where(
        MaterialReserve.organisation == supplier, col(MaterialReserve.category).startswith(category))
        .order_by(col(MaterialReserve.quantity).desc(), col(MaterialReserve.code))).all())


def _available(session: Session, request: ResourceRequest) -> int:
    """What one approval could draw for the request: the reserve asked for, or the supplier's largest reserve
    of the category."""
    if request.reserve_id is not None:
        reserve = session.get(MaterialReserve, request.reserve_id)
        return reserve.quantity if reserve is not None else 0
    found = stock_of(session, supplier=request.supplier, category=request.category)
    return found[0].quantity if found else 0


def _short(requested: int, available: int, unit: str, what: str) -> InsufficientStock:
    return InsufficientStock(f"only {available} {unit} of {what} in stock; {requested} asked",
                             details={"available": available, "requested": requested, "unit": unit,
                                      "field": "quantity"})


def _what(session: Session, refusals: Refusals, *, category: Any, reserve_id: Any, supplier: Any
          ) -> tuple[MaterialReserve | None, str | None, str | None]:
    """What is asked for and of whom: (the reserve, its category, the owning department)."""
    reserve: MaterialReserve | None = None
    asked_category: str | None = None
    if reserve_id:
        reserve = session.get(MaterialReserve, str(reserve_id)[:36])
        if reserve is None:
            refusals.problems.append({"field": "reserve_id", "reason": "unknown", "message": "names no reserve"})
    elif category is not None:
        asked_category = refusals.check("category", _category, category)
    else:
        refusals.problems.append({"field": "category", "reason": "required",
                                  "message": "name a reserve (reserve_id) or a category"})
    owner: str | None = None
    if supplier:
        owner = refusals.check("supplier", _department, supplier)
    if refusals.problems:
        return None, None, None
    if reserve is not None:
        if owner is not None and owner != reserve.organisation:
            refusals.problems.append({"field": "supplier", "reason": "not_the_owner",
                                      "message": f"the reserve belongs to {reserve.organisation}"})
        owner, asked_category = reserve.organisation, reserve.category
    elif owner is None:
        holders = sorted({r.organisation for r in session.exec(select(MaterialReserve).where(
            col(MaterialReserve.category).startswith(asked_category or ""))).all()})
        if len(holders) != 1:
            refusals.problems.append({"field": "supplier", "reason": "required" if holders else "no_stock",
                                      "message": f"several departments hold this category ({', '.join(holders)}): "
                                                 "name one" if holders else "no department holds this category"})
        else:
            owner = holders[0]
    return reserve, asked_category, owner


# -- the steps --------------------------------------------------------------------------------------------------
def request_resources(session: Session, *, incident_id: str, user: User, actor: str, quantity: Any,
                      needed_by: Any, destination: Any, category: Any = None, reserve_id: Any = None,
                      supplier: Any = None, description: Any = "", lon: Any = None, lat: Any = None,
                      idempotency_key: str | None = None) -> tuple[ResourceRequest, bool]:
    """A department asks for `quantity` units of a reserve (`reserve_id`) or of a category from an owning
    department (`supplier`; found when one department alone holds the category). Refused field by field
    (InputInvalid); more than is in stock is InsufficientStock naming what is. With an `idempotency_key` already
    used, the request it made is returned as it stands and nothing else happens. Returns the request and whether
    this call made it."""
    requester = permissions.acts_for(user)
    if requester is None:
        raise NotFound("only who acts for a department asks for resources")
    if idempotency_key is not None:
        made = session.exec(select(ResourceRequest).where(ResourceRequest.idempotency_key == idempotency_key)).first()
        if made is not None:
            return made, False
    now = utcnow()
    refusals = Refusals()
    count = refusals.check("quantity", whole_number, quantity)
    when = refusals.check("needed_by", _needed_by, needed_by, now=now)
    place = refusals.check("destination", policy.text, destination if isinstance(destination, str) else "",
                           max_length=300)
    if isinstance(place, str) and not place.strip():
        refusals.problems.append({"field": "destination", "reason": "required", "message": "say where to deliver"})
    what = refusals.check("description", policy.text, description if isinstance(description, str) else "",
                          max_length=500)
    point: list[float | None] = [None, None]
    if (lon is None) != (lat is None):
        refusals.problems.append({"field": "lon" if lon is None else "lat", "reason": "required",
                                  "message": "a point needs both lon and lat"})
    elif lon is not None:
        point = [refusals.check("lon", _coordinate, lon, bounds=CHINA_LON),
                 refusals.check("lat", _coordinate, lat, bounds=CHINA_LAT)]
    reserve, asked_category, owner = _what(session, refusals, category=category, reserve_id=reserve_id,
                                           supplier=supplier)
    refusals.raise_any()
    assert owner is not None and asked_category is not None
    incident = lock_incident(session, incident_id)
    if reader_of(user) is not None and not involved(session, incident.id, requester):
        raise NotFound(f"no incident '{incident_id}'")
    if incident.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {incident.code} is closed")
    stock = [reserve] if reserve is not None else stock_of(session, supplier=owner, category=asked_category)
    unit = stock[0].unit if stock else ""
    request = ResourceRequest(incident_id=incident.id, requester=requester, supplier=owner, category=asked_category,
                              reserve_id=reserve.id if reserve else None, description=str(what), quantity=int(count),
                              unit=unit, destination=str(place).strip(), lon=point[0], lat=point[1],
                              needed_by=when, requested_by=actor, requested_at=now, idempotency_key=idempotency_key)
    available = _available(session, request) if stock else 0
    if int(count) > available:
        raise _short(int(count), available, unit, reserve.name_zh if reserve else f"category {asked_category}")
    session.add(request)
    session.flush()
    ledger.append(session, incident=incident, kind=LedgerKind.resource_requested, actor=actor, from_party=requester,
                  to_party=owner, idempotency_key=f"{request.id}:requested", handed_over=_terms(request), at=now,
                  details={"request_id": request.id, "quantity": request.quantity, "unit": unit,
                           "category": asked_category, "reserve_id": request.reserve_id})
    return request, True


def _terms(request: ResourceRequest) -> dict[str, Any]:
    return {"category": request.category, "reserve_id": request.reserve_id, "quantity": request.quantity,
            "unit": request.unit, "destination": request.destination, "lon": request.lon, "lat": request.lat,
            "needed_by": request.needed_by.isoformat(), "description": request.description}


def _locked(session: Session, request_id: str) -> tuple[Incident, ResourceRequest]:
    request = session.get(ResourceRequest, request_id)
    if request is None:
        raise NotFound(f"no resource request '{request_id}'")
    incident = lock_incident(session, request.incident_id)
    session.refresh(request)
    return incident, request


def _move(session: Session, request: ResourceRequest, expected: RequestStatus, **values: Any) -> None:
    """The guarded state change: only from `expected`, checked by its row count (a concurrent step that got
    there first leaves nothing to change)."""
    result = session.connection().execute(
        update(ResourceRequest).where(col(ResourceRequest.id) == request.id,
                                      col(ResourceRequest.status) == expected.value).values(**values))
    if result.rowcount != 1:
        session.refresh(request)
        raise RequestStateConflict(f"the request is {request.status}, not {expected}",
                                   details={"status": request.status, "expected": expected.value})
    session.refresh(request)


def _draw(session: Session, *, reserve: MaterialReserve, quantity: int) -> int:
    """Draw `quantity` units down in one guarded statement; the stock left after it."""
    result = session.connection().execute(
        update(MaterialReserve).where(col(MaterialReserve.id) == reserve.id, col(MaterialReserve.quantity) >= quantity)
        .values(quantity=col(MaterialReserve.quantity) - quantity))
    session.refresh(reserve)
    if result.rowcount != 1:
        raise _short(quantity, reserve.quantity, reserve.unit, reserve.name_zh)
    return reserve.quantity


def _restock(session: Session, *, reserve: MaterialReserve, quantity: int) -> int:
    session.connection().execute(update(MaterialReserve).where(col(MaterialReserve.id) == reserve.id)
                                 .values(quantity=col(MaterialReserve.quantity) + quantity))
    session.refresh(reserve)
    return reserve.quantity


def _movement(session: Session, *, reserve: MaterialReserve, kind: MovementKind, quantity: int, after: int,
              actor: str, at: datetime, request_id: str | None = None,
              replenishment_id: str | None = None) -> None:
    session.add(ReserveMovement(reserve_id=reserve.id, request_id=request_id, replenishment_id=replenishment_id,
                                kind=kind, quantity=quantity, quantity_after=after, actor=actor, at=at))
    session.flush()  # unique per request (or replenishment) and kind: a second movement fails here


def _pick_reserve(session: Session, request: ResourceRequest, reserve_id: Any) -> MaterialReserve:
    if request.reserve_id is not None:
        if reserve_id and str(reserve_id) != request.reserve_id:
            raise policy_refusal("reserve_id", "not_asked", "the request names another reserve")
        reserve = session.get(MaterialReserve, request.reserve_id)
    elif reserve_id:
        reserve = session.get(MaterialReserve, str(reserve_id)[:36])
        if reserve is None or reserve.organisation != request.supplier \
                or not reserve.category.startswith(request.category):
            raise policy_refusal("reserve_id", "not_a_match",
                                 f"name one of {request.supplier}'s reserves of category {request.category}")
    else:
        found = stock_of(session, supplier=request.supplier, category=request.category)
        reserve = found[0] if found else None
    if reserve is None:
        raise _short(request.quantity, 0, request.unit, f"category {request.category}")
    return reserve


def policy_refusal(field: str, reason: str, message: str) -> InputInvalid:
    """One field refused, as `Refusals` words it."""
    return InputInvalid(f"the input is not accepted: {field}: {message}",
                        details=[{"field": field, "reason": reason, "message": message}])


def approve(session: Session, *, request_id: str, actor: str, quantity: Any = None,
            reserve_id: Any = None) -> ResourceRequest:
    """The owning department approves all (`quantity` None) or part of the request: the reserve is drawn down
    in this transaction. A replay of the same approval answers with the request as it is and draws nothing."""
    incident, request = _locked(session, request_id)
    count = request.quantity if quantity is None else None
    if count is None:
        refusals = Refusals()
        count = refusals.check("quantity", whole_number, quantity, high=request.quantity)
        refusals.raise_any()
    if request.status != RequestStatus.requested:
        if request.quantity_approved == count and (not reserve_id or reserve_id == request.drawn_reserve_id):
            return request  # the same approval again (a retry, a double click): nothing more happens
        raise RequestStateConflict(f"the request is already {request.status}",
                                   details={"status": request.status, "expected": RequestStatus.requested.value})
    reserve = _pick_reserve(session, request, reserve_id)
    now = utcnow()
    _move(session, request, RequestStatus.requested, status=RequestStatus.approved.value, quantity_approved=count,
          drawn_reserve_id=reserve.id, decided_by=actor, decided_at=now)
    after = _draw(session, reserve=reserve, quantity=count)
    _movement(session, reserve=reserve, kind=MovementKind.drawn, quantity=count, after=after, actor=actor, at=now,
              request_id=request.id)
    ledger.append(session, incident=incident, kind=LedgerKind.resource_approved, actor=actor,
                  from_party=request.supplier, to_party=request.requester, idempotency_key=f"{request.id}:approved",
                  handed_over={"quantity": count, "reserve_id": reserve.id}, at=now,
                  details={"request_id": request.id, "requested": request.quantity, "approved": count,
                           "partial": count < request.quantity, "unit": request.unit, "reserve_id": reserve.id,
                           "reserve": reserve.code, "stock_after": after})
    if after < reserve.safety_stock:
        _open_replenishment(session, incident=incident, request=request, reserve=reserve, after=after, at=now)
    return request


def _open_replenishment(session: Session, *, incident: Incident, request: ResourceRequest, reserve: MaterialReserve,
                        after: int, at: datetime) -> Replenishment | None:
    """The reserve fell under its safety stock: a replenishment for its owner, unless one is open already."""
    replenishment = Replenishment(reserve_id=reserve.id, open_key=reserve.id, organisation=reserve.organisation,
                                  incident_id=incident.id, request_id=request.id, quantity_at_open=after,
                                  safety_stock=reserve.safety_stock, opened_at=at)
    try:
        with session.begin_nested():
            session.add(replenishment)
            session.flush()
    except IntegrityError:
        return None  # one is open for this reserve: it covers this shortfall too
    ledger.append(session, incident=incident, kind=LedgerKind.reserve_below_safety_stock, actor="baton",
                  from_party=reserve.organisation, to_party=reserve.organisation,
                  idempotency_key=f"{replenishment.id}:opened",
                  details={"replenishment_id": replenishment.id, "reserve_id": reserve.id, "reserve": reserve.code,
                           "quantity": after, "safety_stock": reserve.safety_stock,
                           "shortfall": reserve.safety_stock - after, "request_id": request.id}, at=at)
    return replenishment


def refuse(session: Session, *, request_id: str, actor: str, reason: Any) -> ResourceRequest:
    text = reason if isinstance(reason, str) else ""
    if not text.strip():
        raise ReasonRequired("refusing a request needs a reason")
    text = policy.checked("reason", policy.text, text, max_length=2000, multiline=True)
    incident, request = _locked(session, request_id)
    now = utcnow()
    _move(session, request, RequestStatus.requested, status=RequestStatus.refused.value, refusal_reason=text,
          decided_by=actor, decided_at=now)
    ledger.append(session, incident=incident, kind=LedgerKind.resource_refused, actor=actor,
                  from_party=request.supplier, to_party=request.requester, idempotency_key=f"{request.id}:refused",
                  handed_over={"reason": text}, details={"request_id": request.id, "reason": text}, at=now)
    return request


def dispatch(session: Session, *, request_id: str, actor: str, note: Any = "") -> ResourceRequest:
    text = policy.checked("note", policy.text, note if isinstance(note, str) else "", max_length=500)
    incident, request = _locked(session, request_id)
    now = utcnow()
    _move(session, request, RequestStatus.approved, status=RequestStatus.dispatched.value, dispatched_by=actor,
          dispatched_at=now, dispatch_note=text or None)
    ledger.append(session, incident=incident, kind=LedgerKind.resource_dispatched, actor=actor,
                  from_party=request.supplier, to_party=request.requester, idempotency_key=f"{request.id}:dispatched",
                  handed_over={"quantity": request.quantity_approved, "note": text}, at=now,
                  details={"request_id": request.id, "quantity": request.quantity_approved, "note": text})
    return request


def receive(session: Session, *, request_id: str, actor: str, quantity: Any = None) -> ResourceRequest:
    """The requester confirms receipt of what was dispatched (all of it, or `quantity` units)."""
    incident, request = _locked(session, request_id)
    approved = request.quantity_approved or 0
    count = approved
    if quantity is not None:
        count = policy.checked("quantity", whole_number, quantity, low=0, high=approved)
    now = utcnow()
    _move(session, request, RequestStatus.dispatched, status=RequestStatus.received.value, quantity_received=count,
          received_by=actor, received_at=now)
    ledger.append(session, incident=incident, kind=LedgerKind.resource_received, actor=actor,
                  from_party=request.requester, to_party=request.supplier, idempotency_key=f"{request.id}:received",
                  handed_over={"quantity": count}, at=now,
                  details={"request_id": request.id, "received": count, "dispatched": approved})
    return request


def return_unused(session: Session, *, request_id: str, actor: str, quantity: Any) -> ResourceRequest:
    """The requester returns what was not consumed (0: all of it was); the reserve's stock goes back up."""
    incident, request = _locked(session, request_id)
    received = request.quantity_received or 0
    count = policy.checked("quantity", whole_number, quantity, low=0, high=received)
    now = utcnow()
    _move(session, request, RequestStatus.received, status=RequestStatus.returned.value, quantity_returned=count,
          returned_by=actor, returned_at=now)
    after: int | None = None
    if count > 0 and request.drawn_reserve_id is not None:
        reserve = session.get(MaterialReserve, request.drawn_reserve_id)
        assert reserve is not None
        after = _restock(session, reserve=reserve, quantity=count)
        _movement(session, reserve=reserve, kind=MovementKind.returned, quantity=count, after=after, actor=actor,
                  at=now, request_id=request.id)
    ledger.append(session, incident=incident, kind=LedgerKind.resource_returned, actor=actor,
                  from_party=request.requester, to_party=request.supplier, idempotency_key=f"{request.id}:returned",
                  handed_over={"quantity": count}, at=now,
                  details={"request_id": request.id, "returned": count, "consumed": received - count,
                           "stock_after": after})
    return request


def replenish(session: Session, *, replenishment_id: str, actor: str, quantity: Any,
              note: Any = "") -> Replenishment:
    """The owner restocked the reserve with `quantity` units: the replenishment is done."""
    count = policy.checked("quantity", whole_number, quantity)
    text = policy.checked("note", policy.text, note if isinstance(note, str) else "", max_length=500)
    found = session.get(Replenishment, replenishment_id)
    if found is None:
        raise NotFound(f"no replenishment '{replenishment_id}'")
    incident = lock_incident(session, found.incident_id)
    now = utcnow()
    result = session.connection().execute(
        update(Replenishment).where(col(Replenishment.id) == found.id,
                                    col(Replenishment.status) == ReplenishmentStatus.open.value)
        .values(status=ReplenishmentStatus.done.value, open_key=None, done_at=now, done_by=actor,
                quantity_added=count, note=text or None))
    session.refresh(found)
    if result.rowcount != 1:
        raise ReplenishmentDone("the replenishment is done already", details={"done_at": str(found.done_at)})
    reserve = session.get(MaterialReserve, found.reserve_id)
    assert reserve is not None
    after = _restock(session, reserve=reserve, quantity=count)
    _movement(session, reserve=reserve, kind=MovementKind.replenished, quantity=count, after=after, actor=actor,
              at=now, replenishment_id=found.id)
    ledger.append(session, incident=incident, kind=LedgerKind.reserve_replenished, actor=actor,
                  from_party=found.organisation, to_party=found.organisation,
                  idempotency_key=f"{found.id}:replenished", handed_over={"quantity": count, "note": text}, at=now,
                  details={"replenishment_id": found.id, "reserve_id": reserve.id, "added": count,
                           "stock_after": after, "safety_stock": reserve.safety_stock})
    return found


# -- views --------------------------------------------------------------------------------------------------------
def view(session: Session, request: ResourceRequest) -> dict[str, Any]:
    reserve = session.get(MaterialReserve, request.drawn_reserve_id or request.reserve_id or "")
    consumed = None
    if request.quantity_received is not None and request.quantity_returned is not None:
        consumed = request.quantity_received - request.quantity_returned
    return {
        "id": request.id, "incident_id": request.incident_id, "requester": request.requester,
        "supplier": request.supplier, "category": request.category, "reserve_id": request.reserve_id,
        "drawn_reserve_id": request.drawn_reserve_id, "reserve": None if reserve is None else {
            "id": reserve.id, "code": reserve.code, "name_zh": reserve.name_zh, "name_en": reserve.name_en,
            "warehouse": reserve.warehouse, "quantity": reserve.quantity, "safety_stock": reserve.safety_stock},
        "description": request.description, "quantity": request.quantity, "unit": request.unit,
        "destination": request.destination, "lon": request.lon, "lat": request.lat,
        "needed_by": request.needed_by, "status": request.status, "requested_by": request.requested_by,
        "requested_at": request.requested_at, "quantity_approved": request.quantity_approved,
        "decided_by": request.decided_by, "decided_at": request.decided_at, "refusal_reason": request.refusal_reason,
        "dispatched_by": request.dispatched_by, "dispatched_at": request.dispatched_at,
        "dispatch_note": request.dispatch_note, "quantity_received": request.quantity_received,
        "received_at": request.received_at, "quantity_returned": request.quantity_returned,
        "returned_at": request.returned_at, "consumed": consumed,
    }


def replenishment_view(session: Session, found: Replenishment) -> dict[str, Any]:
    reserve = session.get(MaterialReserve, found.reserve_id)
    return {"id": found.id, "reserve_id": found.reserve_id, "reserve": reserve.code if reserve else None,
            "reserve_name": reserve.name_zh if reserve else None, "quantity": reserve.quantity if reserve else None,
            "unit": reserve.unit if reserve else None, "organisation": found.organisation,
            "incident_id": found.incident_id, "request_id": found.request_id,
            "quantity_at_open": found.quantity_at_open, "safety_stock": found.safety_stock, "status": found.status,
            "opened_at": found.opened_at, "done_at": found.done_at, "done_by": found.done_by,
            "quantity_added": found.quantity_added, "note": found.note}
