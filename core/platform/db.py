"""Database engines and sessions. SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL locks rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlmodel import Session, create_engine

from core.platform.settings import get_settings

T = TypeVar("T")


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=20,
                               max_overflow=20)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Leave transaction control to SQLAlchemy so that BEGIN IMMEDIATE below takes effect.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Take the write lock up front: two transactions that read then write would otherwise deadlock
            # on the lock upgrade and one would fail with "database is locked".
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


def get_engine() -> Engine:
    return engine_for(get_settings().resolved_database_url())


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


def outage_reason(exc: Exception) -> str:
    """The first line of what the database driver said (for one-line logs during an outage)."""
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


async def in_transaction(fn: Callable[..., T], /, *, lane: str = "work", **kwargs: Any) -> T:
    """Run `fn(session, **kwargs)` in one transaction on a worker thread, off the event loop.

    Threads are shared out by lane: flows' work queues behind its 16 threads, while a worker's own
    bookkeeping (lease renewals, claims, wake-ups: lane "leases") has threads of its own, so that a
    worker busy with many flows never lets its leases lapse and loses its incidents to another worker.
    """

    def work() -> T:
        with session_scope() as session:
            return fn(session, **kwargs)

    return await anyio.to_thread.run_sync(work, limiter=_limiter(lane))


@lru_cache(maxsize=4)
def _limiter(lane: str) -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(16 if lane == "work" else 3)


def new_id() -> str:
    return str(uuid.uuid4())
