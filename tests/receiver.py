"""A department system on loopback for the tests: verifies Baton's signatures, drops repeats by message id,
and can be told to fail, hang or recover."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.outbox.signing import HEADER, verify


@dataclass
class Receiver:
    secret: str
    fail_next: int = 0  # answer 500 to this many requests
    hang_next: int = 0  # sleep past the client's timeout on this many requests
    hang_seconds: float = 3.0
    received: list[dict[str, Any]] = field(default_factory=list)  # accepted, de-duplicated
    requests: int = 0
    bad_signatures: int = 0
    duplicates: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def message_ids(self) -> list[str]:
        return [m["message_id"] for m in self.received]


@contextmanager
def running_receiver(secret: str) -> Iterator[Receiver]:
    receiver = Receiver(secret=secret)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.requests += 1
                hang = receiver.hang_next > 0
                receiver.hang_next -= 1 if hang else 0
                fail = not hang and receiver.fail_next > 0
                receiver.fail_next -= 1 if fail else 0
            if hang:
                time.sleep(receiver.hang_seconds)
            if not verify(receiver.secret, body, self.headers.get(HEADER, "")):
                with receiver.lock:
                    receiver.bad_signatures += 1
                self.send_response(401)
                self.end_headers()
                return
            if fail:
                self.send_response(500)
                self.end_headers()
                return
            message = json.loads(body)
            with receiver.lock:
                if message["message_id"] in receiver.message_ids():
                    receiver.duplicates += 1
                else:
                    receiver.received.append(message)
            self.send_response(202)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/baton"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
