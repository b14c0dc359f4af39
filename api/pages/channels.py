"""The office's notification channels page (通知渠道): the channels that reach people for 叫应 (DingTalk and WeCom
robots, an SMS gateway, e-mail), added, switched off and on, marked for drills; each person's address on a channel;
and, for an admin, a position holder's stand-in (AB角). The same services as `/api/channels` and
`PUT /api/users/{id}/stand-in` (`core.outbox.channels`, `core.users.positions`); a token or secret is typed in once
and only ever shown back masked."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select

from api.deps import AdminPageUser, OfficePageUser, Principal, SessionDep
from api.pages.rendering import Form, checked_form, field, page, page_router, redirect
from api.refusals import refusal_said
from core.outbox import channels
from core.outbox.models import ChannelKind
from core.platform.errors import BatonError
from core.users import positions
from core.users.models import Role, User
from core.users.service import list_users

router = page_router()

ADD_FIELDS = ("name", "kind", "url", "for_drills")  # shown again after a refusal; the token and secret never are
DONE = ("added", "changed", "contact", "stand_in")


def _field_of(exc: BatonError, default: str) -> str:
    details = exc.details if isinstance(exc.details, dict) else {}
    where = details.get("field")
    if where is None and str(details.get("reason", "")).startswith("stand_in"):
        where = "stand_in"
    return str(where or default)


def _said(exc: BatonError, lang: str) -> str:
    """What the page says beside the field: the refusal's reason, which the template words in the reader's
    language; for a refusal without one, its code's sentence (api/refusals.py)."""
    reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
    return str(reason) if reason else refusal_said(exc, lang)


def _page(request: Request, principal: Principal, session: Session, *, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None, status_code: int = 200) -> HTMLResponse:
    rows = [channels.public(c, channels.contact_count(session, c.id)) for c in channels.list_channels(session)]
    done = request.query_params.get("done")
    is_admin = principal.user.role == Role.admin
    return page(request, principal, "channels.html", status_code, channels=rows, kinds=[k.value for k in ChannelKind],
                errors=errors or {}, values=values or {}, done=done if done in DONE else None, is_admin=is_admin,
                posts=positions.held_posts(session) if is_admin else [],
                people=[u for u in list_users(session) if u.active] if is_admin else [])


def _refused(request: Request, principal: Principal, session: Session, exc: BatonError, *, prefix: str,
             default: str, values: dict[str, str]) -> HTMLResponse:
    if exc.http_status != 422:
        raise exc
    session.rollback()
    said = _said(exc, principal.user.lang)
    return _page(request, principal, session, errors={f"{prefix}{_field_of(exc, default)}": said}, values=values,
                 status_code=422)


@router.get("/office/channels")
def channels_page(request: Request, principal: OfficePageUser, session: SessionDep) -> HTMLResponse:
    return _page(request, principal, session)


@router.post("/office/channels")
def add_channel(request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    values = {name: field(form, name) for name in ADD_FIELDS}
    try:
        channels.add_channel(session, name=values["name"], kind=values["kind"], url=values["url"],
                             token=field(form, "token"), secret=field(form, "secret"),
                             for_drills=bool(values["for_drills"]), actor=principal.actor)
    except BatonError as exc:
        return _refused(request, principal, session, exc, prefix="", default="name", values=values)
    session.commit()
    return redirect("/office/channels?done=added")


@router.post("/office/channels/{channel_id}")
def change_channel(channel_id: str, request: Request, principal: OfficePageUser, session: SessionDep,
                   form: Form) -> Response:
    """Switch a channel off or on, or mark it for drills or not (the buttons send what they change)."""
    checked_form(principal, form)
    change: dict[str, Any] = {}
    for name in ("active", "for_drills"):
        value = field(form, name)
        if value in ("0", "1"):
            change[name] = value == "1"
    channels.update_channel(session, channel_id=channel_id, actor=principal.actor, **change)
    session.commit()
    return redirect("/office/channels?done=changed")


@router.post("/office/channels-contacts")
def set_contact(request: Request, principal: OfficePageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    values = {f"contact_{name}": field(form, name) for name in ("channel", "username", "address")}
    try:
        channels.set_contact(session, channel_id=values["contact_channel"], username=values["contact_username"].strip(),
                             address=values["contact_address"], actor=principal.actor)
    except BatonError as exc:
        return _refused(request, principal, session, exc, prefix="contact_", default="address", values=values)
    session.commit()
    return redirect("/office/channels?done=contact")


@router.post("/admin/stand-ins")
def set_stand_in(request: Request, principal: AdminPageUser, session: SessionDep, form: Form) -> Response:
    checked_form(principal, form)
    values = {f"si_{name}": field(form, name).strip() for name in ("username", "position", "stand_in")}
    # The page offers each post with its holder as one choice ("<user name> <position>": neither has a space);
    # the user name and position fields stay for a client that posts them apart.
    holding = field(form, "holding").strip()
    if holding:
        values["si_holding"] = holding
        values["si_username"], _, values["si_position"] = holding.partition(" ")
    holder = session.exec(select(User).where(User.username == values["si_username"])).first()
    if holder is None:
        session.rollback()
        return _page(request, principal, session, values=values, status_code=422,
                     errors={"si_username": "not_a_user"})
    try:
        positions.set_stand_in(session, user_id=holder.id, ref=values["si_position"],
                               stand_in=values["si_stand_in"] or None, actor=principal.actor)
    except BatonError as exc:
        return _refused(request, principal, session, exc, prefix="si_", default="position", values=values)
    session.commit()
    return redirect("/office/channels?done=stand_in")
