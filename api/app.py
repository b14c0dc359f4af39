"""The Baton web process: JSON API and pages. It records what users do and wakes the workers through the
database; it never runs a flow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from api import errors
from api.routes import auth, incidents, plans, public, tasks
from core.settings import get_settings

STATIC = Path(__file__).resolve().parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

DOCS_PATHS = {"/docs", "/redoc", "/docs/oauth2-redirect"}
DOCS_CSP = ("default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; frame-ancestors 'none'")


def create_app() -> FastAPI:
    app = FastAPI(title="Baton", version="0.1.0",
                  description="Multi-department emergency response: incidents, department tasks, handoff ledger.")
    errors.install(app)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        limit = get_settings().max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return JSONResponse(errors.error_body("body_too_large", f"the request body is over {limit} bytes"),
                                status_code=413, headers=SECURITY_HEADERS)
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            if name == "Content-Security-Policy" and request.url.path in DOCS_PATHS:
                # FastAPI's interactive docs load their script and styles from a CDN.
                value = DOCS_CSP
            response.headers.setdefault(name, value)
        return response

    for router in (auth.router, incidents.router, tasks.router, plans.router, public.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app


app = create_app()
