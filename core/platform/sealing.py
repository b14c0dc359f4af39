"""Secrets Baton must use again later (a robot's access token, a gateway's API key, DingTalk's signing secret),
sealed at rest: a copy of the database, a backup or a stray `SELECT` shows `sealed:v1:…`, never the secret.

Sealed with Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under a key derived from the instance's
secret key (`BATON_SECRET_KEY`, else `<data dir>/secret_key`), so the key is never beside the data in the database.
A value stored before sealing existed reads as it is and is sealed the next time it is written. A value sealed
under another secret key cannot be read: it reads as empty and is named in the log (without the value), and the
office enters it again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from core.platform.settings import get_settings

PREFIX = "sealed:v1:"
log = logging.getLogger("baton.sealing")


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    # A key of its own for sealing, derived from the instance's: the same secret key signs sessions and links.
    derived = hashlib.sha256(b"baton sealed values v1\x00" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(value: str) -> str:
    if not value or value.startswith(PREFIX):
        return value
    token = _fernet(get_settings().resolved_secret_key()).encrypt(value.encode())
    return PREFIX + token.decode()


def unseal(stored: str) -> str:
    if not stored.startswith(PREFIX):
        return stored  # stored before sealing existed: sealed on its next write
    try:
        return _fernet(get_settings().resolved_secret_key()).decrypt(stored.removeprefix(PREFIX).encode()).decode()
    except InvalidToken:
        log.warning("a sealed value cannot be opened with this instance's secret key (was BATON_SECRET_KEY "
                    "changed?); it reads as empty until it is entered again")
        return ""


class SealedText(TypeDecorator[str]):
    """A text column whose values are sealed when written and opened when read."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else seal(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unseal(str(value))
