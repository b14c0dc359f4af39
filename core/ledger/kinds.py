"""Every kind of ledger entry, in one enum: the handoffs of an incident's run, the records of its learning stage,
links between incidents and shared reports, and the entries of the named chains that belong to no incident (the duty
desk's, a prevention run's, the register imports').

A kind is written into each entry and into its hash, so the values never change; a new record is a new member.
"""

from __future__ import annotations

from enum import StrEnum


class LedgerKind(StrEnum):
    # the incident's run (core.incidents)
    incident_opened = "incident.opened"
    incident_linked = "incident.linked"
    stage_entered = "stage.entered"
    stage_left = "stage.left"
    task_assigned = "task.assigned"
    task_acknowledged = "task.acknowledged"
    task_completed = "task.completed"
    task_handed_back = "task.handed_back"
    task_escalated = "task.escalated"
    task_reassigned = "task.reassigned"
    task_cancelled = "task.cancelled"
    action_completed = "action.completed"
    level_changed = "level.changed"
    level_proposed = "level.proposed"  # the plan's grading calls for a higher level
    level_proposal_declined = "level.proposal_declined"
    level_confirmed = "level.confirmed"  # the commander confirmed a decision recorded on their verbal order
    incident_closed = "incident.closed"
    incident_stood_down = "incident.stood_down"  # a gate's decision skipped the response stage
    stage_skipped = "stage.skipped"  # a gate's decision skipped a later stage (not the response)
    # hand-backs and unstaffed departments: the office is alerted and chooses (core.incidents.alerts)
    task_unstaffed = "task.unstaffed"  # the task's department (or escalation target) has nobody able to act
    task_reassign_ordered = "task.reassign_ordered"  # the office sends the task to another department
    task_taken_over = "task.taken_over"  # the office does the task itself
    task_referred_to_leader = "task.referred_to_leader"  # the office asks a command position to decide
    department_unstaffed = "department.unstaffed"  # its last active user was disabled while it has open tasks
    open_work_confirmed = "stage.open_work_confirmed"  # leaving a stage with open tasks, confirmed with a reason
    # declining a task as not the department's own (退单), and the office's deadline to route it
    task_declined = "task.declined"  # with a reason code (not_our_duty, wrong_area, lacking_resources)
    alert_escalated = "alert.escalated"  # the office did not route a declined task within its deadline
    task_chased_up = "task.chased_up"  # the office chased up an overdue task (催办); its department is told
    # sharing (core.sharing)
    warning_published = "warning.published"
    # a public warning's release (审核签发): drafted by the issuing agency, reviewed (or returned for redrafting)
    # by the emergency office, signed off by a leader, which publishes it; then updated or cancelled
    warning_drafted = "warning.drafted"
    warning_reviewed = "warning.reviewed"
    warning_returned = "warning.returned"
    warning_redrafted = "warning.redrafted"
    warning_signed = "warning.signed"
    warning_updated = "warning.updated"
    warning_cancelled = "warning.cancelled"
    warning_withdrawn = "warning.withdrawn"  # an unreleased draft given up (the plan's all-clear came first)
    report_shared = "report.shared"
    # upward reporting (core.reporting): the reports to the bodies above, and the checked casualty figures
    upward_report_assigned = "upward_report.assigned"
    upward_report_phoned = "upward_report.phoned"
    upward_report_overdue = "upward_report.overdue"  # 迟报: its limit passed before it was sent (or phoned)
    upward_report_signed = "upward_report.signed"
    upward_report_sent = "upward_report.sent"
    casualties_revised = "casualties.revised"
    # the learning stage (core.learning), also after the incident closed
    lesson_recorded = "lesson.recorded"
    follow_up_assigned = "follow_up.assigned"
    follow_up_completed = "follow_up.completed"
    plan_change_proposed = "plan.change_proposed"
    plan_change_accepted = "plan.change_accepted"
    plan_change_rejected = "plan.change_rejected"
    # registers (core.registers): an import of a register file, with its counts. It belongs to no incident, so it
    # is an entry of the named chain `registers`, not an incident's chain.
    register_imported = "register.imported"
    # a shelter's occupancy reported live during an incident (core.registers.occupancy), in the same chain
    shelter_occupancy_reported = "shelter.occupancy_reported"
    # resources in incidents (core.resources): a department asks for reserves, the owning department approves all
    # or part (the reserve is drawn down) or refuses, dispatches, the requester confirms receipt and returns what
    # was not consumed; a reserve falling under its safety stock opens a replenishment for its owner
    resource_requested = "resource.requested"
    resource_approved = "resource.approved"
    resource_refused = "resource.refused"
    resource_dispatched = "resource.dispatched"
    resource_received = "resource.received"
    resource_returned = "resource.returned"
    reserve_below_safety_stock = "reserve.below_safety_stock"
    reserve_replenished = "reserve.replenished"
    # prevention on schedules (core.prevention): a campaign run's tasks, findings and rectifications (整改), in the
    # run's named chain `prevention:<run id>`
    prevention_run_started = "prevention.run_started"  # a campaign's schedule slot ran
    inspection_assigned = "inspection.assigned"  # one register entry to inspect, for its owning department
    inspection_completed = "inspection.completed"  # answered: no hazard found
    hazard_found = "inspection.hazard_found"  # answered: a hazard found (opens a rectification)
    rectification_opened = "rectification.opened"  # 整改, with its deadline
    rectification_closed = "rectification.closed"  # closed with its evidence (photos, documents)
    prevention_escalated = "prevention.escalated"  # an inspection or rectification past its deadline
    # the duty desk (core.desk), in the named chain `desk`: event record sheets (事件记录单) from phone, 12345 or
    # app reports, reviewed by the duty leader (送审); duty logs (值班日志) handed over between shifts; leaders'
    # instructions (批示, in their incident's chain)
    sheet_recorded = "sheet.recorded"
    sheet_returned = "sheet.returned"  # back to the officer for more details
    sheet_amended = "sheet.amended"  # the officer added the details and sent it for review again
    sheet_opened = "sheet.opened"  # an incident was opened from it
    sheet_merged = "sheet.merged"  # merged into an open incident
    sheet_filed = "sheet.filed"  # filed with a reason, no incident
    duty_log_started = "duty_log.started"
    duty_log_noted = "duty_log.noted"
    duty_log_handed_over = "duty_log.handed_over"
    instruction_recorded = "instruction.recorded"
    instruction_task_done = "instruction.task_done"
    instruction_closed = "instruction.closed"
    instruction_task_overdue = "instruction.task_overdue"  # a department's part past its time limit: the office is told
    # warnings that must be answered (叫应, core.sharing.answers): each official is sent the warning with an answer
    # link, answers it, or is escalated (to the stand-in, then one level up); a red warning with no response
    # started within the plan's limit prompts the command
    answer_requested = "answer.requested"  # an official is sent a warning (or a step's order) to answer
    answer_confirmed = "answer.confirmed"  # the official (or their stand-in, or the level above) answered it
    answer_escalated = "answer.escalated"  # unanswered within the limit: the stand-in, then one level up, is called
    answer_unreachable = "answer.unreachable"  # nobody left to call, or no channel reaches the official
    answer_command_prompted = "answer.command_prompted"  # a red warning, no response started within the limit
