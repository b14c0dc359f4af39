"""叫应 and the channels that carry it: the office configures notification channels (their tokens and secrets shown
back masked) and how each reaches a person, names the stand-in (AB角) of a position holder, and reads how a
warning's call went: answered out of called, who did not answer, the p95 time to answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from api.deps import AdminUser, OfficeUser, ReviewerUser, SessionDep
from api.schemas import Strict
from core.incidents import reads
from core.outbox import channels
from core.outbox.models import ChannelKind
from core.platform.input_policy import Line
from core.sharing import answers
from core.users import positions
from core.users.service import get_user

router = APIRouter(tags=["answers"])


class ChannelIn(Strict):
    name: Line = Field(min_length=1, max_length=64)
    kind: ChannelKind
    url: str = Field(default="", max_length=500, description="The robot's webhook or the gateway's address, "
                                                             "without its token (e-mail: none).")
    token: str = Field(default="", max_length=500, description="DingTalk's access_token, WeCom's key, or the SMS "
                                                               "gateway's API key. Never shown back in full.")
    secret: str = Field(default="", max_length=500, description="DingTalk's signing secret (加签). Never shown "
                                                                "back in full.")
    for_drills: bool = Field(default=False, description="A drill's messages go only to channels marked for drills.")


class ChannelChange(Strict):
    active: bool | None = None
    for_drills: bool | None = None


class ContactIn(Strict):
    username: Line = Field(min_length=1, max_length=64)
    address: Line = Field(min_length=3, max_length=200, description="A mobile number (robots, SMS) or a mailbox.")


class StandInIn(Strict):
    position: str = Field(min_length=1, max_length=130, pattern=r"^[a-z][a-z0-9_]*(@[a-z][a-z0-9_]*)?$")
    stand_in: Line | None = Field(default=None, max_length=64, description="The stand-in's user name; none clears.")


@router.get("/api/channels")
def list_channels(principal: OfficeUser, session: SessionDep) -> list[dict[str, Any]]:
    return [channels.public(c, channels.contact_count(session, c.id)) for c in channels.list_channels(session)]


@router.post("/api/channels", status_code=201)
def add_channel(body: ChannelIn, principal: OfficeUser, session: SessionDep) -> dict[str, Any]:
    channel = channels.add_channel(session, name=body.name, kind=body.kind.value, url=body.url, token=body.token,
                                   secret=body.secret, for_drills=body.for_drills, actor=principal.actor)
    return channels.public(channel, 0)


@router.patch("/api/channels/{channel_id}")
def change_channel(channel_id: str, body: ChannelChange, principal: OfficeUser,
                   session: SessionDep) -> dict[str, Any]:
    channel = channels.update_channel(session, channel_id=channel_id, actor=principal.actor, active=body.active,
                                      for_drills=body.for_drills)
    return channels.public(channel, channels.contact_count(session, channel.id))


@router.put("/api/channels/{channel_id}/contacts")
def set_contact(channel_id: str, body: ContactIn, principal: OfficeUser, session: SessionDep) -> dict[str, Any]:
    row = channels.set_contact(session, channel_id=channel_id, username=body.username, address=body.address,
                               actor=principal.actor)
    return {"channel_id": row.channel_id, "username": body.username, "address": row.address}


@router.put("/api/users/{user_id}/stand-in")
def set_stand_in(user_id: str, body: StandInIn, principal: AdminUser, session: SessionDep) -> dict[str, Any]:
    """The stand-in (AB角) called when this holder of the position does not answer a warning in time."""
    positions.set_stand_in(session, user_id=user_id, ref=body.position, stand_in=body.stand_in,
                           actor=principal.actor)
    return {"username": get_user(session, user_id=user_id).username, "position": body.position,
            "stand_in": body.stand_in}


@router.get("/api/incidents/{incident_id}/answers")
def incident_answers(incident_id: str, principal: ReviewerUser, session: SessionDep) -> dict[str, Any]:
    """How each call of the incident went (叫应): officials answered out of those called, who did not answer and
    whom that called (the stand-in, the level above), the p95 time to answer."""
    incident = reads.get_incident(session, incident_id, None)
    return {"incident_id": incident.id, "code": incident.code, **answers.figures(session, incident.id)}
