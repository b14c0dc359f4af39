"""The public face: active warnings as an Atom feed and each CAP alert as XML. No login, by design."""

from __future__ import annotations

from datetime import UTC
from xml.etree import ElementTree

from fastapi import APIRouter, Request, Response

from api.deps import SessionDep
from core.platform.clock import utcnow
from core.platform.errors import NotFound
from core.platform.settings import get_settings
from core.platform.templating import environment
from core.sharing.models import CapAlert
from core.sharing.warnings import active_public

router = APIRouter(prefix="/public", tags=["public"])
CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


def _texts(xml: str) -> tuple[str, str]:
    root = ElementTree.fromstring(xml.encode("utf-8"))
    infos = root.findall("cap:info", CAP_NS)
    headline = " / ".join(i.findtext("cap:headline", "", CAP_NS) for i in infos)
    summary = " / ".join(i.findtext("cap:instruction", "", CAP_NS) for i in infos)
    return headline, summary


@router.get("/warnings.atom")
def feed(request: Request, session: SessionDep) -> Response:
    alerts = []
    for alert in active_public(session):
        headline, summary = _texts(alert.xml)
        alerts.append({"id": alert.id, "identifier": alert.identifier, "msg_type": alert.msg_type,
                       "headline": headline, "summary": summary,
                       "updated": alert.sent_at.astimezone(UTC).isoformat(timespec="seconds")})
    body = environment().get_template("public/warnings.atom.j2").render(
        alerts=alerts, base_url=str(request.base_url).rstrip("/"), sender=get_settings().sender,
        updated=(alerts[0]["updated"] if alerts else utcnow().isoformat(timespec="seconds")))
    return Response(body, media_type="application/atom+xml; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=30"})


@router.get("/warnings/{alert_id}.xml")
def alert_xml(alert_id: str, session: SessionDep) -> Response:
    alert = session.get(CapAlert, alert_id)
    # A drill's alert, or one never published, does not exist for the public.
    if alert is None or not alert.published:
        raise NotFound("no such public warning")
    return Response(alert.xml, media_type="application/cap+xml; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=30"})
