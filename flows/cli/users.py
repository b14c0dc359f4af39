"""`baton users`: users of the API and pages, and the audit trail."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from core.platform.settings import get_settings
from flows.cli.console import console, err
from flows.cli.session import session_call

T = TypeVar("T")

app = typer.Typer(help="Users of the API and pages.", no_args_is_help=True)


@app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="office, department, manager or admin.")],
    department: Annotated[str | None, typer.Option(help="Department key (department users only).")] = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    display_name: Annotated[str, typer.Option()] = "",
) -> None:
    """Add a user. The password comes from stdin (never from the command line, where `ps` would show it)."""
    from core.users.service import add_user

    if not password_stdin:
        err.print("[red]error[/red] give the password on stdin with --password-stdin")
        raise typer.Exit(2)
    password = sys.stdin.readline().rstrip("\n")
    user = session_call(add_user, username=name, role=role, department=department, password=password,
                         display_name=display_name)
    console.print(f"added {user.username} ({user.role}{', ' + user.department if user.department else ''})")


@app.command("list")
def users_list() -> None:
    from core.users.positions import holdings_of
    from core.users.service import list_users, lockouts

    running = session_call(lockouts)
    found = session_call(list_users)
    held = session_call(lambda s: holdings_of(s, [u.id for u in found]))
    table = Table("user", "name", "role", "department", "positions", "active", "locked out")
    for user in found:
        table.add_row(user.username, user.display_name, user.role, user.department or "", ", ".join(held[user.id]),
                      "yes" if user.active else "no",
                      ", ".join(x.source or "every address" for x in running.get(user.id, [])))
    console.print(table)


@app.command("grant")
def users_grant(name: Annotated[str, typer.Argument(help="User name.")],
                position: Annotated[str, typer.Argument(help="position@organisation, e.g. "
                                                             "commander@flood_control_hq.")]) -> None:
    """The user holds the position: the plans' level decisions it allows are theirs."""
    from core.users.positions import grant

    _for_user(name, grant, ref=position, actor=CLI_ADMIN)
    console.print(f"{name} holds {position}")


@app.command("revoke-position")
def users_revoke_position(name: Annotated[str, typer.Argument(help="User name.")],
                          position: Annotated[str, typer.Argument(help="position@organisation.")]) -> None:
    from core.users.positions import revoke

    _for_user(name, revoke, ref=position, actor=CLI_ADMIN)
    console.print(f"{name} no longer holds {position}")


CLI_ADMIN = "cli:admin"


def _for_user(username: str, action: Callable[..., T], **kwargs: Any) -> T:
    """Run an administration service on the user named `username` (the services take ids)."""
    from core.users.service import user_named

    def run(session: Any, **given: Any) -> T:
        return action(session, user_id=user_named(session, username=username).id, **given)

    return session_call(run, **kwargs)


@app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="User name.")],
                  reason: Annotated[str | None, typer.Option(help="Why (kept in the audit trail).")] = None) -> None:
    """Refuse the user's logins and end every token and page session they hold. A department left with nobody
    able to act on its open tasks: the emergency office is alerted on each."""
    from core.incidents.alerts import disable_user

    done = _for_user(name, disable_user, actor=CLI_ADMIN, reason=reason)
    console.print(f"disabled {name}; {done.revoked} token(s) and session(s) ended")
    if done.raised:
        err.print(f"[yellow]warning[/yellow] nobody active in {done.user.department} can act on its "
                  f"{len(done.raised)} open task(s); the emergency office has been alerted")


@app.command("enable")
def users_enable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    from core.users.service import enable_user

    _for_user(name, enable_user, actor=CLI_ADMIN)
    console.print(f"enabled {name}")


@app.command("unlock")
def users_unlock(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Lift a lockout after failed logins before it runs out."""
    from core.users.service import unlock_user

    _for_user(name, unlock_user, actor=CLI_ADMIN)
    console.print(f"unlocked {name}")


@app.command("revoke-tokens")
def users_revoke_tokens(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """End every token and page session of the user (a lost phone, a laptop left logged in)."""
    from core.users.service import revoke_all

    revoked = _for_user(name, revoke_all, actor=CLI_ADMIN)
    console.print(f"{revoked} token(s) and session(s) of {name} ended")


@app.command("password")
def users_password(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
) -> None:
    """Set a new password (from stdin); the old one's tokens and sessions end and any lockout is lifted."""
    from core.users.service import set_password

    if not password_stdin:
        err.print("[red]error[/red] give the password on stdin with --password-stdin")
        raise typer.Exit(2)
    password = sys.stdin.readline().rstrip("\n")
    revoked = _for_user(name, set_password, password=password, actor=CLI_ADMIN)
    console.print(f"password of {name} set; {revoked} token(s) and session(s) ended")


@app.command("audit")
def users_audit(
    action: Annotated[str | None, typer.Option(help="An action or its family: login, user, plan, token…")] = None,
    actor: Annotated[str | None, typer.Option(help="Who: user:NAME, anonymous:ADDRESS, cli:admin.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
) -> None:
    """The audit trail of logins and administrative changes, newest first."""
    from zoneinfo import ZoneInfo

    from core.users.service import list_audit

    page = session_call(list_audit, action=action, actor=actor, limit=limit)
    zone = ZoneInfo(get_settings().timezone)
    table = Table("at", "actor", "action", "detail", title=f"{len(page.items)} of {page.total} audit events")
    for event in page.items:
        table.add_row(event.at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"), event.actor, event.action,
                      json.dumps(event.detail, ensure_ascii=False, default=str))
    console.print(table)

