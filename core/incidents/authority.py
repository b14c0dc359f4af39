"""Who may start, raise, lower or end a response level: the positions the plan names for each level.

A person holding one of them decides. At night the office may record the decision "on the commander's verbal
order", naming the commander; it is flagged until that commander confirms it. A response started at the
warning gate by someone without the position is not held up (the office must be able to act), but it is
flagged until a holder confirms it. A plan that names no positions (an older version) leaves levels to the
office, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from core.incidents.models import Incident, LevelAuthorisation
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.plans.store import registry
from core.platform.clock import utcnow
from core.platform.errors import BatonError, NotFound
from core.users.models import Role, User, UserPosition
from core.users.positions import holds
from process_defs.schema import LEVEL_NUMERALS, LEVELS, IncidentType, level_rank, split_position

OFFICE_ROLES = (Role.office, Role.admin)
ACTS = {"start": ("启动", "start"), "raise": ("提升至", "raise the level to"), "lower": ("从该级别降低", "lower from"),
        "end": ("终止", "end the response at")}


class PositionRequired(BatonError):
    """The person lacks the position the plan names for this decision; `details.needs` lists the positions."""

    code = "position_required"
    http_status = 403


class AuthorisationConflict(BatonError):
    code = "authorisation_conflict"
    http_status = 409


@dataclass(frozen=True)
class Authorised:
    """A decision's authority: who took it (by which position), who recorded it, on a verbal order or not."""

    act: str
    level: str
    needs: list[str]
    authorised_by: str | None
    position: str | None
    recorded_by: str
    verbal: bool

    def details(self) -> dict[str, object]:
        return {"act": self.act, "level": self.level, "authorised_by": self.authorised_by,
                "position": self.position, "recorded_by": self.recorded_by, "verbal": self.verbal}


def _refusal(act: str, level: str, needs: list[str], lang: str, reason: str, who: str | None = None
             ) -> PositionRequired:
    reg = registry()
    names = "、".join(reg.position_name(r, "zh") for r in needs) if not lang.startswith("en") else "; ".join(
        reg.position_name(r, "en") for r in needs)
    zh_act, en_act = ACTS[act]
    if reason == "office_records_orders":
        message = ("只有应急办值班人员可以按领导口头指令代为记录" if not lang.startswith("en")
                   else "only the office records a decision on a verbal order")
    elif lang.startswith("en"):
        subject = f"{who} does not hold" if who else "you do not hold"
        message = f"to {en_act} level {level} needs one of these positions, which {subject}: {names}"
    else:
        subject = f"{who}不担任" if who else "您不担任"
        message = f"{zh_act}{LEVEL_NUMERALS.get(level, level)}级响应须由以下职务决定，{subject}：{names}"
    return PositionRequired(message, details={"reason": reason, "act": act, "level": level, "needs": needs},
                            lang="en" if lang.startswith("en") else "zh")


def require_position(session: Session, *, user: User, needs: list[str], act: str, what: tuple[str, str]) -> str:
    """The one rule of a sign-off by position (签发: an upward report, a public warning): the first of `needs` the
    user holds, else PositionRequired (403 `position_required`) naming the positions in the user's language.
    `what` says what the act needs, in Chinese and English (签发本报告须由以下职务之一签发 / signing this report off
    needs one of these positions); the message adds that the user does not hold them, and names them."""
    held = holds(session, user, needs)
    if held is not None:
        return held
    reg = registry()
    en = user.lang.startswith("en")
    names = ("; " if en else "、").join(reg.position_name(ref, "en" if en else "zh") for ref in needs)
    raise PositionRequired(f"{what[1]}, which you do not hold: {names}" if en else f"{what[0]}，您不担任：{names}",
                           details={"reason": "not_held", "act": act, "needs": needs}, lang="en" if en else "zh")


def authorise(session: Session, *, plan: IncidentType, act: str, level: str, user: User,
              ordered_by: str | None = None, needs: list[str] | None = None) -> Authorised:
    """The authority for `act` at `level` by `user`, or PositionRequired (403) naming the positions needed
    (`needs`, else the plan's for the act; ending a response is the authority that may lower its level).
    `ordered_by`: the user name of the commander whose verbal order an office user records."""
    if needs is None:
        needs = plan.positions_for("lower" if act == "end" else act, level)
    actor = f"user:{user.username}"
    if needs is None:
        if user.role not in OFFICE_ROLES:
            raise PositionRequired("the plan names no positions for its levels; the emergency office decides them",
                                   details={"reason": "office_decides", "act": act, "level": level, "needs": []})
        return Authorised(act, level, [], user.username, None, actor, verbal=False)
    if ordered_by is None:
        held = holds(session, user, needs)
        if held is None:
            raise _refusal(act, level, needs, user.lang, "not_held")
        return Authorised(act, level, needs, user.username, held, actor, verbal=False)
    if user.role not in OFFICE_ROLES:
        raise _refusal(act, level, needs, user.lang, "office_records_orders")
    commander = session.exec(select(User).where(User.username == ordered_by)).first()
    if commander is None or not commander.active:
        raise _refusal(act, level, needs, user.lang, "order_giver_unknown", who=ordered_by[:64])
    held = holds(session, commander, needs)
    if held is None:
        raise _refusal(act, level, needs, user.lang, "order_giver_lacks", who=commander.username)
    return Authorised(act, level, needs, commander.username, held, actor, verbal=True)


@dataclass(frozen=True)
class OrderGiver:
    """Someone whose verbal order the office may record: by the position `ref` (a person holding two of the
    positions is listed under each), their user name (what `ordered_by` names) and the name people call them."""

    ref: str
    username: str
    name: str


def order_givers(session: Session, needs: Iterable[str]) -> list[OrderGiver]:
    """Whose verbal order `authorise` accepts for a decision needing one of `needs`: each active user holding one
    of the positions (by `holds`, the rule `authorise` applies to the order's giver), position by position in the
    order given, then by name. Managers (who only read, and could not confirm the order) are left out."""
    refs = list(dict.fromkeys(needs))
    if not refs:
        return []
    candidates = session.exec(
        select(User).join(UserPosition, col(UserPosition.user_id) == col(User.id))
        .where(col(User.active).is_(True), User.role != Role.manager.value,
               col(UserPosition.position).in_(sorted({split_position(ref)[0] for ref in refs})))).unique().all()
    found: list[OrderGiver] = []
    for ref in refs:
        holders = [user for user in candidates if holds(session, user, [ref]) is not None]
        found.extend(OrderGiver(ref, user.username, user.display_name or user.username)
                     for user in sorted(holders, key=lambda u: (u.display_name or u.username, u.username)))
    return found


def level_change_needs(plan: IncidentType, level: str) -> list[str] | None:
    """The positions that may decide some change from `level` to another level (raising to a higher one needs
    that level's `raise` positions, lowering needs `level`'s `lower` ones, as `change_level` asks), in the plan's
    order; None when the plan names no positions."""
    found: list[str] = []
    for other in LEVELS:
        if other == level:
            continue
        needs = plan.positions_for("raise", other) if level_rank(other) > level_rank(level) \
            else plan.positions_for("lower", level)
        if needs is None:
            return None
        found.extend(ref for ref in needs if ref not in found)
    return found


def unauthorised(act: str, level: str, needs: list[str] | None, actor: str) -> Authorised | None:
    """A decision recorded by someone without the position (flagged until a holder confirms); None when the
    plan names no positions."""
    return None if needs is None else Authorised(act, level, needs, None, None, actor, verbal=False)


def record(session: Session, *, incident: Incident, authorised: Authorised, at: datetime,
           level_change_id: int | None = None) -> LevelAuthorisation:
    row = LevelAuthorisation(incident_id=incident.id, act=authorised.act, level=authorised.level,
                             needs=authorised.needs, authorised_by=authorised.authorised_by,
                             position=authorised.position, recorded_by=authorised.recorded_by,
                             verbal=authorised.verbal, at=at, level_change_id=level_change_id)
    session.add(row)
    session.flush()
    return row


def list_authorisations(session: Session, incident_id: str) -> list[LevelAuthorisation]:
    return list(session.exec(select(LevelAuthorisation).where(LevelAuthorisation.incident_id == incident_id)
                             .order_by(col(LevelAuthorisation.at))).all())


def awaiting(session: Session, incident_id: str) -> list[LevelAuthorisation]:
    """Decisions flagged until confirmed: recorded on a verbal order, or taken without the position."""
    return [row for row in list_authorisations(session, incident_id) if row.awaiting_confirmation]


def confirm(session: Session, *, incident: Incident, authorisation_id: str, user: User) -> LevelAuthorisation:
    """The commander confirms a decision recorded on their verbal order; a holder of the position confirms a
    start taken without it. Ledgered."""
    row = session.get(LevelAuthorisation, authorisation_id)
    if row is None or row.incident_id != incident.id:
        raise NotFound(f"no level decision '{authorisation_id}' on incident {incident.code}")
    session.refresh(row)
    if not row.awaiting_confirmation:
        raise AuthorisationConflict("this decision is not awaiting confirmation")
    if row.verbal and user.username != row.authorised_by:
        raise PositionRequired(f"only {row.authorised_by}, who gave the order, confirms it",
                               details={"reason": "not_the_order_giver", "act": row.act, "level": row.level,
                                        "needs": row.needs})
    held = holds(session, user, row.needs)
    if held is None:
        raise _refusal(row.act, row.level, row.needs, user.lang, "not_held")
    now = utcnow()
    row.confirmed_at, row.confirmed_by = now, user.username
    if row.authorised_by is None:
        row.authorised_by, row.position = user.username, held
    session.add(row)
    ledger.append(session, incident=incident, kind=LedgerKind.level_confirmed, actor=f"user:{user.username}",
                  from_party=f"user:{user.username}", to_party="emergency_office",
                  idempotency_key=f"{row.id}:confirmed",
                  details={"authorisation_id": row.id, "act": row.act, "level": row.level, "position": held,
                           "verbal": row.verbal, "recorded_by": row.recorded_by}, at=now)
    return row


def starts_response(plan: IncidentType, step_key: str, outputs: dict[str, object]) -> bool:
    """Whether completing `step_key` with `outputs` is the decision that starts the response (the warning
    stage's gate, its decision leading into the response stage)."""
    stage = plan.stage_of(step_key)
    return (plan.stages.get(stage).gate == step_key and stage == "warning"
            and plan.stage_after(stage, dict(outputs)) == "response")


def decision_needs(plan: IncidentType, step_key: str, level: str) -> list[str] | None:
    """The positions a task's decision of a level needs, as `for_decision` asks them: the warning gate's start
    of the response, a termination step's end of it; None for a step that decides no level (or a plan that
    names no positions)."""
    stage = plan.stage_of(step_key)
    if stage == "warning" and plan.stages.get(stage).gate == step_key:
        return plan.positions_for("start", level)
    terminates = plan.step(step_key).terminates
    if terminates is not None:
        return terminates.approved_by or plan.positions_for("lower", level)
    return None


def for_decision(session: Session, *, plan: IncidentType, step_key: str, outputs: dict[str, object], level: str,
                 by: User | None, ordered_by: str | None, actor: str) -> Authorised | None:
    """The authority of a task that decides a level: starting the response at the warning gate, or ending it
    (a termination step). Taken without the position it still stands (the office must be able to act) but is
    flagged until a holder confirms it; an order naming someone without the position is refused. None for a
    task that decides no level."""
    step = plan.step(step_key)
    if starts_response(plan, step_key, outputs):
        act, needs = "start", plan.positions_for("start", level)
    elif step.terminates is not None:
        act, needs = "end", step.terminates.approved_by or plan.positions_for("lower", level)
    else:
        return None
    if by is not None:
        try:
            return authorise(session, plan=plan, act=act, level=level, user=by, ordered_by=ordered_by, needs=needs)
        except PositionRequired:
            if ordered_by is not None:
                raise
    return unauthorised(act, level, needs, actor)
