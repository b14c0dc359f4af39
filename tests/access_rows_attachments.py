"""Access-matrix rows for files attached to a task's form (see test_access.py).

Attaching is acting on the task: its department only, refused (403) for those who read it but do not act, 404 for
a department that does not see it. Reading a file follows the field that names it: everyone who may read that
field of the task (the office, managers, admins, the task's department, a department on the incident when the
field is shared with it), 404 for anyone else; an upload not yet linked to a completed task is its sender's alone.
Targets are floods whose risk assessment (water_affairs; its map shared with every department on the incident)
has a PNG attached, completed with it or still open; the other department is public_security, not on it.
"""

from __future__ import annotations

import io
import struct
import zlib

from core.attachments import service as attachments
from core.incidents.handoffs import complete
from core.incidents.models import DepartmentTask, Incident
from core.plans.store import plan_for_version
from core.platform.db import session_scope
from tests.access_matrix import roles
from tests.api_server import ASSESSMENT, flood
from tests.test_access import ACT_MISSING, DEPT_ACTS, Case, Target


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))


PNG = _png()
FILE = {"file": ("map.png", PNG, "image/png")}


def attachment_target(kind: str) -> Target:
    """`attachment`: the map attached and the assessment completed with it; `upload`: attached, task still open."""
    incident = flood("assessment")
    task_id = incident.tasks["flood_risk_assessment"]
    with session_scope() as session:
        task = session.get(DepartmentTask, task_id)
        row = session.get(Incident, incident.id)
        assert task is not None and row is not None
        step = plan_for_version(session, row.plan_version_id).step(task.step_key)
        stored = attachments.store(session, task=task, step=step, uploaded_by="user:water_affairs",
                                   filename="map.png", stream=io.BytesIO(PNG))
        attachment_id = stored.id
    if kind == "attachment":
        with session_scope() as session:
            complete(session, task_id=task_id, actor="user:water_affairs",
                     outputs={**ASSESSMENT, "hot_spot_map": attachments.reference(attachment_id)})
    return Target(kind, {"incident_id": incident.id, "task_id": task_id, "attachment_id": attachment_id},
                  "water_affairs", "public_security")


ROWS: list[Case] = [
    *[Case("POST", "/api/tasks/{task_id}/attachments", target, expect, files=FILE, writes=True)
      for target, expect in (("task", {**DEPT_ACTS, "dept_owner": 201}),
                             ("task_same_incident", {**DEPT_ACTS, "dept_owner": 201}), ("unknown", ACT_MISSING))],
    Case("GET", "/api/attachments/{attachment_id}", "attachment", roles(401, 200, 200, 200, 200, 404)),
    Case("GET", "/api/attachments/{attachment_id}", "upload", roles(401, 404, 404, 404, 200, 404),
         note="not yet linked: its sender's"),
    Case("GET", "/api/attachments/{attachment_id}", "unknown", roles(401, 404, 404, 404, 404, 404)),
]

TARGETS = {"attachment": lambda: attachment_target("attachment"), "upload": lambda: attachment_target("upload")}
