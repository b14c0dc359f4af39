"""`baton plans`: plan versions and proposed changes to plans."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.console import console, err
from flows.cli.session import session_call

app = typer.Typer(help="Plan versions and proposed changes to plans.", no_args_is_help=True)


def _print_diff(diff: str) -> None:
    for line in diff.splitlines():
        style = "green" if line.startswith("+") and not line.startswith("+++") else \
            "red" if line.startswith("-") and not line.startswith("---") else "cyan" if line.startswith("@@") else None
        console.print(line, style=style, markup=False, highlight=False)


@app.command("propose")
def plans_propose(
    type_key: Annotated[str, typer.Argument(metavar="TYPE", help="Incident type, e.g. flood.")],
    file: Annotated[Path, typer.Argument(help="The whole proposed plan file; its version is set for you.")],
    lesson: Annotated[str | None, typer.Option("--lesson", help="The lesson that calls for the change.")] = None,
    actor: Annotated[str, typer.Option()] = "cli:office",
) -> None:
    """Propose a new version of a plan: checked like `baton defs check`, kept with its diff for a planner."""
    from core.learning.service import propose

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]error[/red] cannot read {file}: {exc}")
        raise typer.Exit(1) from None
    proposal = session_call(propose, type_key=type_key, text=text, actor=actor, lesson_id=lesson)
    _print_diff(proposal.diff)
    console.print(f"proposal {proposal.id}: {type_key} v{proposal.base_version} → v{proposal.base_version + 1}; "
                  f"accept with: baton plans accept {proposal.id}")


@app.command("diff")
def plans_diff(proposal_id: str) -> None:
    """Show a proposal's unified diff against the version it changes."""
    from core.learning.service import get_proposal

    proposal = session_call(get_proposal, proposal_id=proposal_id)
    console.print(f"{proposal.type} v{proposal.base_version} → v{proposal.base_version + 1} ({proposal.status})")
    _print_diff(proposal.diff)


@app.command("accept")
def plans_accept(proposal_id: str, actor: Annotated[str, typer.Option()] = "cli:office") -> None:
    """Accept a proposal: new incidents of the type use the new version; open incidents keep theirs."""
    from core.learning.service import accept

    proposal, row = session_call(accept, proposal_id=proposal_id, actor=actor)
    console.print(f"{proposal.type} is now at version {row.version} (new incidents use it)")
    _warn_unstaffed([proposal.type])


def _unstaffed_by_plan(types: list[str]) -> dict[str, list[str]]:
    from core.incidents.alerts import unstaffed_plan_departments
    from core.plans.store import plan_in_use

    def load(session: Any) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for type_key in types:
            out[type_key] = unstaffed_plan_departments(session, plan_in_use(session, type_key)[0])
        return out

    return session_call(load)


def _warn_unstaffed(types: list[str]) -> int:
    found = {t: depts for t, depts in _unstaffed_by_plan(types).items() if depts}
    for type_key, departments in found.items():
        err.print(f"[yellow]warning[/yellow] {type_key}: nobody active can act for {', '.join(departments)}, "
                  "which the plan gives tasks to; each such task will alert the emergency office "
                  "(add users: baton users add)")
    return len(found)


@app.command("staffing")
def plans_staffing(type_key: Annotated[str | None, typer.Argument(metavar="[TYPE]")] = None) -> None:
    """The departments each plan gives tasks to that have no active user; exit 1 if there are any."""
    from core.plans.store import list_types

    if _warn_unstaffed([type_key] if type_key else list_types()):
        raise typer.Exit(1)
    console.print("every department the plans give tasks to has somebody able to act")


@app.command("reject")
def plans_reject(proposal_id: str, reason: Annotated[str, typer.Option()],
                 actor: Annotated[str, typer.Option()] = "cli:office") -> None:
    """Reject a proposal, with the reason (audited, and ledgered on the lesson's incident)."""
    from core.learning.service import reject

    proposal = session_call(reject, proposal_id=proposal_id, actor=actor, reason=reason)
    console.print(f"proposal {proposal.id} rejected")


@app.command("list")
def plans_list(type_key: Annotated[str | None, typer.Argument(metavar="[TYPE]")] = None) -> None:
    """Each plan's current version (shipped file or accepted), and the proposals."""
    from core.learning.service import current_plan, list_proposals
    from core.plans.store import list_types

    def load(session: Any) -> tuple[list[Any], list[Any]]:
        types = [type_key] if type_key else list_types()
        return [current_plan(session, t) for t in types], list_proposals(session, type_key=type_key, limit=200).items

    currents, proposals = session_call(load)
    table = Table("plan", "current version", "from")
    for item in currents:
        table.add_row(item.type, str(item.version), "shipped file" if item.source == "file" else "accepted proposal")
    console.print(table)
    listing = Table("proposal id", "plan", "version", "status", "by", "proposed (UTC)", "lesson")
    for p in proposals:
        listing.add_row(p.id, p.type, f"{p.base_version} → {p.base_version + 1}", p.status, p.proposed_by,
                        p.created_at.strftime("%Y-%m-%d %H:%M"), p.lesson_id or "")
    console.print(listing)

