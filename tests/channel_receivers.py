"""Local receivers that speak the notification channels' protocols, on loopback, in threads, for the tests:

- a DingTalk custom robot: checks `access_token`, and `timestamp` (within the robot's hour) with its `sign`
  (urlencode(base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}")))), answering `{"errcode": 0}` or DingTalk's
  310000 "sign not match";
- a WeCom group robot: checks `key`, answering `{"errcode": 0}` or 93000 "invalid webhook url";
- an SMS gateway: checks the `X-API-Key` header (401 otherwise);
- a mail server (aiosmtpd).

Each keeps what it accepted; `fail_next` makes the next requests answer 500.
"""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    """What a robot or gateway accepted: the JSON bodies (and the texts and addresses in them)."""

    kind: str
    token: str
    secret: str = ""
    url: str = ""
    fail_next: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[tuple[str, str]]:
        """(address, text) of each accepted message."""
        out = []
        for body in self.bodies:
            if self.kind == "dingtalk":
                out.append((body["at"]["atMobiles"][0], body["text"]["content"]))
            elif self.kind == "wecom":
                out.append((body["text"]["mentioned_mobile_list"][0], body["text"]["content"]))
            else:
                out.append((body["phone_numbers"][0], body["text"]))
        return out


def dingtalk_expected_sign(secret: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _check(received: Received, path: str, query: dict[str, list[str]], headers: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer the real service gives such a request (0 errcode: accepted)."""
    one = {k: v[0] for k, v in query.items()}
    if received.kind == "dingtalk":
        if one.get("access_token") != received.token:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        stamp = one.get("timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) - time.time() * 1000) > 3600 * 1000:
            return 200, {"errcode": 310000, "errmsg": "invalid timestamp"}
        # The query is url-decoded once by parse_qs: the sign compares as base64.
        if not hmac.compare_digest(one.get("sign", ""), dingtalk_expected_sign(received.secret, stamp)):
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        return 200, {"errcode": 0, "errmsg": "ok"}
    if received.kind == "wecom":
        if path != "/cgi-bin/webhook/send" or one.get("key") != received.token:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        return 200, {"errcode": 0, "errmsg": "ok"}
    if headers.get("X-API-Key") != received.token:
        return 401, {"error": "bad api key"}
    return 200, {"accepted": 1}


@contextmanager
def running(kind: str, token: str, secret: str = "") -> Iterator[Received]:
    received = Received(kind=kind, token=token, secret=secret)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            parts = urllib.parse.urlsplit(self.path)
            status, answer = _check(received, parts.path, urllib.parse.parse_qs(parts.query), self.headers)
            with received.lock:
                fail = received.fail_next > 0
                received.fail_next -= 1 if fail else 0
                if fail:
                    status, answer = 500, {"error": "busy"}
                elif status == 200 and answer.get("errcode", 0) == 0:
                    received.bodies.append(json.loads(body))
                else:
                    received.refused.append(json.dumps(answer))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    received.url = f"http://127.0.0.1:{port}" + {"dingtalk": "/robot/send", "wecom": "/cgi-bin/webhook/send",
                                                 "sms": "/v1/sms"}[kind]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    port: int = 0


@contextmanager
def running_mail_server() -> Iterator[Mailbox]:
    box = Mailbox()

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
            box.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
