"""Cascading incidents and the ICS-214-style activity log."""

from __future__ import annotations

import pytest

from core.incidents.cascade import chain, open_linked
from core.incidents.models import Incident
from core.ledger import chain as ledger
from core.platform.db import session_scope
from core.platform.errors import IncidentClosed
from core.reports.activity_log import activity_log
from tests import engine_driver as drive


def test_a_typhoon_opens_a_linked_flood_and_both_show_the_chain(baton: str) -> None:
    typhoon_id = drive.open_("typhoon", level="II", drill=True)
    with session_scope() as session:
        child = open_linked(session, parent_id=typhoon_id, type_key="flood", actor="user:o", reason="城区内涝",
                            key="k1")
        again = open_linked(session, parent_id=typhoon_id, type_key="flood", actor="user:o", reason="城区内涝",
                            key="k1")
        assert again.id == child.id  # a retried request opens nothing new
        assert (child.type, child.level, child.drill, child.parent_id) == ("flood", "II", True, typhoon_id)
    with session_scope() as session:
        parent = session.get(Incident, typhoon_id)
        flood = session.get(Incident, child.id)
        assert parent is not None and flood is not None
        assert [c["code"] for c in chain(session, parent, None)["children"]] == [flood.code]
        assert [p["code"] for p in chain(session, flood, None)["parents"]] == [parent.code]
        kinds = [(e.kind, e.to_party) for e in ledger.read_chain(session, typhoon_id)]
        assert ("incident.linked", flood.code) in kinds
        assert ledger.verify_incident(session, typhoon_id).valid and ledger.verify_incident(session, flood.id).valid


def test_a_closed_incident_cannot_cascade(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.run_to_end(incident_id, {"lift_warning": {"decision": "respond"}})
    with pytest.raises(IncidentClosed), session_scope() as session:
        open_linked(session, parent_id=incident_id, type_key="hazmat_leak", actor="user:o", reason="x", key="k")


def test_activity_log_is_per_department_and_scoped(baton: str) -> None:
    incident_id = drive.open_("flood")
    drive.step(incident_id)
    drive.complete_step(incident_id, "rainstorm_forecast", {"rainfall_1h": 60, "rainfall_24h": 150,
                                                            "warning_colour": "yellow",
                                                            "valid_until": drive.VALID_UNTIL})
    drive.step(incident_id)
    with session_scope() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        everyone = activity_log(session, incident, None)
        own = activity_log(session, incident, "meteorology")
    units = {u["department"]: u for u in everyone["units"]}
    assert {"meteorology", "water_affairs"} <= set(units)
    met = [a["activity"]["en"] for a in units["meteorology"]["activities"]]
    assert met[:2] == ["Received task", "Completed and reported"]
    assert [u["department"] for u in own["units"]] == ["meteorology"]
