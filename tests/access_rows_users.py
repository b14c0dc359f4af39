"""Access-matrix rows for user administration and the audit trail (see test_access.py): administrators only.

A department user of the same department as the target user is no more an administrator than any other: 403
for everyone but admin, and 404 for admin when the user does not exist. Targets are fresh department users
with a token, a failed login counted and a lockout running (so that each action has something to change), or
such a user already disabled (to enable)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from core.platform.clock import utcnow
from core.platform.db import session_scope
from core.users.models import User
from tests.access_matrix import roles
from tests.api_server import issued_token, make_user
from tests.test_access import Case, Target

ADMIN = roles(401, 403, 403, 200, 403, 403)
ADMIN_MISSING = roles(401, 403, 403, 404, 403, 403)
PASSWORD_BODY = {"password": "a-new-password-42"}


def new_user(target: Target) -> dict[str, Any]:
    return {"username": f"desk-{uuid.uuid4().hex[:8]}", "role": "department", "department": "water_affairs",
            "password": "a-first-password-42", "display_name": "水务值班"}


def _user(kind: str, *, active: bool) -> Target:
    username = f"u-{uuid.uuid4().hex[:10]}"
    user_id = make_user(username, "department", "water_affairs")
    issued_token(username)
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        user.failed_logins = 2
        user.locked_until = utcnow() + timedelta(minutes=10)
        user.active = active
        session.add(user)
    return Target(kind, {"user_id": user_id}, "water_affairs", "public_security")


ROWS: list[Case] = [
    Case("GET", "/api/users", "none", ADMIN),
    Case("GET", "/api/users?q=water&limit=200&offset=0", "none", ADMIN, note="searched, paged"),
    *[Case("PATCH", "/api/users/{user_id}", target, expect, json={"display_name": "水务值班（夜）"}, writes=True)
      for target, expect in (("user", ADMIN), ("unknown", ADMIN_MISSING))],
    Case("GET", "/api/users/lockouts", "none", ADMIN),
    Case("POST", "/api/users", "none", roles(401, 403, 403, 201, 403, 403), json=new_user, writes=True),
    *[Case("POST", f"/api/users/{{user_id}}/{action}", target, expect, json=body, writes=True)
      for action, body, kind in (("disable", {"reason": "调离岗位"}, "user"), ("enable", None, "disabled_user"),
                                 ("unlock", None, "user"), ("revoke-tokens", None, "user"),
                                 ("password", PASSWORD_BODY, "user"))
      for target, expect in ((kind, ADMIN), ("unknown", ADMIN_MISSING))],
    Case("GET", "/api/audit", "none", ADMIN),
    Case("GET", "/api/audit?action=login", "none", ADMIN),
]

TARGETS = {"user": lambda: _user("user", active=True), "disabled_user": lambda: _user("disabled_user", active=False)}
