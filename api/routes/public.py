"""The public face: active warnings as an Atom feed and each CAP alert as XML. No login, by design."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import SessionDep
from core.platform.clock import utcnow
from core.platform.errors import NotFound
from core.platform.settings import get_settings
from core.platform.templating import environment
from core.sharing.models import CapAlert
from core.sharing.warnings import feed_entries, public_alert

router = APIRouter(prefix="/public", tags=["public"])


@router.get("/warnings.atom")
def feed(request: Request, session: SessionDep) -> Response:
    alerts = feed_entries(session)
    body = environment().get_template("public/warnings.atom.j2").render(
        alerts=alerts, base_url=str(request.base_url).rstrip("/"), sender=get_settings().sender,
        updated=(alerts[0]["updated"] if alerts else utcnow().isoformat(timespec="seconds")))
    return Response(body, media_type="application/atom+xml; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=30"})


@router.get("/warnings/{alert_id}.xml")
def alert_xml(alert_id: str, session: SessionDep) -> Response:
    alert = session.get(CapAlert, alert_id)
    # A drill's alert, or one never published, does not exist for the public; nor does one that cannot be
    # published as well-formed XML (logged by public_alert).
    published = public_alert(alert) if alert is not None and alert.published else None
    if published is None:
        raise NotFound("no such public warning")
    return Response(published[0], media_type="application/cap+xml; charset=utf-8",
                    headers={"Cache-Control": "public, max-age=30"})
