"""Leaders' instructions (批示) on an incident and the departments' tasks they become. The office records one given
by a leader (or a leader their own); the departments it names read it and report on their part; it closes only
when every part is done (409 `instruction_tasks_open`). A department reads only the instructions naming it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import ActingUser, CurrentUser, OfficeUser, Principal, SessionDep
from api.errors import ApiError
from api.schemas import Strict
from core.desk import instructions
from core.desk.models import Instruction, InstructionTask
from core.incidents import reads
from core.incidents.permissions import may_act
from core.platform.clock import utcnow
from core.platform.errors import NotFound
from core.platform.input_policy import Line, Lines, Moment

router = APIRouter(tags=["instructions"])


class InstructionIn(Strict):
    text: Lines = Field(min_length=1, max_length=5000)
    departments: list[Line] = Field(min_length=1, max_length=instructions.MAX_DEPARTMENTS)
    leader: Line | None = Field(default=None, max_length=100,
                                description="Who gave it (王市长), when the office records it for a leader.")
    due_at: Moment | None = None


class InstructionTaskOut(BaseModel):
    id: str
    instruction_id: str
    incident_id: str
    department: str
    status: str
    due_at: datetime | None
    overdue: bool = False  # open and past `due_at`, by the clock
    overdue_at: datetime | None = None  # when the periodic sweep flagged it and told the office
    done_at: datetime | None
    done_by: str | None
    reply: str | None


class InstructionOut(BaseModel):
    id: str
    incident_id: str
    leader: str
    text: str
    recorded_by: str
    recorded_at: datetime
    due_at: datetime | None
    status: str
    closed_at: datetime | None
    closed_by: str | None
    closing_note: str | None
    tasks: list[InstructionTaskOut]


class ReplyIn(Strict):
    reply: Lines = Field(min_length=1, max_length=5000)


class CloseIn(Strict):
    note: Lines = Field(default="", max_length=2000)


def _department(principal: Principal) -> str | None:
    return None if principal.sees_all else principal.user.department


def task_out(task: InstructionTask) -> InstructionTaskOut:
    return InstructionTaskOut.model_validate({**task.model_dump(),
                                              "overdue": instructions.is_overdue(task, utcnow())})


def out(row: Instruction, tasks: list[InstructionTask]) -> InstructionOut:
    return InstructionOut.model_validate({**row.model_dump(), "tasks": [task_out(t) for t in tasks]})


def _views(items: list[dict[str, Any]]) -> list[InstructionOut]:
    return [out(item["instruction"], item["tasks"]) for item in items]


def _readable_incident(session: SessionDep, principal: Principal, incident_id: str) -> str:
    """The incident's id, for a reader who may see it or is named by one of its instructions."""
    department = _department(principal)
    try:
        return reads.get_incident(session, incident_id, department).id
    except NotFound:
        incident = reads.get_incident(session, incident_id, None)
        if department is not None and instructions.of_incident(session, incident.id, department):
            return incident.id
        raise


@router.post("/api/incidents/{incident_id}/instructions", status_code=201, response_model=InstructionOut,
             responses={403: {"description": "Neither the office nor a leader (`position_required`)"}})
def record(incident_id: str, body: InstructionIn, principal: ActingUser, session: SessionDep) -> InstructionOut:
    """Record a leader's instruction: one tracked task for each department it names."""
    incident = reads.get_incident(session, incident_id, _department(principal))
    row = instructions.record(session, incident_id=incident.id, user=principal.user, leader=body.leader,
                              text=body.text, departments=list(body.departments), due_at=body.due_at)
    return out(row, instructions.tasks_of(session, [row.id])[row.id])


@router.get("/api/incidents/{incident_id}/instructions", response_model=list[InstructionOut])
def of_incident(incident_id: str, principal: CurrentUser, session: SessionDep) -> list[InstructionOut]:
    """The incident's instructions, newest first (a department: those naming it)."""
    found = _readable_incident(session, principal, incident_id)
    return _views(instructions.of_incident(session, found, _department(principal)))


def _instruction(session: SessionDep, principal: Principal, instruction_id: str) -> Instruction:
    row = instructions.get_instruction(session, instruction_id)
    if not instructions.party_to(session, row, _department(principal)):
        raise NotFound(f"no instruction '{instruction_id}'")
    return row


@router.get("/api/instructions/{instruction_id}", response_model=InstructionOut)
def get(instruction_id: str, principal: CurrentUser, session: SessionDep) -> InstructionOut:
    row = _instruction(session, principal, instruction_id)
    return out(row, instructions.tasks_of(session, [row.id])[row.id])


@router.get("/api/instruction-tasks", response_model=list[InstructionTaskOut])
def my_tasks(principal: ActingUser, session: SessionDep, all: bool = False) -> list[InstructionTaskOut]:
    """The reader's department's parts of instructions (open ones unless `all`)."""
    department = principal.acts_for
    if department is None:  # pragma: no cover - ActingUser always acts for one
        raise ApiError(403, "forbidden", "this reader acts for no department")
    return [task_out(t) for t in instructions.for_department(session, department, open_only=not all)]


@router.post("/api/instruction-tasks/{task_id}/complete", response_model=InstructionTaskOut)
def complete(task_id: str, body: ReplyIn, principal: ActingUser, session: SessionDep) -> InstructionTaskOut:
    """The department reports what it did on its part of the instruction (落实情况)."""
    task = instructions.get_task(session, task_id)
    department = _department(principal)
    if department is not None and task.department != department:
        raise NotFound(f"no instruction task '{task_id}'")
    if not may_act(principal.user, task):
        raise ApiError(403, "forbidden", f"only {task.department} reports on its part")
    done = instructions.complete_task(session, task_id=task.id, actor=principal.actor, reply=body.reply)
    return task_out(done)


@router.post("/api/instructions/{instruction_id}/close", response_model=InstructionOut,
             responses={409: {"description": "A department's part is still open (`instruction_tasks_open`)"}})
def close(instruction_id: str, body: CloseIn, principal: OfficeUser, session: SessionDep) -> InstructionOut:
    """Close the instruction (办结) once every department's part is done."""
    row = instructions.close(session, instruction_id=instructions.get_instruction(session, instruction_id).id,
                             actor=principal.actor, note=body.note)
    return out(row, instructions.tasks_of(session, [row.id])[row.id])
