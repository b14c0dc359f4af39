"""Every error leaves the API as `{"error": {"code": ..., "message": ...}}` with a stable code and a message in
the reader's language (api/refusals.py), the service's English beside a Chinese one as `message_en`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import refusals
from core.platform.db import outage_reason
from core.platform.errors import BatonError

log = logging.getLogger("baton.api")
HTTP_CODES = {400: "bad_request", 401: "not_authenticated", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "body_too_large", 415: "unsupported_media_type",
              422: "invalid_request", 429: "too_many_requests"}


class ApiError(Exception):
    """An error raised by the API layer itself (not a domain rule): access, authentication, input."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_answer(lang: str, status: int, code: str, message: str, details: Any = None, *,
                 headers: dict[str, str] | None = None, worded_in: str = "en") -> JSONResponse:
    """The error answer: `message` (worded in `worded_in`) said to a reader of `lang`."""
    body: dict[str, Any] = {"code": code, **refusals.worded(code, message, details, lang, worded_in=worded_in)}
    if details is not None:
        body["details"] = details
    response = JSONResponse({"error": body}, status_code=status, headers=headers)
    response.headers["Content-Language"] = "en" if lang == "en" else "zh-CN"
    return response


def reader_language(request: Request) -> str:
    """The language of whoever sent `request`: the user's setting once they are known (api/deps.py notes it),
    else the request's Accept-Language, else Chinese."""
    return refusals.language_of(request.headers.get("accept-language"), getattr(request.state, "reader_lang", None))


# Addresses that are never pages: the API and the files a program reads (the public warnings' XML and feed end
# in a file name, as below).
NOT_PAGES = ("/api/", "/static/", "/docs", "/redoc", "/openapi.json")


def wants_page(request: Request) -> bool:
    """A person's browser asking for a page address (one that does not exist, or a malformed form post): it
    gets an error page in the reader's language, not the API's JSON."""
    path = request.url.path
    if path.startswith(NOT_PAGES) or "." in path.rsplit("/", 1)[-1]:
        return False
    return "text/html" in request.headers.get("accept", "")


def page_answer(request: Request, status: int, code: str, headers: dict[str, str] | None = None) -> Response:
    from api.pages.rendering import error_page  # the pages import this module: look them up when answering

    response = error_page(request, status, code)
    response.headers.update(headers or {})
    return response


def _page_or_json(request: Request, status: int, code: str, headers: dict[str, str]) -> Response:
    """The error page of a server-side failure; should the page itself fail to render, the plain answer."""
    try:
        return page_answer(request, status, code, headers)
    except Exception:
        log.exception("the error page could not be rendered")
        return error_answer(reader_language(request), status, code, "the server could not answer", headers=headers)


def install(app: FastAPI, headers: dict[str, str]) -> None:
    """The error handlers; `headers` (the security headers) also go on a 500, which is answered outside the
    middleware that puts them on every other answer."""

    @app.exception_handler(BatonError)
    async def _domain(request: Request, exc: BatonError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        if wants_page(request):  # a page that refused (a public warning that is not public, …)
            return page_answer(request, exc.http_status, exc.code, headers)
        return error_answer(reader_language(request), exc.http_status, exc.code, exc.message, exc.details,
                            headers=headers, worded_in=exc.lang)

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_answer(reader_language(request), exc.status, exc.code, exc.message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if wants_page(request):
            return page_answer(request, 422, "invalid_request")
        details = [{"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "reason": err.get("type"),
                    "message": err.get("msg")} for err in exc.errors()]
        listing = "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details[:10])
        return error_answer(reader_language(request), 422, "invalid_request", f"the request is not valid: {listing}",
                            details)

    @app.exception_handler(OperationalError)
    async def _database_unavailable(request: Request, exc: OperationalError) -> Response:
        # The database restarting or out of reach: nothing was stored (the transaction rolled back), and the
        # same request, sent again, will be answered once it is back. Clients retry on 503 with Retry-After.
        reason = outage_reason(exc)
        log.warning("database unavailable: %s", reason)
        if wants_page(request):
            return _page_or_json(request, 503, "database_unavailable", {**headers, "Retry-After": "2"})
        return error_answer(reader_language(request), 503, "database_unavailable",
                            "the database is not reachable just now; nothing was stored, try again",
                            headers={"Retry-After": "2"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The details go to the log, not to the client.
        log.exception("unhandled error", exc_info=exc)
        if wants_page(request):
            return _page_or_json(request, 500, "internal_error", headers)
        return error_answer(reader_language(request), 500, "internal_error",
                            "something went wrong on the server; it has been logged", headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = HTTP_CODES.get(exc.status_code, "error")
        if wants_page(request):  # a page address that does not exist, or not for this method
            return page_answer(request, exc.status_code, code, getattr(exc, "headers", None))
        return error_answer(reader_language(request), exc.status_code, code, str(exc.detail),
                            headers=getattr(exc, "headers", None))
