"""The clock: aware UTC now. Every reading of the time goes through `utcnow`, so a test moves it forward (the
`clock` fixture, tests/fixtures/clock.py, sets `_shift`) instead of sleeping until a token or lock expires."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

# How far ahead of the system clock this process runs: zero outside tests.
_shift = timedelta(0)


def utcnow() -> datetime:
    return datetime.now(UTC) + _shift


def as_utc(moment: datetime) -> datetime:
    """A stored time as aware UTC: the database gives times back without their offset (SQLite keeps none), and
    Baton stores them in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
