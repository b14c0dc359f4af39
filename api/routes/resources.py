"""Resources in incidents: a department requests reserves on an incident; the owning department approves all or
part (the reserve is drawn down once), refuses with a reason, dispatches; the requester confirms receipt and returns
what was not consumed; the owner restocks a reserve that fell under its safety stock. EDXL-RM 1.0 messages of a
request (RequestResource) and of its approval (CommitResource).

Who sees a request: the department that asked and the one asked (its reserves), and the office, managers and
administrators; anyone else gets 404. Who acts: the owning department approves, refuses and dispatches; the
requesting department confirms receipt and returns (`core.resources.service.may_supply`, `may_receive`); 403 for
a reader who may not act."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlmodel import Session

from api.deps import CurrentUser, Principal, SessionDep, first_of_a_race, idempotency_digest
from api.errors import ApiError
from core.incidents import reads as incident_reads
from core.incidents.models import Incident
from core.platform.clock import utcnow
from core.platform.input_policy import Line, Lines, Moment, Number
from core.registers.models import MaterialReserve
from core.resources import edxl, service
from core.resources.models import ResourceRequest

router = APIRouter(tags=["resources"])
Quantity = Annotated[StrictInt, Field(gt=0, le=service.MAX_QUANTITY)]


class RequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Quantity = Field(description="How many units: a whole number greater than 0.")
    needed_by: Moment = Field(description="By when, with its UTC offset; at most 30 days ahead.")
    destination: Line = Field(min_length=1, max_length=300, description="Where to deliver (送达地点).")
    category: Line | None = Field(default=None, max_length=7, description="A GB/T 38565 category code …")
    reserve_id: Line | None = Field(default=None, max_length=36, description="… or one reserve.")
    supplier: Line | None = Field(default=None, max_length=64,
                                  description="The owning department asked (found when only one holds the category).")
    description: Lines = Field(default="", max_length=500)
    lon: Number | None = Field(default=None, description="WGS-84 longitude of the place, inside China.")
    lat: Number | None = Field(default=None, description="WGS-84 latitude of the place, inside China.")


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Quantity | None = Field(default=None, description="Approve part: fewer units than asked.")
    reserve_id: Line | None = Field(default=None, max_length=36,
                                    description="Which of the owner's reserves to draw (a category request).")


class RefuseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Lines = Field(min_length=1, max_length=2000)


class DispatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Line = Field(default="", max_length=500, description="Vehicle, driver, route.")


class ReceiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Annotated[StrictInt, Field(ge=0, le=service.MAX_QUANTITY)] | None = None


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Annotated[StrictInt, Field(ge=0, le=service.MAX_QUANTITY)] = Field(
        description="Units not consumed, going back into stock (0: all consumed).")


class ReplenishIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Quantity = Field(description="Units added to the reserve.")
    note: Line = Field(default="", max_length=500)


def _reader(principal: Principal) -> str | None:
    return service.reader_of(principal.user)


def _answer(session: Session, request: ResourceRequest) -> dict[str, Any]:
    out: dict[str, Any] = jsonable_encoder(service.view(session, request))
    return out


def _supplying(session: Session, principal: Principal, request_id: str) -> ResourceRequest:
    request = service.get_request(session, request_id, _reader(principal))
    if not service.may_supply(principal.user, request):
        raise ApiError(403, "forbidden", f"only {request.supplier}, which owns the reserve, decides and dispatches")
    return request


def _receiving(session: Session, principal: Principal, request_id: str) -> ResourceRequest:
    request = service.get_request(session, request_id, _reader(principal))
    if not service.may_receive(principal.user, request):
        raise ApiError(403, "forbidden", f"only {request.requester}, which asked, confirms receipt and returns")
    return request


@router.post("/api/incidents/{incident_id}/resource-requests", status_code=201)
def create(incident_id: str, body: RequestIn, principal: CurrentUser, session: SessionDep, response: Response,
           idempotency_key: Annotated[str | None, Header(max_length=200)] = None) -> dict[str, Any]:
    """Request resources on the incident. More than is in stock: 409 `insufficient_stock` with
    `details.available`; a bad field: 422 naming it. Sent again with the same `Idempotency-Key` (a retry after a
    lost answer), it answers with the request the first made (`Idempotent-Replayed: true`) and asks for nothing
    more."""
    incident = incident_reads.get_incident(session, incident_id, _reader(principal))
    if principal.acts_for is None:
        raise ApiError(403, "forbidden", "only who acts for a department requests resources")
    key = idempotency_digest(principal.user.id, idempotency_key) if idempotency_key else None

    def ask() -> tuple[ResourceRequest, bool]:
        return service.request_resources(
            session, incident_id=incident.id, user=principal.user, actor=principal.actor, quantity=body.quantity,
            needed_by=body.needed_by, destination=body.destination, category=body.category,
            reserve_id=body.reserve_id, supplier=body.supplier, description=body.description, lon=body.lon,
            lat=body.lat, idempotency_key=key)

    request, made = first_of_a_race(session, ask, retry=key is not None)
    if not made:
        response.headers["Idempotent-Replayed"] = "true"
    return _answer(session, request)


@router.get("/api/incidents/{incident_id}/resource-requests")
def for_incident(incident_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    """The incident's requests the reader sees."""
    incident = incident_reads.get_incident(session, incident_id, _reader(principal))
    rows = service.list_requests(session, reader=_reader(principal), incident_id=incident.id)
    return {"items": [_answer(session, r) for r in rows]}


@router.get("/api/resource-requests")
def listing(principal: CurrentUser, session: SessionDep, open: bool = False,
            limit: Annotated[int, Query(ge=1, le=200)] = 100) -> dict[str, Any]:
    """The requests the reader's department made or was asked (office, managers, admins: all), newest first."""
    rows = service.list_requests(session, reader=_reader(principal), open_only=open, limit=limit)
    return {"items": [_answer(session, r) for r in rows]}


@router.get("/api/resource-requests/{request_id}")
def get(request_id: str, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return _answer(session, service.get_request(session, request_id, _reader(principal)))


@router.post("/api/resource-requests/{request_id}/approve")
def approve(request_id: str, principal: CurrentUser, session: SessionDep,
            body: ApproveIn | None = None) -> dict[str, Any]:
    """Approve all (no quantity) or part; the reserve is drawn down in this transaction, once: the same approval
    sent again answers with the request as it is. More than in stock: 409 `insufficient_stock`."""
    request = _supplying(session, principal, request_id)
    given = body or ApproveIn()
    return _answer(session, service.approve(session, request_id=request.id, actor=principal.actor,
                                            quantity=given.quantity, reserve_id=given.reserve_id))


@router.post("/api/resource-requests/{request_id}/refuse")
def refuse(request_id: str, body: RefuseIn, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    request = _supplying(session, principal, request_id)
    return _answer(session, service.refuse(session, request_id=request.id, actor=principal.actor, reason=body.reason))


@router.post("/api/resource-requests/{request_id}/dispatch")
def dispatch(request_id: str, principal: CurrentUser, session: SessionDep,
             body: DispatchIn | None = None) -> dict[str, Any]:
    request = _supplying(session, principal, request_id)
    return _answer(session, service.dispatch(session, request_id=request.id, actor=principal.actor,
                                             note=(body or DispatchIn()).note))


@router.post("/api/resource-requests/{request_id}/receive")
def receive(request_id: str, principal: CurrentUser, session: SessionDep,
            body: ReceiveIn | None = None) -> dict[str, Any]:
    request = _receiving(session, principal, request_id)
    return _answer(session, service.receive(session, request_id=request.id, actor=principal.actor,
                                            quantity=(body or ReceiveIn()).quantity))


@router.post("/api/resource-requests/{request_id}/return")
def return_unused(request_id: str, body: ReturnIn, principal: CurrentUser, session: SessionDep) -> dict[str, Any]:
    request = _receiving(session, principal, request_id)
    return _answer(session, service.return_unused(session, request_id=request.id, actor=principal.actor,
                                                  quantity=body.quantity))


def _xml(body: bytes) -> Response:
    return Response(body, media_type="application/xml")


def _parts(session: Session, request: ResourceRequest) -> tuple[Incident, MaterialReserve | None]:
    incident = session.get(Incident, request.incident_id)
    assert incident is not None
    return incident, session.get(MaterialReserve, request.drawn_reserve_id or request.reserve_id or "")


@router.get("/api/resource-requests/{request_id}/edxl-rm/request", response_class=Response)
def edxl_request(request_id: str, principal: CurrentUser, session: SessionDep) -> Response:
    """The request as an EDXL-RM 1.0 RequestResource message."""
    request = service.get_request(session, request_id, _reader(principal))
    incident, reserve = _parts(session, request)
    return _xml(edxl.request_resource(request, incident=incident, reserve=reserve, sent=utcnow()))


@router.get("/api/resource-requests/{request_id}/edxl-rm/commit", response_class=Response)
def edxl_commit(request_id: str, principal: CurrentUser, session: SessionDep) -> Response:
    """Its approval as an EDXL-RM 1.0 CommitResource message; 409 `not_committed` before one (or after a refusal)."""
    request = service.get_request(session, request_id, _reader(principal))
    if request.status not in edxl.COMMITTED:
        raise ApiError(409, "not_committed", f"the request is {request.status}: nothing is committed")
    incident, reserve = _parts(session, request)
    return _xml(edxl.commit_resource(request, incident=incident, reserve=reserve, sent=utcnow()))


@router.get("/api/replenishments")
def replenishments(principal: CurrentUser, session: SessionDep, open: bool = True) -> dict[str, Any]:
    """Reserves under their safety stock that their owners must restock (a department: its own)."""
    rows = service.replenishments(session, reader=_reader(principal), open_only=open)
    return {"items": jsonable_encoder([service.replenishment_view(session, r) for r in rows])}


@router.post("/api/replenishments/{replenishment_id}/complete")
def replenished(replenishment_id: str, body: ReplenishIn, principal: CurrentUser,
                session: SessionDep) -> dict[str, Any]:
    """The owner restocked the reserve: the units go into stock and the replenishment is done."""
    found = service.get_replenishment(session, replenishment_id, _reader(principal))
    if not service.may_act_for(principal.user, found.organisation):
        raise ApiError(403, "forbidden", f"only {found.organisation}, which owns the reserve, restocks it")
    done = service.replenish(session, replenishment_id=found.id, actor=principal.actor, quantity=body.quantity,
                             note=body.note)
    out: dict[str, Any] = jsonable_encoder(service.replenishment_view(session, done))
    return out
