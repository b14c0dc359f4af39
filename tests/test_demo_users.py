"""The demo's users are named as the pages show people: a display name with the department, never the user
name (`meteorology`, `office`), and their passwords are kept, not printed, between runs."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlmodel import select

from core.platform.db import session_scope
from core.users.models import User
from flows.demo import demo_users


def test_the_demos_users_have_chinese_display_names_and_keep_their_passwords(baton: str, tmp_path: Path) -> None:
    first = demo_users(tmp_path, ["meteorology", "water_affairs"])
    with session_scope() as session:
        shown = {u.username: u.display_name for u in session.exec(select(User)).all()}
    assert shown["office"] == "应急办值班员" and shown["admin"] == "系统管理员"
    assert shown["meteorology"] == "市气象局值班员" and shown["water_affairs"].endswith("值班员")
    assert all(name != display for name, display in shown.items()), shown
    assert stat.S_IMODE((tmp_path / "demo-users.txt").stat().st_mode) == 0o600
    assert demo_users(tmp_path, ["meteorology", "water_affairs"]) == first  # created once, passwords kept
