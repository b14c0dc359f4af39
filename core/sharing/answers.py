"""叫应: warnings that must be answered, not only sent ("发得出、送得到、叫得应"; "谁发布、谁叫应").

A released warning of a colour the plan's `answering:` block names (orange and red by default), and every
completed step that declares `must_answer`, opens a call (`AnswerCall`): each official the block names (by
position: the commander of the plan's headquarters, the heads of the sub-districts, towns and communities and the
evacuation keepers 转移责任人, as `core.incidents.permissions` resolves positions, rosters first; a sub-district's,
town's or community's posts only where its administrative area meets the warning's, see `Reach`, each called for
the post of its own organisation) is sent the warning on each of their channels (`core.outbox.channels`) with a
signed, single-use answer link, and must answer within the limit for its colour.
Unanswered, the official's stand-in (AB角: the roster's, else the one named for the position held) is called, then
the heads one level up (the organisation's supervisor in the registry). A red warning with no response started
within the plan's limit prompts the command. Every send, answer, escalation and prompt is a ledger entry.

`reconcile` does all of it from what the database says, like the engine: the incident's flow runs it after each
reconciliation of the plan (and the deadline sweep wakes an incident whose answer deadline passed). A delivery
that fails is retried and dead-lettered by the outbox like any other; only a person's answer through their link
marks them as having answered.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, bindparam, func, literal, null, or_
from sqlmodel import Session, col, select

from core.geo.shapes import Area, cap_alert_area
from core.incidents.models import DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.incidents.permissions import Official, position_holders, stand_in
from core.incidents.service import COMMAND, SYSTEM, lock_incident, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.outbox import channels
from core.outbox import queue as outbox
from core.outbox.links import read_token
from core.plans.store import plan_for_version, registry
from core.platform.clock import utcnow
from core.platform.errors import BatonError
from core.platform.settings import get_settings
from core.registers.service import AREA_ORGANISATIONS, area_meets, warning_area
from core.sharing.models import AnswerCall, AnswerRequest, CapAlert, WarningState
from core.users.models import User
from core.users.positions import holdings
from process_defs.actions import WARNING_COLOURS
from process_defs.schema import LEVEL_COLOURS, IncidentType, split_position

# Who is called one level up, by the kind of organisation above: its heads.
HEADS: dict[str, tuple[str, ...]] = {"headquarters": ("commander",), "government": ("principal_leader",
                                                                                    "bureau_director"),
                                     "sub_district": ("sub_district_head",), "town": ("town_head",),
                                     "community": ("community_head",)}
COLOUR_NAMES = {"red": ("红色", "red"), "orange": ("橙色", "orange"), "yellow": ("黄色", "yellow"),
                "blue": ("蓝色", "blue")}


class AnswerLinkInvalid(BatonError):
    """The link is not one Baton signed (forged, cut short, altered), or names no request."""

    code = "answer_link_invalid"
    http_status = 404


class AnswerLinkExpired(BatonError):
    code = "answer_link_expired"
    http_status = 410


class AnswerLinkUsed(BatonError):
    """The link was answered with already: a link is good once."""

    code = "answer_link_used"
    http_status = 409


@dataclass
class AnswerPass:
    """What one reconciliation did: the deliveries it queued and when to look again."""

    next_check: datetime | None = None
    deliveries: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)


# -- who is called ------------------------------------------------------------------------------------------------
def holders(session: Session, ref: str, at: datetime) -> list[User]:
    """Who holds `ref` now: by the roster for a rostered duty position (the stand-in while the holder is away),
    else every active user holding it."""
    return position_holders(session, ref, at)


def one_level_up(session: Session, ref: str, at: datetime) -> list[Official]:
    """The heads of the organisation above the position's (its supervisor in the registry)."""
    _, organisation = split_position(ref)
    dept = registry().department(organisation) if organisation else None
    above = registry().department(dept.supervisor) if dept is not None and dept.supervisor else None
    if above is None:
        return []
    for position in HEADS.get(above.kind.value, ()):
        found = [Official(u, f"{position}@{above.key}") for u in holders(session, f"{position}@{above.key}", at)]
        if found:
            return found
    return []


@dataclass
class Reach:
    """Which organisations a warning's area reaches (issue 18): a sub-district's, town's or community's posts are
    called only when its administrative area (辖区, the `area` register) meets the warning's polygons or circles. An
    organisation of any other kind (the headquarters, whose commander is always called; a bureau) is always
    reached, as is every one when the warning has no area."""

    session: Session
    area: Area
    known: dict[str, bool] = field(default_factory=dict)

    def organisation(self, key: str) -> bool:
        if not self.area:
            return True
        if key not in self.known:
            dept = registry().department(key)
            if dept is None or dept.kind.value not in AREA_ORGANISATIONS:
                self.known[key] = True
            else:
                meets = area_meets(self.session, organisation=key, area=self.area)
                # No area on file: called, as before areas were kept — better a call too many than a missed one.
                self.known[key] = meets is None or meets
        return self.known[key]

    def holder(self, user: User, ref: str) -> bool:
        """Whether the holder of `ref` is called: the post's organisation is reached, or for a bare position (held
        anywhere) any organisation where the user holds it (a holding with no organisation is always reached)."""
        return self.post(user, ref) is not None

    def post(self, user: User, ref: str) -> str | None:
        """The post the holder of `ref` is called for, or None when the warning does not reach it: `ref` itself
        when it names its organisation; for a bare position, the user's first holding of it in an organisation
        reached (`position@organisation`), so that the stand-in and the level above are that organisation's."""
        position, organisation = split_position(ref)
        if organisation is not None:
            return ref if self.organisation(organisation) else None
        held = sorted(h.organisation or "" for h in holdings(self.session, user.id) if h.position == position)
        if not held:
            return ref
        reached = [o for o in held if not o or self.organisation(o)]
        if not reached:
            return None
        return f"{position}@{reached[0]}" if reached[0] else ref


def officials(session: Session, plan: IncidentType, at: datetime, area: Area | None = None) -> list[Official]:
    """Everyone the plan says must answer, once each (a person holding two of the posts is called once); with a
    warning's `area`, only the holders of posts whose organisation it reaches (`Reach`)."""
    reach = Reach(session, area or Area())
    seen: set[str] = set()
    found = []
    for ref in plan.answering.positions(plan.command):
        for user in holders(session, ref, at):
            post = reach.post(user, ref) if user.id not in seen else None
            if post is not None:
                seen.add(user.id)
                found.append(Official(user, post))
    return found


# -- opening a call -----------------------------------------------------------------------------------------------
def _alert_words(alert: CapAlert, limit: timedelta) -> tuple[dict[str, str], dict[str, str]]:
    content = alert.content or {}
    headline = content.get("headline") or {}
    instruction = content.get("instruction") or {}
    minutes = round(limit.total_seconds() / 60)
    title = {"zh": str(headline.get("zh") or "预警信息"), "en": str(headline.get("en") or "Warning")}
    text = {"zh": f"{instruction.get('zh', '')}\n叫应：请在{minutes}分钟内确认收到。".strip(),
            "en": f"{instruction.get('en', '')}\nPlease confirm you have this warning within {minutes} minutes."
                  .strip()}
    return title, text


def _step_words(plan: IncidentType, task: DepartmentTask, colour: str,
                limit: timedelta) -> tuple[dict[str, str], dict[str, str]]:
    step = plan.step(task.step_key)
    minutes = round(limit.total_seconds() / 60)
    title = {"zh": step.title.zh, "en": step.title.en}
    body = step.description
    text = {"zh": f"{body.zh if body else step.title.zh}\n叫应：请在{minutes}分钟内确认收到。",
            "en": f"{body.en if body else step.title.en}\nPlease confirm you have this within {minutes} minutes."}
    return title, text


def _open(session: Session, incident: Incident, plan: IncidentType, *, source_key: str, colour: str,
          title: dict[str, str], text: dict[str, str], now: datetime, alert: CapAlert | None = None,
          task: DepartmentTask | None = None, result: AnswerPass) -> AnswerCall:
    limit = plan.answering.limit(colour)
    call = AnswerCall(incident_id=incident.id, source_key=source_key, alert_id=alert.id if alert else None,
                      task_id=task.id if task else None, step_key=(alert.step_key if alert else task.step_key
                                                                   if task else None),
                      colour=colour, title=title, text=text, drill=incident.drill, opened_at=now,
                      limit_seconds=limit.total_seconds(),
                      response_due_at=now + plan.answering.response_limit() if colour == "red" else None)
    session.add(call)
    session.flush()
    # Where it applies: the warning's own polygons and circles; for a step's order, the incident's warnings in force.
    area = cap_alert_area(alert.xml) if alert is not None else warning_area(session, incident_id=incident.id,
                                                                             now=now)[0]
    people = officials(session, plan, now, area)
    for person in people:
        _call(session, incident, call, person, rung="official", official_id=None, now=now, result=result)
    if not people:
        ledger.append(session, incident=incident, kind=LedgerKind.answer_unreachable, actor=SYSTEM,
                      from_party=COMMAND, to_party=COMMAND, idempotency_key=f"{call.id}:nobody",
                      step_key=call.step_key, details={"call_id": call.id, "why": "nobody holds the posts"}, at=now)
    result.opened.append(call.id)
    return call


def _call(session: Session, incident: Incident, call: AnswerCall, person: Official, *, rung: str,
          official_id: str | None, now: datetime, result: AnswerPass) -> AnswerRequest:
    """Send one person the call on each channel that reaches them, with their answer link (ledgered)."""
    limit = timedelta(seconds=call.limit_seconds)
    expires = now + max(timedelta(hours=get_settings().answer_link_hours), limit)
    request = AnswerRequest(call_id=call.id, incident_id=incident.id, official_id=official_id, rung=rung,
                            position=person.position, user_id=person.user.id, sent_at=now, due_at=now + limit,
                            link_expires_at=expires.replace(microsecond=0))
    session.add(request)
    session.flush()
    lang = "en" if person.user.lang == "en" else "zh"
    other = "zh" if lang == "en" else "en"
    title = call.title.get(lang) or call.title.get(other) or ""
    text = f"{call.text.get(lang, '')}\n\n{call.title.get(other, '')}\n{call.text.get(other, '')}".strip()
    names = []
    for channel, contact in channels.reaching(session, user_id=person.user.id, drill=call.drill):
        delivery = channels.queue_notice(session, incident=incident, key=f"answer:{request.id}:{channel.id}",
                                         user=person.user, channel=channel, contact=contact, title=title, text=text,
                                         answer=(request.id, request.link_expires_at))
        result.deliveries.append(delivery.id)
        names.append(channel.name)
    request.channels = len(names)
    session.add(request)
    who = f"user:{person.user.username}"
    ledger.append(session, incident=incident, kind=LedgerKind.answer_requested, actor=SYSTEM, from_party=COMMAND,
                  to_party=who, idempotency_key=f"{request.id}:requested", step_key=call.step_key,
                  handed_over={"title": call.title, "text": call.text},
                  details={"call_id": call.id, "request_id": request.id, "position": person.position, "rung": rung,
                           "official_id": official_id, "colour": call.colour, "channels": names,
                           "due_at": request.due_at.isoformat(), "drill": call.drill}, at=now)
    if not names:
        ledger.append(session, incident=incident, kind=LedgerKind.answer_unreachable, actor=SYSTEM,
                      from_party=COMMAND, to_party=who, idempotency_key=f"{request.id}:no_channel",
                      step_key=call.step_key, details={"call_id": call.id, "request_id": request.id,
                                                       "why": "no channel reaches the person"}, at=now)
    return request


def _severity(colour: str | None) -> int:
    return WARNING_COLOURS.index(colour) if colour in WARNING_COLOURS else -1


def _open_due(session: Session, incident: Incident, plan: IncidentType, now: datetime, result: AnswerPass) -> None:
    calls = session.exec(select(AnswerCall).where(AnswerCall.incident_id == incident.id)).all()
    opened = {c.source_key for c in calls}
    worst = max((_severity(c.colour) for c in calls if c.alert_id), default=-1)
    alerts = session.exec(select(CapAlert).where(CapAlert.incident_id == incident.id,
                                                 CapAlert.state == WarningState.issued)
                          .order_by(col(CapAlert.sent_at))).all()
    for alert in alerts:
        if f"alert:{alert.id}" in opened or alert.msg_type == "Cancel" or alert.superseded_by is not None:
            continue
        if alert.colour not in plan.answering.colours:
            continue
        if alert.msg_type == "Update" and _severity(alert.colour) <= worst:
            continue  # an update that does not raise the colour is not called out again
        title, text = _alert_words(alert, plan.answering.limit(alert.colour))
        _open(session, incident, plan, source_key=f"alert:{alert.id}", colour=alert.colour or "red", title=title,
              text=text, now=now, alert=alert, result=result)
        worst = max(worst, _severity(alert.colour))
    must = {key for _, step in plan.steps() if step.must_answer for key in [step.key]}
    if must:
        done = session.exec(select(DepartmentTask).where(DepartmentTask.incident_id == incident.id,
                                                         col(DepartmentTask.step_key).in_(must),
                                                         DepartmentTask.status == TaskStatus.completed)).all()
        for task in done:
            if f"step:{task.id}" in opened:
                continue
            colour = LEVEL_COLOURS[incident.level]
            title, text = _step_words(plan, task, colour, plan.answering.limit(colour))
            _open(session, incident, plan, source_key=f"step:{task.id}", colour=colour, title=title, text=text,
                  now=now, task=task, result=result)


# -- escalating ---------------------------------------------------------------------------------------------------
def _chain(session: Session, request: AnswerRequest) -> list[AnswerRequest]:
    root = request.official_id or request.id
    return list(session.exec(select(AnswerRequest).where(
        (col(AnswerRequest.id) == root) | (col(AnswerRequest.official_id) == root))).all())


def _escalate(session: Session, incident: Incident, request: AnswerRequest, now: datetime,
              result: AnswerPass) -> None:
    request.escalated_at = now
    session.add(request)
    chain = _chain(session, request)
    if any(r.answered_at is not None for r in chain):
        return  # somebody of the chain answered meanwhile
    call = session.get(AnswerCall, request.call_id)
    user = session.get(User, request.user_id)
    assert call is not None and user is not None
    called = {r.user_id for r in chain}
    root = request.official_id or request.id
    nxt: list[Official] = []
    rung = "above"
    if request.rung == "official":
        other = stand_in(session, user=user, ref=request.position, at=now)
        if other is not None and other.id not in called:
            nxt, rung = [Official(other, request.position)], "stand_in"
    if not nxt and request.rung in ("official", "stand_in") and \
            not any(r.rung == "above" for r in chain):
        nxt = [o for o in one_level_up(session, request.position, now) if o.user.id not in called]
    ledger_to = ",".join(f"user:{o.user.username}" for o in nxt) or COMMAND
    kind = LedgerKind.answer_escalated if nxt else LedgerKind.answer_unreachable
    ledger.append(session, incident=incident, kind=kind, actor=SYSTEM, from_party=f"user:{user.username}",
                  to_party=ledger_to, idempotency_key=f"{request.id}:escalated", step_key=call.step_key,
                  details={"call_id": call.id, "request_id": request.id, "official_id": root,
                           "position": request.position, "rung": rung if nxt else None,
                           "why": "unanswered within the limit" if nxt else "unanswered, and nobody left to call",
                           "due_at": request.due_at.isoformat()}, at=now)
    for person in nxt:
        _call(session, incident, call, person, rung=rung, official_id=root, now=now, result=result)


def _prompt_command(session: Session, incident: Incident, plan: IncidentType, call: AnswerCall, now: datetime,
                    result: AnswerPass) -> None:
    """A red warning and still no response: the command is prompted (ledgered, sent to its system and to the
    commander on their channels)."""
    call.command_prompted_at = now
    session.add(call)
    command = plan.command or COMMAND
    answered, total = _tally(session, call)
    text = {"zh": f"{call.title.get('zh', '')}：红色预警发布已满时限，尚未启动应急响应"
                  f"（叫应{answered}/{total}）。请研判启动响应。",
            "en": f"{call.title.get('en', '')}: the red warning's limit has passed and no response has started "
                  f"({answered}/{total} answered). Decide on starting the response."}
    ledger.append(session, incident=incident, kind=LedgerKind.answer_command_prompted, actor=SYSTEM,
                  from_party=COMMAND, to_party=command, idempotency_key=f"{call.id}:command_prompted",
                  step_key=call.step_key, handed_over=text,
                  details={"call_id": call.id, "answered": answered, "officials": total,
                           "stage": incident.stage, "response_due_at": call.response_due_at.isoformat()
                           if call.response_due_at else None}, at=now)
    if outbox.has_endpoint(COMMAND):
        delivery = outbox.queue(session, incident=incident, key=f"{call.id}:command_prompted",
                                purpose="answer_prompt", target=COMMAND,
                                payload={"prompt": {"call_id": call.id, "text": text}})
        result.deliveries.append(delivery.id)
    if plan.command:
        for user in holders(session, f"commander@{plan.command}", now):
            for channel, contact in channels.reaching(session, user_id=user.id, drill=call.drill):
                delivery = channels.queue_notice(session, incident=incident, key=f"{call.id}:prompt:{user.id}:"
                                                 f"{channel.id}", user=user, channel=channel, contact=contact,
                                                 title=text["zh"][:60], text=f"{text['zh']}\n{text['en']}")
                result.deliveries.append(delivery.id)


def response_started(incident: Incident) -> bool:
    return incident.stage != "warning" or incident.status != IncidentStatus.open


def reconcile(session: Session, *, incident_id: str, now: datetime | None = None) -> AnswerPass:
    """Open the calls owed, escalate the requests unanswered at their limit, prompt the command where a red
    warning has no response; returns the deliveries queued and the next moment something falls due."""
    moment = now or utcnow()
    result = AnswerPass()
    incident = session.get(Incident, incident_id)
    if incident is None or incident.status != IncidentStatus.open:
        return result
    plan = plan_for_version(session, incident.plan_version_id)
    owed, due = _owed(session, incident, plan, moment)
    if not owed:
        result.next_check = due
        return result  # nothing to write: no lock taken (the flow runs this after every reconciliation)
    incident = lock_incident(session, incident_id)
    _open_due(session, incident, plan, moment, result)
    waiting = session.exec(select(AnswerRequest).where(AnswerRequest.incident_id == incident.id,
                                                       col(AnswerRequest.answered_at).is_(None),
                                                       col(AnswerRequest.escalated_at).is_(None))
                           .order_by(col(AnswerRequest.due_at), col(AnswerRequest.sent_at))).all()
    for request in waiting:
        if request.due_at <= moment:
            _escalate(session, incident, request, moment, result)
    calls = session.exec(select(AnswerCall).where(AnswerCall.incident_id == incident.id,
                                                  col(AnswerCall.response_due_at).is_not(None),
                                                  col(AnswerCall.command_prompted_at).is_(None))).all()
    for call in calls:
        if response_started(incident):
            continue
        assert call.response_due_at is not None
        if call.response_due_at <= moment:
            _prompt_command(session, incident, plan, call, moment, result)
        else:
            result.next_check = _sooner(result.next_check, call.response_due_at)
    session.flush()
    after = _next_due(session, incident)
    if after is not None:
        result.next_check = _sooner(result.next_check, after)
    return result


def _due_columns(started: bool) -> tuple[Any, Any]:
    """The next answer deadline and, while the response has not started, the next command prompt (else NULL):
    scalar subqueries of the incident bound as `incident_id`, for one statement with whatever else it asks."""
    incident_id: BindParameter[str] = bindparam("incident_id")
    requests = select(func.min(AnswerRequest.due_at)).where(
        AnswerRequest.incident_id == incident_id, col(AnswerRequest.answered_at).is_(None),
        col(AnswerRequest.escalated_at).is_(None)).scalar_subquery()
    if started:
        return requests, null()
    prompts = select(func.min(AnswerCall.response_due_at)).where(
        AnswerCall.incident_id == incident_id, col(AnswerCall.response_due_at).is_not(None),
        col(AnswerCall.command_prompted_at).is_(None)).scalar_subquery()
    return requests, prompts


def _earliest(*moments: datetime | None) -> datetime | None:
    present = [moment for moment in moments if moment is not None]
    return min(present) if present else None


# The statements below are built once per shape and bound per incident: the flow asks after every wake, and
# building the expression (not running it) was most of the check's CPU in the worker's profile (issue 19).
@functools.cache
def _next_due_statement(started: bool) -> Any:
    return select(*_due_columns(started))


@functools.cache
def _owed_statement(colours: tuple[str, ...], must: tuple[str, ...], started: bool) -> Any:
    incident_id: BindParameter[str] = bindparam("incident_id")

    def not_called(source: Any) -> Any:
        return ~select(AnswerCall.id).where(AnswerCall.incident_id == incident_id,
                                            AnswerCall.source_key == source).exists()

    # A released warning of an answering colour, or a completed must-answer step, with no call opened for it yet.
    owed = [select(CapAlert.id).where(
        CapAlert.incident_id == incident_id, CapAlert.state == WarningState.issued, CapAlert.msg_type != "Cancel",
        col(CapAlert.superseded_by).is_(None), col(CapAlert.colour).in_(list(colours)),
        not_called(literal("alert:") + col(CapAlert.id))).exists()]
    if must:
        owed.append(select(DepartmentTask.id).where(
            DepartmentTask.incident_id == incident_id, col(DepartmentTask.step_key).in_(list(must)),
            DepartmentTask.status == TaskStatus.completed,
            not_called(literal("step:") + col(DepartmentTask.id))).exists())
    return select(*_due_columns(started), or_(*owed))


def _next_due(session: Session, incident: Incident) -> datetime | None:
    """The next answer deadline, or the next command prompt while the response has not started (one statement)."""
    statement = _next_due_statement(response_started(incident))
    return _earliest(*session.exec(statement, params={"incident_id": incident.id}).one())


def _owed(session: Session, incident: Incident, plan: IncidentType, now: datetime) -> tuple[bool, datetime | None]:
    """Whether reconciling would write anything (a call to open, a deadline or a prompt that has passed), and the
    next moment something falls due as things stand. One statement, whatever the incident holds: the flow asks
    after every wake."""
    must = tuple(step.key for _, step in plan.steps() if step.must_answer)
    statement = _owed_statement(tuple(plan.answering.colours), must, response_started(incident))
    request_due, prompt_due, calls_owed = session.exec(statement, params={"incident_id": incident.id}).one()
    due = _earliest(request_due, prompt_due)
    return bool(calls_owed) or (due is not None and due <= now), due


def _sooner(current: datetime | None, moment: datetime) -> datetime:
    return moment if current is None else min(current, moment)


def passed_unhandled(session: Session, *, now: datetime) -> dict[str, datetime]:
    """For each open incident, the latest answer deadline that passed unhandled (for the deadline sweep)."""
    rows = session.exec(select(AnswerRequest.incident_id, AnswerRequest.due_at)
                        .join(Incident, col(Incident.id) == AnswerRequest.incident_id)
                        .where(col(Incident.status) == IncidentStatus.open,
                               col(AnswerRequest.answered_at).is_(None), col(AnswerRequest.escalated_at).is_(None),
                               col(AnswerRequest.due_at) <= now)).all()
    prompts = session.exec(select(AnswerCall.incident_id, AnswerCall.response_due_at)
                           .join(Incident, col(Incident.id) == AnswerCall.incident_id)
                           .where(col(Incident.status) == IncidentStatus.open, Incident.stage == "warning",
                                  col(AnswerCall.command_prompted_at).is_(None),
                                  col(AnswerCall.response_due_at) <= now)).all()
    moments: dict[str, datetime] = {}
    for incident_id, due in [*rows, *prompts]:
        if due is not None and (incident_id not in moments or due > moments[incident_id]):
            moments[incident_id] = due
    return moments


# -- answering ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinkView:
    """What the confirm page shows about a request (nothing changes by showing it)."""

    request: AnswerRequest
    call: AnswerCall
    incident: Incident
    person: User


def _request_of(session: Session, token: str, now: datetime) -> AnswerRequest:
    read = read_token(token)
    request = session.get(AnswerRequest, read.request_id) if read is not None else None
    if read is None or request is None or int(request.link_expires_at.timestamp()) != \
            int(read.expires_at.timestamp()):
        raise AnswerLinkInvalid("this link is not one Baton sent, or it was changed")
    if request.answered_at is not None:
        raise AnswerLinkUsed("this link was used already: the answer is recorded")
    if read.expires_at <= now:
        raise AnswerLinkExpired("this link has expired")
    return request


def view(session: Session, *, token: str, now: datetime | None = None) -> LinkView:
    """The request a link names, for its confirm page; typed errors for a forged, used or expired link."""
    request = _request_of(session, token, now or utcnow())
    call = session.get(AnswerCall, request.call_id)
    incident = session.get(Incident, request.incident_id)
    person = session.get(User, request.user_id)
    assert call is not None and incident is not None and person is not None
    return LinkView(request=request, call=call, incident=incident, person=person)


def answer(session: Session, *, token: str, now: datetime | None = None) -> LinkView:
    """The person confirms (the confirm page's button): recorded once, ledgered, the incident woken."""
    moment = now or utcnow()
    first = _request_of(session, token, moment)
    incident = lock_incident(session, first.incident_id)
    session.refresh(first)
    request = _request_of(session, token, moment)  # again under the lock: two presses at once answer once
    request.answered_at = moment
    session.add(request)
    call = session.get(AnswerCall, request.call_id)
    person = session.get(User, request.user_id)
    assert call is not None and person is not None
    root = session.get(AnswerRequest, request.official_id) if request.official_id else request
    assert root is not None
    ledger.append(session, incident=incident, kind=LedgerKind.answer_confirmed, actor=f"user:{person.username}",
                  from_party=f"user:{person.username}", to_party=COMMAND,
                  idempotency_key=f"{request.id}:confirmed", step_key=call.step_key,
                  details={"call_id": call.id, "request_id": request.id, "official_id": root.id,
                           "position": request.position, "rung": request.rung, "via": "link",
                           "seconds": round((moment - root.sent_at).total_seconds(), 1),
                           "late": moment > request.due_at}, at=moment)
    wake(incident, moment)
    session.add(incident)
    return LinkView(request=request, call=call, incident=incident, person=person)


# -- figures ------------------------------------------------------------------------------------------------------
def p95(values: list[float]) -> float | None:
    """The 95th percentile by nearest rank (the value 95 % of answers came within)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def _tally(session: Session, call: AnswerCall) -> tuple[int, int]:
    rows = requests_of(session, call.id)
    roots = [r for r in rows if r.official_id is None]
    answered = sum(1 for root in roots if any(r.answered_at for r in rows if (r.official_id or r.id) == root.id))
    return answered, len(roots)


def requests_of(session: Session, call_id: str) -> list[AnswerRequest]:
    return list(session.exec(select(AnswerRequest).where(AnswerRequest.call_id == call_id)
                             .order_by(col(AnswerRequest.sent_at), col(AnswerRequest.position))).all())


def calls_of(session: Session, incident_id: str) -> list[AnswerCall]:
    return list(session.exec(select(AnswerCall).where(AnswerCall.incident_id == incident_id)
                             .order_by(col(AnswerCall.opened_at))).all())


def call_figures(session: Session, call: AnswerCall) -> dict[str, Any]:
    """How a call went: officials answered out of those called (an answer by the stand-in or the level above
    counts for the official, and is counted apart), who did not answer and whom that called, and the p95 time
    to answer (from the official's message to the first answer of their chain)."""
    rows = requests_of(session, call.id)
    users = {u.id: u for u in session.exec(select(User).where(
        col(User.id).in_({r.user_id for r in rows}))).all()} if rows else {}
    roots = [r for r in rows if r.official_id is None]
    times: list[float] = []
    silent: list[dict[str, Any]] = []
    by_others = 0
    for root in roots:
        chain = sorted((r for r in rows if (r.official_id or r.id) == root.id), key=lambda r: r.sent_at)
        answers = sorted((r for r in chain if r.answered_at is not None), key=lambda r: r.answered_at or r.sent_at)
        if answers and answers[0].answered_at is not None:
            times.append((answers[0].answered_at - root.sent_at).total_seconds())
            by_others += answers[0].id != root.id
        if root.answered_at is None:
            user = users.get(root.user_id)
            silent.append({"username": user.username if user else root.user_id,
                           "display_name": user.display_name if user else "", "position": root.position,
                           "due_at": root.due_at, "channels": root.channels,
                           "answered_by": next(({"username": users[r.user_id].username, "rung": r.rung}
                                                for r in answers if r.user_id in users), None),
                           "called": [{"username": users[r.user_id].username if r.user_id in users else r.user_id,
                                       "rung": r.rung, "position": r.position, "sent_at": r.sent_at,
                                       "answered_at": r.answered_at} for r in chain if r.id != root.id]})
    answered = len(times)
    return {"id": call.id, "colour": call.colour, "title": call.title, "opened_at": call.opened_at,
            "alert_id": call.alert_id, "step_key": call.step_key, "drill": call.drill,
            "limit_minutes": round(call.limit_seconds / 60, 1), "officials": len(roots), "answered": answered,
            "answered_in_person": answered - by_others, "answered_by_others": by_others,
            "p95_seconds": p95(times), "answer_seconds": sorted(times), "silent": silent,
            "stand_ins_called": sum(1 for r in rows if r.rung == "stand_in"),
            "above_called": sum(1 for r in rows if r.rung == "above"),
            "command_prompted_at": call.command_prompted_at}


def figures(session: Session, incident_id: str) -> dict[str, Any]:
    """Every call of the incident with its figures, and all of them together."""
    calls = [call_figures(session, c) for c in calls_of(session, incident_id)]
    return {"calls": calls, "officials": sum(c["officials"] for c in calls),
            "answered": sum(c["answered"] for c in calls),
            "p95_seconds": p95([t for c in calls for t in c["answer_seconds"]]),
            "unanswered": sum(1 for c in calls for s in c["silent"] if s["answered_by"] is None)}
