"""HMAC-SHA256 signatures on outbound bodies: `X-Baton-Signature: t=<unix time>,v1=<hex>`.

The signed message is `<t>.<body>`, so a captured request cannot be replayed later with a new time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Baton-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300, now: int | None = None) -> bool:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        moment = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = int(time.time()) if now is None else now
    if abs(current - moment) > tolerance:
        return False
    expected = sign(secret, body, moment).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)
