"""The Baton web process: JSON API and pages. It records what users do and wakes the workers through the
database; it never runs a flow."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors, pages, refusals
from api.deps import CurrentUser
from api.forwarded import TrustedProxies
from api.pages import docs
from api.pages.rendering import error_page, too_large_page
from api.routes import (
    answers,
    attachments,
    auth,
    desk,
    incidents,
    instructions,
    learning,
    maps,
    plans,
    prevention,
    public,
    registers,
    reporting,
    reports,
    resources,
    rosters,
    sharing,
    tasks,
    users,
)
from core.platform import input_policy as policy
from core.platform.heap import freeze_startup_heap
from core.platform.settings import get_settings

STATIC = Path(__file__).resolve().parent / "static"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def content_security_policy() -> str:
    """The pages' policy; with a city's tile server set (`BATON_MAP_TILE_URL`), the map's images may come from it."""
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    origin = get_settings().map_tile_origin()
    return policy.replace("img-src 'self' data:", f"img-src 'self' data: {origin}") if origin else policy


# The routes that take a file (multipart only): their bodies may be as large as a file plus a form.
UPLOADS = re.compile(r"^/api/tasks/[^/]+/attachments$|^/tasks/[^/]+/complete$")


def body_limit(scope: Scope) -> int:
    """`max_body_bytes`, or for a multipart post to a route that takes a file, `attachment_max_bytes` more."""
    settings = get_settings()
    headers = dict(scope.get("headers") or [])
    multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data")
    if multipart and UPLOADS.match(str(scope.get("path", ""))):
        return settings.max_body_bytes + settings.attachment_max_bytes
    return settings.max_body_bytes


class BodyLimit:
    """Refuse bodies over their limit (`body_limit`) whether or not they announce their length (chunked uploads).

    The body is read here, up to the limit, before the app sees it; the app then gets it replayed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await self._refuse(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        path = str(scope.get("path", ""))
        response: Response
        if path.startswith(("/api/", "/public/")) or path == "/openapi.json":
            lang = refusals.language_of(Headers(scope=scope).get("accept-language"), None)
            response = errors.error_answer(lang, 413, "body_too_large", f"the request body is over {limit} bytes")
        else:
            # A page's form: a page that says so, in the language the address asks for.
            lang = "en" if b"lang=en" in (scope.get("query_string") or b"") else "zh"
            response = too_large_page(path, lang)
        response.headers.update({**SECURITY_HEADERS, "Connection": "close"})
        await response(scope, receive, send)


def refused_address(request: Request) -> Response | None:
    """A path or query holding what the input policy refuses in a line of text (a NUL, another control
    character) is refused before a route reads it: PostgreSQL cannot even compare such a value with a key."""
    try:
        policy.text(request.scope.get("path", ""))
        for name, value in request.query_params.multi_items():
            policy.text(name)
            policy.text(value)
    except policy.Violation as exc:
        if request.url.path.startswith(("/api/", "/public/")):
            return errors.error_answer(errors.reader_language(request), 422, "invalid_request",
                                       f"the address is not valid: it {exc.message}",
                                       [{"field": "address", "reason": exc.reason, "message": exc.message}])
        return error_page(request, 422, "input_invalid")
    return None


class Guard:
    """ASGI middleware: an address the input policy refuses is answered at once (`refused_address`), and every
    response gets the security headers it has not set itself (a page with its own CSP, the API docs, keeps it).
    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs each request in a task
    group with memory streams between the two halves, a cost every request paid for two dictionary updates."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy()}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                for name, value in headers.items():
                    response_headers.setdefault(name, value)
            await send(message)

        refused = refused_address(Request(scope))
        await (refused or self.app)(scope, receive, send_with_headers)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    freeze_startup_heap()  # each uvicorn worker process, once it has imported everything
    yield


def create_app() -> FastAPI:
    # The schema and the interactive docs are for logged-in users only, like every other endpoint: FastAPI's
    # own routes for them are off, and authenticated ones stand in (the docs pages are in api/pages/docs.py).
    app = FastAPI(title="Baton", version="0.1.0", openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Multi-department emergency response: incidents, department tasks, handoff ledger.")
    errors.install(app, headers=SECURITY_HEADERS)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema(principal: CurrentUser) -> JSONResponse:
        return JSONResponse(app.openapi())

    for router in (auth.router, incidents.router, tasks.router, plans.router, public.router, sharing.router,
                   learning.router, reports.router, reporting.router, users.router, rosters.router,
                   attachments.router, maps.router, registers.router, resources.router, prevention.router, desk.router,
                   instructions.router, answers.router):
        app.include_router(router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.mount(docs.ASSETS_URL, StaticFiles(directory=str(docs.ASSETS)), name="docs-assets")
    app.add_middleware(Guard)
    app.add_middleware(BodyLimit)
    app.add_middleware(TrustedProxies)  # outermost: everything after it sees the client's own address
    return app


app = create_app()
