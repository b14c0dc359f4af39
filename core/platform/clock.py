"""The clock: aware UTC now (tests inject their own through `utcnow`)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
