"""Access-matrix rows for the duty desk's queue of held signals (see test_access.py): the reviewers read it, the
emergency office (and admin) opens or dismisses a held signal; departments get 403, nobody logged in 401."""

from __future__ import annotations

import uuid

from core.platform.db import session_scope
from core.signals.models import Signal
from tests.access_matrix import roles
from tests.test_access import Case, Target

DESK = roles(401, 200, 403, 200, 403, 403)
DESK_MISSING = roles(401, 404, 403, 404, 403, 403)
DISMISS = {"reason": "雨量站故障，数据无效"}


def _held(kind: str) -> Target:
    """A level-Ⅰ rainfall signal held over its source's hourly cap."""
    with session_scope() as session:
        area = f"区{uuid.uuid4().hex[:6]}"
        row = Signal(source="hydrology_network", kind="rainfall", dedupe_key=f"rainfall:{area}",
                     rule="rainfall_threshold", payload={"kind": "rainfall", "area": area, "value": 150},
                     outcome="held", level="I")
        session.add(row)
        session.flush()
        return Target(kind, {"signal_id": row.id}, "water_affairs", "public_security")


ROWS: list[Case] = [
    Case("GET", "/api/signals", "none", roles(401, 200, 200, 200, 403, 403)),
    Case("GET", "/api/signals?status=held", "none", roles(401, 200, 200, 200, 403, 403)),
    Case("POST", "/api/signals/{signal_id}/open", "held_signal", DESK, writes=True),
    Case("POST", "/api/signals/{signal_id}/open", "unknown", DESK_MISSING, writes=True),
    Case("POST", "/api/signals/{signal_id}/dismiss", "held_signal", DESK, json=DISMISS, writes=True),
    Case("POST", "/api/signals/{signal_id}/dismiss", "unknown", DESK_MISSING, json=DISMISS, writes=True),
]

TARGETS = {"held_signal": lambda: _held("held_signal")}
