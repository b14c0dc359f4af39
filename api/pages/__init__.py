"""Server-rendered pages for the emergency office, departments and managers: one module per area.

They call the same core services as the JSON API (never the API over HTTP), find the user by the session in an
HttpOnly cookie (api.deps), check a CSRF token on every POST, render in the reader's language
(api.pages.rendering), and are built for a phone as much as for a desk.
"""

from __future__ import annotations

from api.pages import (
    admin,
    answer,
    board,
    channels,
    desk,
    docs,
    handback,
    instructions,
    login,
    maps,
    office,
    prevention,
    registers,
    reports,
    resources,
    review,
    roster,
    tasks,
    upward,
    warnings,
)
from api.pages.rendering import page_router

router = page_router()
for area in (login, office, handback, tasks, review, board, reports, upward, admin, docs, warnings, registers, maps,
             resources, prevention, desk, instructions, roster, answer,
             channels):
    router.include_router(area.router)
