"""Positions users hold (`position@organisation`), granted and taken back by administrators, audited."""

from __future__ import annotations

from sqlmodel import Session, col, select

from core.plans.store import registry
from core.users.models import User, UserPosition
from core.users.service import UserInvalid, audit, get_user
from process_defs.law_rules import position_ref_problem
from process_defs.schema import split_position


def holdings(session: Session, user_id: str) -> list[UserPosition]:
    return list(session.exec(select(UserPosition).where(UserPosition.user_id == user_id)
                             .order_by(col(UserPosition.position), col(UserPosition.organisation))).all())


def holdings_of(session: Session, user_ids: list[str]) -> dict[str, list[str]]:
    """Each user's positions as references, for lists of users."""
    rows = session.exec(select(UserPosition).where(col(UserPosition.user_id).in_(user_ids))).all() if user_ids else []
    out: dict[str, list[str]] = {user_id: [] for user_id in user_ids}
    for row in rows:
        out[row.user_id].append(row.ref)
    return {k: sorted(v) for k, v in out.items()}


def held_posts(session: Session) -> list[tuple[User, UserPosition, User | None]]:
    """Every post an active user holds, with its holder and stand-in (AB角) if one is named: what an
    administrator chooses from to name a stand-in, instead of typing a user name and a position's code."""
    rows = session.exec(select(UserPosition, User).join(User, col(UserPosition.user_id) == col(User.id))
                        .where(col(User.active).is_(True))
                        .order_by(col(UserPosition.position), col(UserPosition.organisation), col(User.username))).all()
    stand_in_ids = {row.stand_in_id for row, _ in rows if row.stand_in_id}
    stand_ins = {u.id: u for u in session.exec(select(User).where(col(User.id).in_(stand_in_ids))).all()} \
        if stand_in_ids else {}
    return [(user, row, stand_ins.get(row.stand_in_id) if row.stand_in_id else None) for row, user in rows]


def holds(session: Session, user: User, refs: list[str]) -> str | None:
    """The first of `refs` the user holds (a bare position matches it held anywhere), or None."""
    held = {(h.position, h.organisation) for h in holdings(session, user.id)}
    for ref in refs:
        position, organisation = split_position(ref)
        if (organisation is None and any(p == position for p, _ in held)) or (position, organisation) in held:
            return ref
    return None


def grant(session: Session, *, user_id: str, ref: str, actor: str) -> UserPosition:
    user = get_user(session, user_id=user_id)
    why = position_ref_problem(ref, registry())
    if why is not None:
        raise UserInvalid(why, details={"reason": "position"})
    position, organisation = split_position(ref)
    existing = session.exec(select(UserPosition).where(UserPosition.user_id == user.id,
                                                       UserPosition.position == position,
                                                       UserPosition.organisation == organisation)).first()
    if existing is not None:
        return existing
    row = UserPosition(user_id=user.id, position=position, organisation=organisation, granted_by=actor)
    session.add(row)
    audit(session, actor=actor, action="user.position_granted", username=user.username, position=ref)
    session.flush()
    return row


def revoke(session: Session, *, user_id: str, ref: str, actor: str) -> None:
    user = get_user(session, user_id=user_id)
    position, organisation = split_position(ref)
    row = session.exec(select(UserPosition).where(UserPosition.user_id == user.id, UserPosition.position == position,
                                                  UserPosition.organisation == organisation)).first()
    if row is None:
        raise UserInvalid(f"{user.username} does not hold {ref}", details={"reason": "position_not_held"})
    session.delete(row)
    audit(session, actor=actor, action="user.position_revoked", username=user.username, position=ref)


def set_stand_in(session: Session, *, user_id: str, ref: str, stand_in: str | None, actor: str) -> UserPosition:
    """Name the stand-in (AB角, a user name; None clears it) called when the holder of `ref` does not answer a
    warning in time. Audited."""
    user = get_user(session, user_id=user_id)
    position, organisation = split_position(ref)
    row = session.exec(select(UserPosition).where(UserPosition.user_id == user.id, UserPosition.position == position,
                                                  UserPosition.organisation == organisation)).first()
    if row is None:
        raise UserInvalid(f"{user.username} does not hold {ref}", details={"reason": "position_not_held"})
    other = None
    if stand_in is not None:
        other = session.exec(select(User).where(User.username == stand_in)).first()
        if other is None:
            raise UserInvalid(f"'{stand_in[:64]}' is not a user", details={"reason": "stand_in_unknown"})
        if other.id == user.id:
            raise UserInvalid("the stand-in is the holder", details={"reason": "stand_in_is_holder"})
    row.stand_in_id = other.id if other is not None else None
    session.add(row)
    audit(session, actor=actor, action="user.stand_in_set", username=user.username, position=ref,
          stand_in=other.username if other is not None else None)
    return row


def stand_in_of(session: Session, *, user_id: str, ref: str) -> User | None:
    """The stand-in named for the user's holding of `ref` (a bare ref: any holding of that position), if any."""
    position, organisation = split_position(ref)
    query = select(UserPosition).where(UserPosition.user_id == user_id, UserPosition.position == position,
                                       col(UserPosition.stand_in_id).is_not(None))
    if organisation is not None:
        query = query.where(UserPosition.organisation == organisation)
    row = session.exec(query).first()
    return session.get(User, row.stand_in_id) if row is not None and row.stand_in_id else None
