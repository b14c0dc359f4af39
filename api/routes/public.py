"""The public face: active warnings as a page (Chinese with English, a map of their areas), an Atom feed, and each
CAP alert as XML. No login, by design: only warnings a leader signed off for a real incident are here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from api.deps import SessionDep
from core.platform.clock import utcnow
from core.platform.errors import NotFound
from core.platform.settings import get_settings
from core.platform.templating import environment, render
from core.sharing import area_svg
from core.sharing.models import CapAlert
from core.sharing.notice import NoticeWording
from core.sharing.warnings import active_public, feed_entries, public_alert, public_by_identifier, public_view

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


def _lang(request: Request) -> str:
    return "en" if request.query_params.get("lang") == "en" else "zh"


def _map(views: list[dict[str, Any]], lang: str) -> Markup | None:
    shapes = [area_svg.shape(f"{n}. {v['headline'][lang]}", v["colour"], v["shapes"]["circles"],
                             v["shapes"]["polygons"]) for n, v in enumerate(views, start=1)]
    return area_svg.draw(shapes, "预警区域 Warning areas")


def _page(request: Request, name: str, **context: object) -> HTMLResponse:
    lang = _lang(request)
    html = render(name, lang, user=None, csrf="", path=request.url.path, h=NoticeWording(lang), notice=None,
                  now=utcnow(), **context)
    return HTMLResponse(html, headers={"Cache-Control": "public, max-age=30"})


@router.get("/warnings", response_class=HTMLResponse)
def warnings_page(request: Request, session: SessionDep) -> HTMLResponse:
    """The warnings in force, for anyone: colour, headline, description, instruction, issuer, times and a map."""
    views = [v for v in (public_view(a) for a in active_public(session)) if v is not None]
    return _page(request, "public/warnings.html", views=views, area_map=_map(views, _lang(request)), one=False)


@router.get("/warnings/{identifier}", response_class=HTMLResponse)
def warning_page(identifier: str, request: Request, session: SessionDep) -> HTMLResponse:
    """One published warning by its CAP identifier (where its `<web>` points), also once replaced or expired."""
    view = public_view(public_by_identifier(session, identifier))
    if view is None:
        raise NotFound("no such public warning")
    return _page(request, "public/warnings.html", views=[view], area_map=_map([view], _lang(request)), one=True)
