"""The one map (一张图) for every desk: the office, managers and each department see the layers of
`core.maps.layers` (open incidents, warning areas in force, places reported on tasks, and whatever other domains
register) over the city's district boundaries or its own tiles, each desk within its own scope. The page is the
frame; its script (`/static/baton-map.js`, Leaflet from `/static/vendor/leaflet/`) reads `GET /api/map/layers`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from api.deps import PageUser, Principal
from api.pages.listings import plans
from api.pages.rendering import Helpers, page, page_router
from core.maps import layers
from core.sharing.notice import COLOUR_NAMES
from core.users.models import Role
from process_defs.schema import LEVEL_NUMERALS, STAGES

router = page_router()


def incident_url(principal: Principal) -> str:
    """Where a marker's incident opens for this reader (`{id}` is the incident's): the office's screen, the
    review, or the situation board a department reads."""
    if principal.role in (Role.office, Role.admin):
        return "/office/incidents/{id}"
    if principal.role == Role.manager:
        return "/review/incidents/{id}"
    return "/incidents/{id}/board"


def words(lang: str) -> dict[str, Any]:
    """The values the map's script shows in popups, worded in the reader's language."""
    h = Helpers(lang)
    return {"levels": {key: h.level_short(key) for key in LEVEL_NUMERALS},
            "stages": {key: h.stage(key) for key in STAGES},
            "types": {key: h.plain(plan.name) for key, plan in plans()},
            "colours": {key: h.plain(value) for key, value in COLOUR_NAMES.items()}}


@router.get("/map")
def map_page(request: Request, principal: PageUser) -> HTMLResponse:
    return page(request, principal, "map.html", base=layers.base(), incident_url=incident_url(principal),
                words=words(principal.user.lang))
