"""Outages: the database or the Prefect server out of reach, or answering 5xx while theirs is.

A bad night has them (a database failover, a Prefect restart). A worker and the flows it runs ride them out,
trying again after a pause that grows to at most OUTAGE_RETRY_MAX seconds, rather than failing the incident's
flow run and backing off as from a bug: it costs one query to try, and the incident should go on as soon as they
are back. Anything else is a bug and is raised with its traceback.
"""

from __future__ import annotations

import httpx
from prefect.exceptions import PrefectHTTPStatusError
from sqlalchemy.exc import OperationalError

OUTAGE_RETRY_MAX = 8.0  # seconds between attempts while the database or the Prefect server is out of reach


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | httpx.TransportError):
        return True
    return isinstance(exc, PrefectHTTPStatusError) and exc.response.status_code >= 500


def outage_pause(attempt: int) -> float:
    """Seconds to wait before the next try after `attempt` (1, 2, …) failed ones in a row: 2, 4, 8, 8, …"""
    return min(OUTAGE_RETRY_MAX, 2.0 ** attempt)
