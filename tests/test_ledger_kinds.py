"""Ledger kinds: one enum, and its values fixed (each is written into entries and their hashes)."""

from __future__ import annotations

from core.ledger.kinds import LedgerKind
from core.ledger.models import LedgerEntry


def test_the_kinds_written_into_entries_never_change() -> None:
    # Chains already written hold these strings; renaming one would make the reads (timeline, activity log,
    # after-action stages) miss old entries, so a change here must be a new member, never an edit.
    # New members may be added (and then belong in this list); none listed may change or go.
    assert {k.name: k.value for k in LedgerKind}.items() >= {
        "incident_opened": "incident.opened", "incident_linked": "incident.linked",
        "stage_entered": "stage.entered", "stage_left": "stage.left",
        "task_assigned": "task.assigned", "task_acknowledged": "task.acknowledged",
        "task_completed": "task.completed", "task_handed_back": "task.handed_back",
        "task_escalated": "task.escalated", "task_reassigned": "task.reassigned",
        "task_cancelled": "task.cancelled", "action_completed": "action.completed",
        "level_changed": "level.changed", "incident_closed": "incident.closed",
        "warning_published": "warning.published", "report_shared": "report.shared",
        "lesson_recorded": "lesson.recorded", "follow_up_assigned": "follow_up.assigned",
        "follow_up_completed": "follow_up.completed", "plan_change_proposed": "plan.change_proposed",
        "plan_change_accepted": "plan.change_accepted", "plan_change_rejected": "plan.change_rejected",
        "level_proposed": "level.proposed", "level_proposal_declined": "level.proposal_declined",
        "level_confirmed": "level.confirmed", "incident_stood_down": "incident.stood_down",
        "stage_skipped": "stage.skipped", "upward_report_assigned": "upward_report.assigned",
        "upward_report_phoned": "upward_report.phoned", "upward_report_overdue": "upward_report.overdue",
        "upward_report_signed": "upward_report.signed", "upward_report_sent": "upward_report.sent",
        "casualties_revised": "casualties.revised", "warning_drafted": "warning.drafted",
        "warning_reviewed": "warning.reviewed", "warning_returned": "warning.returned",
        "warning_redrafted": "warning.redrafted", "warning_signed": "warning.signed",
        "warning_updated": "warning.updated", "warning_cancelled": "warning.cancelled",
        "warning_withdrawn": "warning.withdrawn",
        "task_chased_up": "task.chased_up", "register_imported": "register.imported",
        "shelter_occupancy_reported": "shelter.occupancy_reported",
        # the named chains' kinds (desk, prevention:<run id>, registers), in the same ledger since 0023
        "prevention_run_started": "prevention.run_started", "inspection_assigned": "inspection.assigned",
        "inspection_completed": "inspection.completed", "hazard_found": "inspection.hazard_found",
        "rectification_opened": "rectification.opened", "rectification_closed": "rectification.closed",
        "prevention_escalated": "prevention.escalated", "sheet_recorded": "sheet.recorded",
        "sheet_returned": "sheet.returned", "sheet_amended": "sheet.amended", "sheet_opened": "sheet.opened",
        "sheet_merged": "sheet.merged", "sheet_filed": "sheet.filed", "duty_log_started": "duty_log.started",
        "duty_log_noted": "duty_log.noted", "duty_log_handed_over": "duty_log.handed_over"}.items()


def test_a_kind_is_the_plain_string_it_is_stored_as_and_fits_its_column() -> None:
    column = LedgerEntry.__table__.c.kind  # type: ignore[attr-defined]
    for kind in LedgerKind:
        assert kind == kind.value and f"{kind}" == kind.value and len(kind.value) <= column.type.length
    labels: dict[str, int] = {LedgerKind.task_assigned: 1}
    assert labels.get("task.assigned") == 1  # a stored string finds what is keyed by its kind
