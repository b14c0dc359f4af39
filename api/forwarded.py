"""The client's address behind a reverse proxy: `X-Forwarded-For` and `X-Forwarded-Proto` are believed only
when the connection comes from an address in `BATON_TRUSTED_PROXIES` (empty by default: nobody).

Anyone can send those headers; believed from any peer, a guessing client would name a fresh address with every
request (escaping the login throttles) and put whatever it likes into the audit trail. uvicorn's own handling
(`--proxy-headers`, on by default, trusting loopback) is turned off in every command Baton ships
(`--no-proxy-headers`), so that this is the one place that decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from core.platform.settings import get_settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address.version == net.version and address in net for net in proxies)


def forwarded_client(peer: str, forwarded_for: list[str], proxies: Sequence[Network]) -> str:
    """The client's address: the peer itself unless it is a trusted proxy; then the nearest address in
    `X-Forwarded-For` (read from the right, as each proxy appends the one it saw) that is not a trusted proxy.
    A value that is not an IP address ends the walk: what lies left of it was written by the client."""
    if not forwarded_for or not _trusted(_address(peer), proxies):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        client = str(address)
        if not _trusted(address, proxies):
            break
    return client


class TrustedProxies:
    """ASGI middleware: sets the scope's client (and scheme) from the forwarded headers of a trusted proxy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            proxies = get_settings().trusted_proxies
            peer = scope.get("client")
            if proxies and peer:
                headers = scope.get("headers") or []
                forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
                client = forwarded_client(str(peer[0]), forwarded, proxies)
                if client != peer[0]:
                    scope["client"] = (client, 0)
                    proto = [v.decode("latin-1").strip() for k, v in headers if k == b"x-forwarded-proto"]
                    if proto and proto[-1] in ("http", "https"):
                        scope["scheme"] = proto[-1]
        await self.app(scope, receive, send)
