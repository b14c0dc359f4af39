"""Tables of the attachments domain."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from core.platform.clock import utcnow
from core.platform.db import new_id


class Attachment(SQLModel, table=True):
    """One uploaded file. Its bytes are in `<data_dir>/attachments/<id>` (never under the sender's name). Until the
    task is completed with a field naming it (`attachment:<id>`) it is an upload only its sender may read; then
    `field_key` and `linked_at` say which of the task's fields holds it, and that field's scope decides who reads it."""

    __tablename__ = "attachment"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    incident_id: str = Field(foreign_key="incident.id", index=True, max_length=36)
    task_id: str = Field(foreign_key="department_task.id", index=True, max_length=36)
    uploaded_by: str = Field(max_length=100)  # the actor, `user:<name>`
    filename: str = Field(max_length=200)  # as sent, made safe to show and to name a download
    content_type: str = Field(max_length=64)  # as sniffed from the bytes, not as the sender said
    size: int
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    field_key: str | None = Field(default=None, max_length=64)
    linked_at: datetime | None = None
