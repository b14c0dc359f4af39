"""The page an official's answer link opens (叫应), no login: opening the link (GET) only shows what is to be
confirmed and a button (mail scanners and chat previews open every link, and must not answer for a person); the
answer is the button, a POST carrying a form token bound to the link. A forged, expired or used link gets a page
saying so in Chinese and English, and changes nothing."""

from __future__ import annotations

import hmac

from fastapi import Request, Response
from fastapi.responses import HTMLResponse

from api.deps import SessionDep, csrf_token
from api.pages.rendering import Form, base_context, field, page_router, query_lang
from core.platform.errors import BatonError
from core.platform.templating import render
from core.sharing import answers

router = page_router()
NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}


def _form_token(token: str) -> str:
    return csrf_token(f"answer:{token}")


def _page(request: Request, status: int, **context: object) -> HTMLResponse:
    lang = query_lang(request)
    html = render("pages/answer.html", lang, **base_context(request.url.path, None, lang), **context)
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def _refused(request: Request, exc: BatonError) -> HTMLResponse:
    return _page(request, exc.http_status, state=exc.code, view=None, token="", form_token="")


@router.get("/answer/{token}")
def answer_page(token: str, request: Request, session: SessionDep) -> HTMLResponse:
    """What is to be confirmed, and the button; opening it records nothing."""
    try:
        view = answers.view(session, token=token)
    except BatonError as exc:
        return _refused(request, exc)
    return _page(request, 200, state="confirm", view=view, token=token, form_token=_form_token(token))


@router.post("/answer/{token}")
def answer_confirm(token: str, request: Request, session: SessionDep, form: Form) -> Response:
    """The official confirms: recorded once, in the ledger; the form's token must be the one the page gave."""
    given = field(form, "confirm")
    try:
        answers.view(session, token=token)  # a forged, used or expired link is said so first
        if not given or not hmac.compare_digest(_form_token(token), given) or \
                request.headers.get("sec-fetch-site") == "cross-site":
            return _page(request, 403, state="csrf_failed", view=None, token="", form_token="")
        view = answers.answer(session, token=token)
    except BatonError as exc:
        session.rollback()
        return _refused(request, exc)
    session.commit()
    return _page(request, 200, state="answered", view=view, token="", form_token="")
