"""The API reference, for logged-in users: FastAPI's interactive docs, reading the authenticated /openapi.json."""

from __future__ import annotations

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api.deps import PageUser
from api.pages.rendering import page_router

router = page_router()


@router.get("/docs")
def api_docs(principal: PageUser) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="Baton API")


@router.get("/redoc")
def api_redoc(principal: PageUser) -> HTMLResponse:
    return get_redoc_html(openapi_url="/openapi.json", title="Baton API")
