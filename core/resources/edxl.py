"""Resource requests and commitments as OASIS EDXL-RM 1.0 messages: a request as `RequestResource`, an approval
(all or part) as `CommitResource`, after the schemas shipped in core/standards/edxl-rm/1.0 (validated against
them in tests/test_resources.py).

A reserve category is a value of GB/T 38565-2020 (`TypeStructure`), a unit a value of the reserve's units; the
place to deliver to is a `LocationDescription`, with a WGS-84 `gml:Point` where the request has one; times carry
Beijing time's offset. Text that XML cannot carry is dropped (`input_policy.xml_safe`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from lxml import etree

from core.incidents.models import Incident
from core.plans.store import registry
from core.platform.input_policy import xml_safe
from core.platform.settings import get_settings
from core.registers.models import MaterialReserve
from core.resources.models import RequestStatus, ResourceRequest

RM = "urn:oasis:names:tc:emergency:EDXL:RM:1.0"
RMSG = "urn:oasis:names:tc:emergency:EDXL:RM:1.0:msg"
GML = "http://www.opengis.net/gml"
NSMAP = {None: RMSG, "rm": RM, "gml": GML}
SCHEMAS = Path(__file__).resolve().parents[1] / "standards" / "edxl-rm" / "1.0"
REQUEST_SCHEMA = SCHEMAS / "EDXL-RMRequestResource.xsd"
COMMIT_SCHEMA = SCHEMAS / "EDXL-RMCommitResource.xsd"
CATEGORY_LIST = "urn:cn:gb:t:38565:2020"  # 应急物资分类及编码
UNIT_LIST = "urn:baton:reserve-unit"
COMMITTED = (RequestStatus.approved, RequestStatus.dispatched, RequestStatus.received, RequestStatus.returned)


def request_message_id(request: ResourceRequest) -> str:
    return f"urn:baton:resource-request:{request.id}"


def commit_message_id(request: ResourceRequest) -> str:
    return f"urn:baton:resource-commit:{request.id}"


def _time(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo(get_settings().timezone)).isoformat(timespec="seconds")


def _el(parent: etree._Element, ns: str, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        element.text = xml_safe(text)
    return element


def _department(key: str) -> str:
    found = registry().department(key)
    return f"{found.name.zh} ({found.name.en})" if found is not None else key


def _head(root: etree._Element, *, message_id: str, kind: str, description: str, incident: Incident,
          sent: datetime) -> None:
    _el(root, RMSG, "MessageID", message_id)
    _el(root, RMSG, "SentDateTime", _time(sent))
    _el(root, RMSG, "MessageContentType", kind)
    _el(root, RMSG, "MessageDescription", description)


def _incident(root: etree._Element, incident: Incident) -> None:
    info = _el(root, RMSG, "IncidentInformation")
    _el(info, RM, "IncidentID", incident.code)
    _el(info, RM, "IncidentDescription", incident.title)


def _contact(root: etree._Element, department: str, role: str) -> None:
    contact = _el(root, RMSG, "ContactInformation")
    _el(contact, RM, "ContactDescription", _department(department))
    _el(contact, RM, "ContactRole", role)


def _value_list(parent: etree._Element, ns: str, name: str, urn: str, value: str) -> None:
    element = _el(parent, ns, name)
    _el(element, RM, "ValueListURN", urn)
    _el(element, RM, "Value", value)


def _resource(parent: etree._Element, request: ResourceRequest, reserve: MaterialReserve | None) -> etree._Element:
    resource = _el(parent, RMSG, "Resource")
    if reserve is not None:
        _el(resource, RMSG, "ResourceID", reserve.code)
        _el(resource, RMSG, "Name", f"{reserve.name_zh} {reserve.name_en}".strip())
    _value_list(resource, RMSG, "TypeStructure", CATEGORY_LIST, request.category)
    if request.description:
        _el(resource, RMSG, "Description", request.description)
    return resource


def _quantity(parent: etree._Element, amount: int, unit: str) -> None:
    quantity = _el(parent, RMSG, "Quantity")
    measured = _el(quantity, RM, "MeasuredQuantity")
    _el(measured, RM, "Amount", str(amount))
    if unit:
        _value_list(measured, RM, "UnitOfMeasure", UNIT_LIST, unit)


def _schedule(parent: etree._Element, kind: str, moment: datetime | None,
              request: ResourceRequest | None = None) -> None:
    schedule = _el(parent, RMSG, "ScheduleInformation")
    _el(schedule, RMSG, "ScheduleType", kind)
    if moment is not None:
        _el(schedule, RMSG, "DateTime", _time(moment))
    if request is not None:
        location = _el(schedule, RMSG, "Location")
        _el(location, RM, "LocationDescription", request.destination)
        if request.lon is not None and request.lat is not None:
            area = _el(location, RM, "TargetArea")
            point = _el(area, GML, "Point")
            point.set("srsName", "EPSG:4326")
            _el(point, GML, "pos", f"{request.lat:.6f} {request.lon:.6f}")  # EPSG:4326: latitude first


def _serialise(root: etree._Element) -> bytes:
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    return out


def request_resource(request: ResourceRequest, *, incident: Incident, reserve: MaterialReserve | None,
                     sent: datetime) -> bytes:
    """The request as an EDXL-RM `RequestResource` message."""
    root = etree.Element(f"{{{RMSG}}}RequestResource", nsmap=NSMAP)
    message_id = request_message_id(request)
    _head(root, message_id=message_id, kind="RequestResource", incident=incident, sent=sent,
          description=f"{_department(request.requester)} requests {request.quantity} {request.unit} "
                      f"of category {request.category} from {_department(request.supplier)}")
    _el(root, RMSG, "OriginatingMessageID", message_id)
    _incident(root, incident)
    _contact(root, request.requester, "Requester")
    info = _el(root, RMSG, "ResourceInformation")
    _el(info, RMSG, "ResourceInfoElementID", "1")
    _resource(info, request, reserve)
    assignment = _el(info, RMSG, "AssignmentInformation")
    _quantity(assignment, request.quantity, request.unit)
    _schedule(info, "RequestedArrival", request.needed_by, request)
    return _serialise(root)


def commit_resource(request: ResourceRequest, *, incident: Incident, reserve: MaterialReserve | None,
                    sent: datetime) -> bytes:
    """The owning department's approval (all or part) as an EDXL-RM `CommitResource` message; the caller makes
    sure the request was approved (`COMMITTED`)."""
    approved = request.quantity_approved or 0
    root = etree.Element(f"{{{RMSG}}}CommitResource", nsmap=NSMAP)
    _head(root, message_id=commit_message_id(request), kind="CommitResource", incident=incident, sent=sent,
          description=f"{_department(request.supplier)} commits {approved} {request.unit} "
                      f"of the {request.quantity} requested")
    _el(root, RMSG, "OriginatingMessageID", request_message_id(request))
    _el(root, RMSG, "PrecedingMessageID", request_message_id(request))
    _incident(root, incident)
    _contact(root, request.supplier, "Approver")
    info = _el(root, RMSG, "ResourceInformation")
    _el(info, RMSG, "ResourceInfoElementID", "1")
    response = _el(info, RMSG, "ResponseInformation")
    _el(response, RM, "PrecedingResourceInfoElementID", "1")
    _el(response, RM, "ResponseType", "Accept")
    if approved < request.quantity:
        _el(response, RM, "ResponseReason", f"partially approved: {approved} of {request.quantity} {request.unit}")
    resource = _resource(info, request, reserve)
    owner = _el(resource, RMSG, "OwnershipInformation")
    _el(owner, RM, "Owner", _department(request.supplier))
    assignment = _el(info, RMSG, "AssignmentInformation")
    _quantity(assignment, approved, request.unit)
    _el(assignment, RMSG, "OrderID", request.id)
    _schedule(info, "Committed", request.decided_at)
    if request.dispatched_at is not None:
        _schedule(info, "ActualDeparture", request.dispatched_at)
    _schedule(info, "RequestedArrival", request.needed_by, request)
    return _serialise(root)
