"""The office chases up an overdue task (催办): ledgered, sent to the people on duty for the task through their
notification channels (DingTalk, WeCom, SMS, e-mail: `core.outbox.channels`) and to the department's system where
it has one (the outbox, purpose `chase_up`), and shown on the task's page to the department ("应急办于 14:05 催办").

Who is on duty for the task, found as the 叫应 calls find an official (`core.incidents.permissions`: the duty
roster for a rostered position, the one on shift or their stand-in while the holder is away; else whoever holds
the position): for a task addressed to a position, its holder; for a department's task, the department's duty
officer (值班员, `duty_officer@<department>`), or where nobody is on duty as such, its duty leader (带班领导). A
holder of an unrostered position who is marked away (`core.users.rosters.away`) is replaced by the stand-in named
for the position (AB角). Each of them is sent the chase-up on every channel that reaches them (a drill's on drill
channels only), queued in the outbox so that it is delivered, retried and dead-lettered like every other message;
the incident is woken so that its flow sends them promptly.

Nobody reached through a channel (nobody on duty, or no channel contact for them) does not refuse the chase-up: it
is ledgered all the same, with whom it reached (`on_duty`, each with the channels that reach them), and the
office's page says that no channel reached anyone (`ChaseUp.reached`).

Only an open task past its due time is chased up; the route checks the reader is the office. Chasing twice in
the same minute (a double click) is one chase-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from core.incidents.models import DepartmentTask, Incident, IncidentStatus, TaskStatus
from core.incidents.permissions import Official, position_holders, stand_in
from core.incidents.reads import is_overdue
from core.incidents.service import COMMAND, lock_task, wake
from core.ledger import chain as ledger
from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerEntry
from core.outbox import channels
from core.outbox import queue as outbox
from core.plans.store import plan_for_version, registry
from core.plans.wording import Wording
from core.platform.clock import utcnow
from core.platform.errors import BatonError, IncidentClosed
from core.users import rosters

# A department's duty posts a chase-up reaches, in turn: the first anyone is on duty in.
DUTY_POSITIONS = ("duty_officer", "duty_leader")


class TaskNotOverdue(BatonError):
    """Only an open task past its due time is chased up."""

    code = "task_not_overdue"
    http_status = 409


@dataclass(frozen=True)
class ChaseUp:
    """A chase-up as it was recorded: its ledger entry, who was on duty for the task (user name, post, and the
    channels that reach them), and whether it went to the department's system."""

    entry: LedgerEntry
    on_duty: list[dict[str, Any]]
    system: bool

    @property
    def reached(self) -> list[str]:
        """The people on duty a channel reaches (user names); empty: no channel reached anyone."""
        return [person["username"] for person in self.on_duty if person.get("channels")]

    @property
    def unheard(self) -> bool:
        """No channel reached anyone on duty (a chase-up recorded before channels were used says nothing of it)."""
        details = self.entry.details if isinstance(self.entry.details, dict) else {}
        return "on_duty" in details and not self.reached

    @classmethod
    def of(cls, entry: LedgerEntry) -> ChaseUp:
        details = entry.details if isinstance(entry.details, dict) else {}
        return cls(entry=entry, on_duty=list(details.get("on_duty") or []), system=bool(details.get("system")))


def on_duty(session: Session, task: DepartmentTask, at: datetime) -> list[Official]:
    """Who is on duty for the task at `at`: its position's holders, or the department's duty officer (else its duty
    leader); a holder marked away replaced by their stand-in. Once each."""
    refs = [task.position] if task.position else [f"{post}@{task.department}" for post in DUTY_POSITIONS]
    for ref in refs:
        found: list[Official] = []
        for holder in position_holders(session, ref, at):
            away = rosters.away(session, holder.id, at) is not None  # (a rostered post's holder: never, here)
            person = stand_in(session, user=holder, ref=ref, at=at) if away else holder
            if person is None or (away and rosters.away(session, person.id, at) is not None):
                continue
            if all(other.user.id != person.id for other in found):
                found.append(Official(person, ref))
        if found:
            return found
    return []


def words(session: Session, incident: Incident, task: DepartmentTask) -> tuple[str, str]:
    """The chase-up's title and text, Chinese first with the English beside it: which incident, which task, for
    whom, overdue since when, and what to do."""
    step = plan_for_version(session, incident.plan_version_id).step(task.step_key).title
    if task.position:
        holder = {lang: registry().position_name(task.position, lang) for lang in ("zh", "en")}
    else:
        dept = registry().department(task.department)
        holder = {lang: dept.name.get(lang) if dept else task.department for lang in ("zh", "en")}
    since = Wording("zh").local(task.due_at, "%Y-%m-%d %H:%M")  # "—" without one; any stored moment shows
    title = f"【催办】{incident.code} {step.zh}"
    text = (f"事件：{incident.code} {incident.title}\n任务：{step.zh}（{holder['zh']}）\n"
            f"该任务已于 {since} 超时，请尽快办理并在系统中签收/办结。\n\n"
            f"Chase-up: {incident.code} {step.en}\nIncident: {incident.code} {incident.title}\n"
            f"Task: {step.en} ({holder['en']})\nOverdue since {since}. Please act on it now, and acknowledge or "
            f"complete it in Baton.")
    return title, text


def chase_up(session: Session, *, task_id: str, actor: str, now: datetime | None = None) -> ChaseUp:
    """Chase up the overdue task `task_id`: the ledger entry (from the office to the task's department or
    position), a message to each person on duty for it on each channel that reaches them, and one to the
    department's system if it has one. Returns what was done (the same for a repeat within the minute)."""
    incident, task = lock_task(session, task_id)
    if incident.status != IncidentStatus.open:
        raise IncidentClosed(f"incident {incident.code} is closed")
    moment = now or utcnow()
    if task.kind != "human" or not TaskStatus(task.status).is_open or not is_overdue(task, moment):
        raise TaskNotOverdue(f"task {task.step_key} is {task.status} and not overdue",
                             details={"task_id": task.id, "status": task.status})
    holder = task.position or task.department
    key = f"{task.id}:chased:{moment:%Y%m%d%H%M}"
    repeat = session.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key == key)).first()
    if repeat is not None:
        return ChaseUp.of(repeat)
    people = [(person, channels.reaching(session, user_id=person.user.id, drill=incident.drill))
              for person in on_duty(session, task, moment)]
    system = task.position is None and outbox.has_endpoint(task.department)
    title, text = words(session, incident, task)
    entry = ledger.append(session, incident=incident, kind=LedgerKind.task_chased_up, actor=actor,
                          from_party=COMMAND, to_party=holder, step_key=task.step_key, idempotency_key=key,
                          handed_over={"title": title, "text": text},
                          details={"task_id": task.id, "attempt": task.attempt, "department": task.department,
                                   "due_at": task.due_at.isoformat() if task.due_at else None,
                                   "on_duty": [{"username": person.user.username, "position": person.position,
                                                "channels": [channel.name for channel, _ in reach]}
                                               for person, reach in people],
                                   "system": system}, at=moment)
    session.flush()  # the entry is returned with its id
    for person, reach in people:
        for channel, contact in reach:
            channels.queue_notice(session, incident=incident, key=f"{key}:{person.user.id}:{channel.id}",
                                  user=person.user, channel=channel, contact=contact, title=title, text=text)
    if system:
        outbox.queue(session, incident=incident, key=key, purpose="chase_up", target=task.department,
                     payload={"task": {"id": task.id, "step": task.step_key, "stage": task.stage,
                                       "due_at": task.due_at.isoformat() if task.due_at else None},
                              "chased_at": moment.isoformat(), "by": COMMAND})
    wake(incident, moment)  # its flow sends what was queued
    session.add(incident)
    return ChaseUp.of(entry)


def last_chase_up(session: Session, incident_id: str) -> ChaseUp | None:
    """The incident's latest chase-up, for the office's confirmation."""
    entry = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == incident_id,
                                                   LedgerEntry.kind == LedgerKind.task_chased_up)
                         .order_by(col(LedgerEntry.seq).desc()).limit(1)).first()
    return ChaseUp.of(entry) if entry is not None else None


def chase_ups(session: Session, task: DepartmentTask) -> list[datetime]:
    """When the office chased up this task, oldest first."""
    entries = session.exec(select(LedgerEntry).where(LedgerEntry.incident_id == task.incident_id,
                                                     LedgerEntry.kind == LedgerKind.task_chased_up,
                                                     LedgerEntry.step_key == task.step_key)
                           .order_by(col(LedgerEntry.seq))).all()
    return [e.at for e in entries if isinstance(e.details, dict) and e.details.get("task_id") == task.id]
