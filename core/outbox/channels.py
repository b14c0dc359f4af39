"""Notification channels: how Baton reaches people (not department systems). One home for them, beside the
department webhooks and e-mail, because a message to a person is queued, attempted, retried, logged and
dead-lettered exactly as those are (`queue`, `sending`, `tasks.delivery`).

Channels, configured by the office (`NotifyChannel`), each speaking its real protocol:

- `dingtalk`: a DingTalk custom robot. JSON posted to the webhook (`url` + `access_token`), with the query
  parameters `timestamp` (ms) and `sign` = urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))); the
  person is @-mentioned by mobile number. The robot answers 200 with `{"errcode": 0}`, or an error code.
- `wecom`: a WeCom (企业微信) group robot: JSON `msgtype` text to `.../cgi-bin/webhook/send?key=…`, the person in
  `mentioned_mobile_list`; `{"errcode": 0}` as DingTalk.
- `sms`: a generic HTTP SMS gateway: JSON `{"phone_numbers": […], "text": …, "message_id": …}` with the gateway's
  API key in `X-API-Key`.
- `email`: through the mail server in settings (`BATON_SMTP__…`), to the person's address.

A person's address on a channel is a `ChannelContact`. A drill's messages go only to channels marked
`for_drills`, and every drill message starts with 【演练】; a channel's token and secret are never logged and are
shown back masked. A message's answer link is signed when it is sent (`core.outbox.links`), never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import smtplib
import time
import urllib.parse
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from sqlmodel import Session, col, select

from core.incidents.models import Incident
from core.outbox import queue as outbox
from core.outbox.links import answer_url
from core.outbox.models import ChannelContact, ChannelKind, DeliveryOutcome, NotifyChannel, OutboundDelivery
from core.platform.errors import BatonError, NotFound
from core.platform.settings import get_settings
from core.users.models import User
from core.users.service import audit

if TYPE_CHECKING:
    from core.outbox.sending import Attempt, Message

PREFIX = "notice."
DRILL_STAMP = "【演练】"
MOBILE = re.compile(r"^\+?[0-9][0-9 -]{5,19}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]+$")
# Robot error codes worth trying again: DingTalk's "sending too fast" and "system busy", WeCom's rate limit.
RETRYABLE_ERRCODES = frozenset({-1, 130101, 45009, 45033})


class ChannelInvalid(BatonError):
    code = "channel_invalid"
    http_status = 422


def is_notice(purpose: str) -> bool:
    return purpose.startswith(PREFIX)


def mask(secret: str) -> str:
    """A secret as it is shown back: its last four characters at most, and only when it is long."""
    if not secret:
        return ""
    return "••••" + secret[-4:] if len(secret) >= 12 else "••••"


# -- configuring ------------------------------------------------------------------------------------------------
def add_channel(session: Session, *, name: str, kind: str, url: str = "", token: str = "", secret: str = "",
                for_drills: bool = False, actor: str) -> NotifyChannel:
    """A new channel (audited, without its token or secret)."""
    name = name.strip()
    if not name or len(name) > 64:
        raise ChannelInvalid("a channel needs a name of at most 64 characters",
                             details={"field": "name", "reason": "name_invalid"})
    if kind not in {k.value for k in ChannelKind}:
        raise ChannelInvalid(f"kind is one of {', '.join(k.value for k in ChannelKind)}",
                             details={"field": "kind", "reason": "kind_invalid"})
    url, token, secret = url.strip(), token.strip(), secret.strip()
    if kind != ChannelKind.email:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or len(url) > 500:
            raise ChannelInvalid("the channel's address is an http(s) URL",
                                 details={"field": "url", "reason": "url_invalid"})
        if parsed.query and any(k in ("access_token", "key") for k in urllib.parse.parse_qs(parsed.query)):
            raise ChannelInvalid("give the robot's access token or key as `token`, not in the URL (it is a secret)",
                                 details={"field": "url", "reason": "token_in_url"})
        if not token:
            raise ChannelInvalid("a robot needs its access token or key, a gateway its API key",
                                 details={"field": "token", "reason": "token_needed"})
    elif get_settings().smtp is None:
        raise ChannelInvalid("e-mail needs a mail server in settings (BATON_SMTP__HOST …)",
                             details={"field": "kind", "reason": "smtp_missing"})
    if session.exec(select(NotifyChannel.id).where(NotifyChannel.name == name)).first() is not None:
        raise ChannelInvalid(f"there is a channel named '{name}' already",
                             details={"field": "name", "reason": "name_taken"})
    channel = NotifyChannel(name=name, kind=kind, url=url, token=token, secret=secret, for_drills=for_drills,
                            created_by=actor)
    session.add(channel)
    session.flush()
    audit(session, actor=actor, action="channel.added", channel=channel.id, name=name, kind=kind,
          for_drills=for_drills)
    return channel


def update_channel(session: Session, *, channel_id: str, actor: str, active: bool | None = None,
                   for_drills: bool | None = None) -> NotifyChannel:
    channel = get_channel(session, channel_id)
    if active is not None:
        channel.active = active
    if for_drills is not None:
        channel.for_drills = for_drills
    session.add(channel)
    audit(session, actor=actor, action="channel.changed", channel=channel.id, active=channel.active,
          for_drills=channel.for_drills)
    return channel


def get_channel(session: Session, channel_id: str) -> NotifyChannel:
    channel = session.get(NotifyChannel, channel_id)
    if channel is None:
        raise NotFound(f"no channel '{channel_id}'")
    return channel


def list_channels(session: Session) -> list[NotifyChannel]:
    return list(session.exec(select(NotifyChannel).order_by(col(NotifyChannel.name))).all())


def public(channel: NotifyChannel, contacts: int | None = None) -> dict[str, Any]:
    """A channel as it is shown: its token and secret masked."""
    return {"id": channel.id, "name": channel.name, "kind": channel.kind, "url": channel.url,
            "token": mask(channel.token), "secret": mask(channel.secret), "for_drills": channel.for_drills,
            "active": channel.active, "created_by": channel.created_by, "created_at": channel.created_at,
            "contacts": contacts}


def set_contact(session: Session, *, channel_id: str, username: str, address: str, actor: str) -> ChannelContact:
    """How the channel reaches the person: a mobile number (robots, SMS) or a mailbox (e-mail). Audited."""
    channel = get_channel(session, channel_id)
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise ChannelInvalid(f"'{username[:64]}' is not a user", details={"field": "username", "reason": "not_a_user"})
    address = address.strip()
    pattern = EMAIL if channel.kind == ChannelKind.email else MOBILE
    if not pattern.fullmatch(address):
        email = channel.kind == ChannelKind.email
        raise ChannelInvalid("an e-mail channel needs a mailbox address" if email
                             else "this channel reaches people by their mobile number",
                             details={"field": "address", "reason": "mailbox_needed" if email else "mobile_needed"})
    row = session.exec(select(ChannelContact).where(ChannelContact.channel_id == channel.id,
                                                    ChannelContact.user_id == user.id)).first()
    if row is None:
        row = ChannelContact(channel_id=channel.id, user_id=user.id, address=address, added_by=actor)
    else:
        row.address, row.added_by = address, actor
    session.add(row)
    session.flush()
    audit(session, actor=actor, action="channel.contact_set", channel=channel.id, username=user.username)
    return row


def contact_count(session: Session, channel_id: str) -> int:
    return len(session.exec(select(ChannelContact.id).where(ChannelContact.channel_id == channel_id)).all())


def reaching(session: Session, *, user_id: str, drill: bool) -> list[tuple[NotifyChannel, ChannelContact]]:
    """The active channels that reach the person, with their address: for a drill, only channels for drills."""
    query = select(NotifyChannel, ChannelContact).join(
        ChannelContact, col(ChannelContact.channel_id) == col(NotifyChannel.id)).where(
        ChannelContact.user_id == user_id, col(NotifyChannel.active).is_(True))
    if drill:
        query = query.where(col(NotifyChannel.for_drills).is_(True))
    return [(channel, contact) for channel, contact in session.exec(query.order_by(col(NotifyChannel.name))).all()]


def queue_notice(session: Session, *, incident: Incident, key: str, user: User, channel: NotifyChannel,
                 contact: ChannelContact, title: str, text: str, answer: tuple[str, Any] | None = None
                 ) -> OutboundDelivery:
    """Queue a message to the person on the channel, once per `key`; `answer` (request id, link expiry) adds a
    signed answer link when it is sent."""
    notice: dict[str, Any] = {"channel_id": channel.id, "kind": channel.kind, "address": contact.address,
                              "username": user.username, "title": title, "text": text, "answer": None}
    if answer is not None:
        notice["answer"] = {"request_id": answer[0], "expires_at": answer[1].isoformat()}
    return outbox.queue(session, incident=incident, key=key, purpose=f"{PREFIX}{channel.kind}",
                        target=user.username[:64], payload={"notice": notice}, endpoint=channel.id)


# -- sending ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelConfig:
    """A channel as one attempt uses it, read in the attempt's short transaction."""

    id: str
    kind: str
    url: str
    token: str
    secret: str
    for_drills: bool
    active: bool


def config_of(session: Session, channel_id: str | None) -> ChannelConfig | None:
    channel = session.get(NotifyChannel, channel_id) if channel_id else None
    if channel is None:
        return None
    return ChannelConfig(id=channel.id, kind=channel.kind, url=channel.url, token=channel.token,
                         secret=channel.secret, for_drills=channel.for_drills, active=channel.active)


def worded(notice: dict[str, Any], *, drill: bool) -> tuple[str, str]:
    """The message's title and text as the person reads them: stamped 演练 for a drill, with the answer link."""
    stamp = DRILL_STAMP if drill else ""
    title = f"{stamp}{notice['title']}"
    text = f"{stamp}{notice['text']}"
    answer = notice.get("answer")
    if answer:
        from datetime import datetime

        url = answer_url(answer["request_id"], datetime.fromisoformat(answer["expires_at"]))
        text += f"\n请点击链接确认收到 / Confirm you have it: {url}"
    return title, text


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")))."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(mac))


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = "&".join(filter(None, [parts.query, urllib.parse.urlencode(params, safe="%")]))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def request_for(config: ChannelConfig, notice: dict[str, Any], *, drill: bool, message_id: str
                ) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL, headers and JSON body that deliver the notice over the channel's protocol."""
    title, text = worded(notice, drill=drill)
    address = notice["address"]
    if config.kind == ChannelKind.dingtalk:
        params = {"access_token": config.token}
        if config.secret:
            stamp = int(time.time() * 1000)  # the robot checks it against its own clock: real time, never a test's
            params |= {"timestamp": str(stamp), "sign": dingtalk_sign(config.secret, stamp)}
        body = {"msgtype": "text", "text": {"content": f"{title}\n{text}"},
                "at": {"atMobiles": [address], "isAtAll": False}}
        return _with_query(config.url, params), {}, body
    if config.kind == ChannelKind.wecom:
        body = {"msgtype": "text", "text": {"content": f"{title}\n{text}", "mentioned_mobile_list": [address]}}
        return _with_query(config.url, {"key": config.token}), {}, body
    body = {"message_id": message_id, "phone_numbers": [address], "text": f"{title}\n{text}"}
    return config.url, {"X-API-Key": config.token}, body


async def send(item: Message, config: ChannelConfig | None) -> Attempt:
    """One attempt to deliver a notice over its channel; an answer is judged as `sending` judges a webhook's,
    and a robot's error code in a 200 answer is a failure (retried when the robot says to slow down)."""
    from core.outbox.sending import Attempt, outcome_of
    from core.platform.tls import tls_context

    notice = item.payload.get("notice") or {}
    if config is None or not config.active:
        return Attempt(status_code=None, error="the channel is gone or switched off", latency_ms=None,
                       outcome=DeliveryOutcome.no_endpoint)
    if item.drill and not config.for_drills:
        return Attempt(status_code=None, error="a drill's message goes to channels for drills only", latency_ms=None,
                       outcome=DeliveryOutcome.no_endpoint)
    message_id = str(item.payload.get("message_id") or item.delivery_id)
    if config.kind == ChannelKind.email:
        return await _send_mail(item, notice, message_id)
    url, headers, body = request_for(config, notice, drill=item.drill, message_id=message_id)
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=get_settings().http_timeout, verify=tls_context()) as client:
            response = await client.post(url, content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                         headers={"Content-Type": "application/json; charset=utf-8",
                                                  "Idempotency-Key": item.key, **headers})
    except httpx.HTTPError as exc:
        # The exception's text may hold the URL, and the URL the robot's token: name the kind of failure only.
        return Attempt(status_code=None, error=type(exc).__name__, latency_ms=(time.perf_counter() - started) * 1000,
                       outcome=None)
    latency = (time.perf_counter() - started) * 1000
    outcome = outcome_of(response.status_code)
    error = None if outcome == DeliveryOutcome.delivered else f"HTTP {response.status_code}"
    if outcome == DeliveryOutcome.delivered and config.kind in (ChannelKind.dingtalk, ChannelKind.wecom):
        try:
            answer = response.json()
            errcode = int(answer.get("errcode", 0))
        except (ValueError, AttributeError, TypeError):
            errcode, answer = -2, {}
        if errcode != 0:
            error = f"errcode {errcode}: {str(answer.get('errmsg', ''))[:200]}"
            outcome = None if errcode in RETRYABLE_ERRCODES else DeliveryOutcome.failed
    return Attempt(status_code=response.status_code, error=error, latency_ms=latency, outcome=outcome)


async def _send_mail(item: Message, notice: dict[str, Any], message_id: str) -> Attempt:
    from core.outbox import mail
    from core.outbox.sending import Attempt

    smtp = get_settings().smtp
    if smtp is None:
        return Attempt(status_code=None, error="no mail server configured", latency_ms=None,
                       outcome=DeliveryOutcome.no_endpoint)
    title, text = worded(notice, drill=item.drill)
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = title, smtp.sender, notice["address"]
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(idstring=message_id, domain=smtp.sender.rpartition("@")[2] or None)
    message.set_content(text)
    started = time.perf_counter()
    try:
        await anyio.to_thread.run_sync(mail.submit, smtp, message)
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused) as exc:
        code = getattr(exc, "smtp_code", 550)
        return Attempt(status_code=code, error=type(exc).__name__, latency_ms=(time.perf_counter() - started) * 1000,
                       outcome=DeliveryOutcome.failed if code >= 500 else None)
    except (OSError, smtplib.SMTPException) as exc:
        return Attempt(status_code=None, error=f"{type(exc).__name__}: {exc}"[:300],
                       latency_ms=(time.perf_counter() - started) * 1000, outcome=None)
    return Attempt(status_code=250, error=None, latency_ms=(time.perf_counter() - started) * 1000,
                   outcome=DeliveryOutcome.delivered)
