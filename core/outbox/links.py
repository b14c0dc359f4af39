"""Signed links in the messages Baton sends to people: `<public_url>/answer/<token>`, where the token names an
answer request and when the link expires, signed with HMAC-SHA256 under the server's secret key (kept apart from
every other use of that key by its own prefix). The token is made when the message is sent, never stored: the
delivery log holds no link that answers for anybody. Whether a request was answered already (a link is good
once) is the answering domain's (`core.sharing.answers`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from core.platform.settings import get_settings

PURPOSE = b"baton-answer-link:v1:"


def _mac(request_id: str, expires: int) -> str:
    key = get_settings().resolved_secret_key().encode("utf-8")
    digest = hmac.new(key, PURPOSE + f"{request_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def token_for(request_id: str, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    return f"{request_id}.{expires}.{_mac(request_id, expires)}"


def answer_url(request_id: str, expires_at: datetime) -> str:
    return f"{get_settings().public_url.rstrip('/')}/answer/{token_for(request_id, expires_at)}"


@dataclass(frozen=True)
class LinkToken:
    request_id: str
    expires_at: datetime


def read_token(token: str) -> LinkToken | None:
    """The request a token names and its expiry, or None when the token is not one Baton signed (forged, cut,
    altered). Whether it has expired is the caller's question (it says so to the person)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 200:
        return None
    request_id, expires_text, given = parts
    if not expires_text.isdigit() or not request_id:
        return None
    expires = int(expires_text)
    if not hmac.compare_digest(_mac(request_id, expires), given):
        return None
    return LinkToken(request_id=request_id, expires_at=datetime.fromtimestamp(expires, UTC))
