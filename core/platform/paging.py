"""One page of a listing, and the query that reads it: the total that matches, then `limit` rows from `offset`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, func, select
from sqlmodel.sql.expression import SelectOfScalar


@dataclass
class Page:
    items: list[Any]
    total: int
    limit: int
    offset: int


def paged(session: Session, query: SelectOfScalar[Any], *order_by: Any, limit: int, offset: int) -> Page:
    total = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(*order_by).limit(limit).offset(offset)).all()
    return Page(list(rows), int(total), limit, offset)
