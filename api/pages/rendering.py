"""What every page shares: the router that answers in HTML, the page and error-page renderers, the context every
template gets, and the small form plumbing (the posted form, its fields, its CSRF token, the redirect after it).

Pages render through the one Jinja environment (`core.platform.templating`) in the reader's language.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from markupsafe import Markup, escape
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from api import refusals
from api.deps import LoginRequired, Principal, check_csrf, csrf_token
from api.errors import ApiError
from core.incidents import reads
from core.incidents.models import DepartmentTask
from core.plans.wording import PeopleOf, Wording
from core.platform import input_policy as policy
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.input_policy import Refusals, Violation
from core.platform.settings import get_settings
from core.platform.tabular import FileUnreadable
from core.platform.templating import SUBTITLED, render, with_english
from core.users.service import people

FRAGMENT_HEADER = "X-Baton-Fragment"
POLL_SECONDS = 3


class PageRoute(APIRoute):
    """Pages answer in HTML: no session → the login form; refusals and domain errors → an error page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                target = "/login" + (f"?next={quote(exc.next_url, safe='/')}" if exc.next_url else "")
                return RedirectResponse(target, status_code=303)
            except (BatonError, ApiError) as exc:
                db = getattr(request.state, "db", None)
                if isinstance(db, Session):
                    await run_in_threadpool(_roll_back, db, getattr(request.state, "principal", None))
                status = exc.http_status if isinstance(exc, BatonError) else exc.status
                return error_page(request, status, exc.code)

        return page_handler


def _roll_back(db: Session, principal: object) -> None:
    """Undo the refused request's writes. The user and their session token, read unchanged at the start, are kept
    as read (taken out of the session first: a rollback expires what it holds), so that the error page names the
    user without reading them again (from the event loop, where the page is rendered)."""
    if isinstance(principal, Principal):
        for row in (principal.user, principal.token):
            if row in db and row not in db.dirty:
                db.expunge(row)
    db.rollback()


def page_router() -> APIRouter:
    """A router of pages (one per area): HTML answers, and none of it in the API's schema."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


def error_page(request: Request, status: int, code: str) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    lang = principal.user.lang if isinstance(principal, Principal) else query_lang(request)
    html = render("pages/error.html", lang, **base_context(request.url.path, principal, lang), status=status,
                  code=code)
    return HTMLResponse(html, status_code=status)


def too_large_page(path: str, lang: str) -> HTMLResponse:
    """The page a browser gets when a form it sent is over the body limit (before any session is read)."""
    return HTMLResponse(render("pages/error.html", lang, **base_context(path, None, lang), status=413,
                               code="body_too_large"), status_code=413)


def query_lang(request: Request) -> str:
    return "en" if request.query_params.get("lang") == "en" else "zh"


def safe_next(value: str | None) -> str:
    """Only a path on this site (no scheme, no host, no `//`) is followed after login."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


class Helpers(Wording):
    """What page templates need: `Wording` with the short times of a console, overdue marks, and people named
    as people know them (`user:zhang` → 张三 · 市水务局, from `Wording.person`)."""

    def __init__(self, lang: str, people: PeopleOf | None = None) -> None:
        super().__init__(lang, people=people)
        self.subtitled = lang == SUBTITLED

    def t(self, text: Any) -> str:
        """A bilingual text in the reader's language; for a reader who asked for both, its Chinese marked with its
        English (core/platform/templating.py makes that a subtitle on the page)."""
        shown = super().t(text)
        if self.subtitled:
            both = text.model_dump() if hasattr(text, "model_dump") else text
            if isinstance(both, Mapping) and both.get("zh") and both.get("en"):
                return Markup(with_english(str(escape(shown)), str(escape(str(both["en"])))))
        return shown

    def when(self, moment: datetime | None, seconds: bool = False) -> str:
        """A console's short time, `07-20 18:00`, with its year (`2025-07-20 18:00`) when that is not this year's
        (in Baton's time zone): every page's times go through here."""
        pattern = "%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M"
        if moment is not None and self.local(moment, "%Y") != self.local(utcnow(), "%Y"):
            pattern = "%Y-" + pattern
        return self.local(moment, pattern)

    def overdue(self, task: DepartmentTask) -> bool:
        return reads.is_overdue(task)

    def said(self, code: str) -> str | None:
        """A refusal's code said as the API says it, in the reader's language (None for a code it does not
        know)."""
        return refusals.said(code, self.lang)


def plan_field(plan: Any, step_key: str | None, key: str) -> Any:
    """A plan's form field by step and key, or None: what a page needs to word a reported value by its label and
    unit (the board's figures, a grading proposal's basis)."""
    if step_key is None:
        return None
    try:
        return plan.step(step_key).field(key)
    except KeyError:
        return None


def base_context(path: str, principal: Principal | None, lang: str) -> dict[str, Any]:
    return {"user": principal.user if principal else None,
            "csrf": csrf_token(principal.token.id) if principal else "",
            "path": path, "h": Helpers(lang), "notice": None, "now": utcnow()}


def page(request: Request, principal: Principal, name: str, status_code: int = 200,
         headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    lang = principal.user.lang
    base = base_context(request.url.path, principal, lang)
    db = getattr(request.state, "db", None)
    if isinstance(db, Session):
        base["h"] = Helpers(lang, lambda: people(db))
    html = render(f"pages/{name}", lang, **{**base, **context})
    return HTMLResponse(html, status_code=status_code, headers=headers)


SECRET_FIELDS = frozenset({"password"})  # taken as typed: hashed, never stored, shown or published


async def form_data(request: Request) -> FormData:
    """The posted form, its texts held to the input policy (422 `input_invalid` otherwise). A form does not say
    which fields are one line, so tabs and newlines pass here; the services hold titles and places to one."""
    form = await request.form()
    refusals = Refusals()
    items = [(name, refusals.check(name, policy.text, value, multiline=True)
              if isinstance(value, str) and name not in SECRET_FIELDS else value)
             for name, value in form.multi_items()]
    refusals.raise_any()
    return FormData(items)


Form = Annotated[FormData, Depends(form_data)]


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def checked_form(principal: Principal, form: FormData) -> None:
    """Every form carries the session's CSRF token."""
    check_csrf(principal, field(form, "csrf") or None)


def chosen_file(form: FormData, name: str) -> tuple[str, bytes] | None:
    """The file chosen in an import form's file field (its name and bytes), None when none was (a browser sends an
    empty part). The name is what an import records as its source, so it is held to one line like any text; the
    size is already held by the app's body limit."""
    upload = form.get(name)
    if not isinstance(upload, UploadFile) or (not upload.filename and not upload.size):
        return None
    filename = PurePath((upload.filename or "").replace("\\", "/")).name
    try:
        filename = policy.text(filename, max_length=200)
    except Violation as exc:
        raise FileUnreadable("bad_name", f"the file's name {exc.message}", "文件名含有无法保存的字符或过长") from None
    return filename, upload.file.read()


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
