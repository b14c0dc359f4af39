"""Storing, checking and linking the files attached to a task's form.

A file is taken as its bytes say (`sniff`): a photo (JPEG, PNG, WebP, HEIC) or a PDF, whatever its name or the
type its sender claimed; anything else is refused (415 `attachment_type_refused`), as is a file over
`attachment_max_bytes` (413 `attachment_too_large`) or an empty one (422 `attachment_empty`). Its bytes go to
`<data_dir>/attachments/<id>`, named by the row's id and never by the sender's file name, which is kept, made
safe, only to name a download.

A form field names a stored file by the reference `attachment:<id>` (`reference`). Until the task is completed an
upload is its sender's alone; completing the task links every file its outputs name (`link`, called by
`core.incidents.handoffs.complete`), which must be files uploaded for that very task. Who may then read a file is
who may read the field that names it (`core.incidents.reads.readable_attachment`).
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlmodel import Session

from core.attachments.models import Attachment
from core.incidents.models import DepartmentTask, TaskStatus
from core.platform.clock import utcnow
from core.platform.db import new_id
from core.platform.errors import (
    AttachmentEmpty,
    AttachmentRefused,
    AttachmentTooLarge,
    FormInvalid,
    TaskStateConflict,
)
from core.platform.settings import get_settings
from process_defs.schema import FieldType, Step

PREFIX = "attachment:"
ALLOWED = ("image/jpeg", "image/png", "image/webp", "image/heic", "application/pdf")
# Shown in the browser (a photo); anything else (a PDF, a HEIC most browsers cannot show) is downloaded.
INLINE = frozenset({"image/jpeg", "image/png", "image/webp"})
EXTENSIONS = {"image/jpeg": (".jpg", ".jpeg"), "image/png": (".png",), "image/webp": (".webp",),
              "image/heic": (".heic", ".heif"), "application/pdf": (".pdf",)}
# HEIF brands of HEIC photos (a phone's camera); the generic `mif1`/`msf1` count when a HEIC brand is compatible.
HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
HEAD_BYTES = 64
CHUNK = 64 * 1024
MAX_NAME = 150
_ID = re.compile(r"^[0-9a-f-]{36}$")


def sniff(head: bytes) -> str | None:
    """The content type the file's first bytes show, if it is one of `ALLOWED`; else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp":
        box = int.from_bytes(head[:4], "big")
        brands = {head[i:i + 4] for i in range(16, min(box, len(head)) - 3, 4)}
        major = head[8:12]
        if major in HEIC_BRANDS or (major in (b"mif1", b"msf1") and brands & HEIC_BRANDS):
            return "image/heic"
    return None


def safe_filename(name: str | None, content_type: str) -> str:
    """The sender's file name, fit to show and to name a download: its last path part, NFC, no control or
    shell-special characters, no leading dots, at most `MAX_NAME` characters, ending in an extension of the
    type its bytes are (`photo.html` that is a PNG is kept as `photo.html.png`)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = unicodedata.normalize("NFC", base)
    base = "".join(" " if ch.isspace() else ch for ch in base
                   if unicodedata.category(ch)[0] != "C" and ch not in '<>:"|?*;`$')
    base = re.sub(r" {2,}", " ", base).strip().lstrip(".").strip()
    extensions = EXTENSIONS[content_type]
    if not base.lower().endswith(extensions):
        base = (base or "attachment") + extensions[0]
    if len(base) > MAX_NAME:
        stem, ext = os.path.splitext(base)
        base = stem[:MAX_NAME - len(ext)] + ext
    return base


def folder() -> Path:
    return get_settings().data_dir / "attachments"


def path_of(attachment: Attachment) -> Path:
    """Where a stored file's bytes are: named by its id only."""
    return path_for_id(attachment.id)


def path_for_id(file_id: str) -> Path:
    """Where the bytes of the file stored under `file_id` (`write_file`) are."""
    if not _ID.match(file_id):  # ids are Baton's own UUIDs; never a path of anyone's choosing
        raise ValueError(f"not an attachment id: {file_id!r}")
    return folder() / file_id


def reference(attachment_id: str) -> str:
    """How a form field names a stored file."""
    return f"{PREFIX}{attachment_id}"


def referenced_id(value: Any) -> str | None:
    """The id a reference names, or None for another kind of reference (a file number, a link)."""
    if isinstance(value, str) and value.startswith(PREFIX):
        return value[len(PREFIX):].strip()
    return None


def references(step: Step, outputs: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(field key, attachment id) of every stored file the outputs' attachment fields name."""
    found = []
    for form_field in step.form:
        if form_field.type is not FieldType.attachment:
            continue
        value = (outputs or {}).get(form_field.key)
        for item in value if isinstance(value, list) else [value]:
            attachment_id = referenced_id(item)
            if attachment_id is not None:
                found.append((form_field.key, attachment_id))
    return found


def takes_files(step: Step) -> bool:
    return any(f.type is FieldType.attachment for f in step.form)


@dataclass(frozen=True)
class StoredFile:
    """A file's bytes written under a new id in the attachments folder, judged and hashed."""

    id: str
    filename: str
    content_type: str
    size: int
    sha256: str


def write_file(*, filename: str | None, stream: BinaryIO) -> StoredFile:
    """Write a sent file: read in chunks (never more than the limit plus one chunk), judged by its first bytes,
    hashed, written under a new id (`folder()/<id>`). A refused file leaves nothing behind."""
    limit = get_settings().attachment_max_bytes
    attachment_id = new_id()
    target = folder()
    target.mkdir(parents=True, exist_ok=True)
    partial = target / f".{attachment_id}.part"
    digest = hashlib.sha256()
    size = 0
    head = b""
    content_type: str | None = None
    try:
        with open(partial, "xb") as out:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                if content_type is None:
                    head += chunk
                    if len(head) < HEAD_BYTES:
                        # Too short to judge yet: read on (a stream may hand over a few bytes at a time).
                        size += len(chunk)
                        digest.update(chunk)
                        out.write(chunk)
                        continue
                    content_type = _judged(head)
                size += len(chunk)
                if size > limit:
                    raise AttachmentTooLarge(f"the file is over {limit} bytes", details={"limit": limit})
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise AttachmentEmpty("the file is empty")
        if content_type is None:
            content_type = _judged(head)
        os.replace(partial, target / attachment_id)
    finally:
        partial.unlink(missing_ok=True)
    return StoredFile(attachment_id, safe_filename(filename, content_type), content_type, size, digest.hexdigest())


def store(session: Session, *, task: DepartmentTask, step: Step, uploaded_by: str, filename: str | None,
          stream: BinaryIO) -> Attachment:
    """Store a file sent for an open task whose form has an attachment field (`write_file`). The row is added to the
    session; the caller commits."""
    if not takes_files(step):
        raise FormInvalid("this step's form takes no attachment",
                          details=[{"field": None, "code": "no_attachment_field",
                                    "message": "the step's form has no attachment field"}])
    if task.kind != "human" or task.status not in (TaskStatus.assigned, TaskStatus.acknowledged,
                                                   TaskStatus.escalated):
        raise TaskStateConflict(f"task {task.step_key} is {task.status}: files are attached to open tasks")
    written = write_file(filename=filename, stream=stream)
    row = Attachment(id=written.id, incident_id=task.incident_id, task_id=task.id, uploaded_by=uploaded_by,
                     filename=written.filename, content_type=written.content_type, size=written.size,
                     sha256=written.sha256)
    session.add(row)
    session.flush()
    return row


def _judged(head: bytes) -> str:
    content_type = sniff(head)
    if content_type is None:
        raise AttachmentRefused("the file is not a photo (JPEG, PNG, WebP, HEIC) or a PDF",
                                details={"allowed": list(ALLOWED)})
    return content_type


def _checked(session: Session, *, task: DepartmentTask, step: Step,
             outputs: dict[str, Any]) -> list[tuple[str, Attachment]]:
    problems = []
    found = []
    for key, attachment_id in references(step, outputs):
        row = session.get(Attachment, attachment_id) if _ID.match(attachment_id) else None
        if row is None or row.task_id != task.id or row.linked_at is not None:
            problems.append({"field": key, "code": "unknown_attachment",
                             "message": f"'{reference(attachment_id)}' names no file uploaded for this task"})
        else:
            found.append((key, row))
    if problems:
        raise FormInvalid(f"the form names {len(problems)} unknown file(s)", details=problems)
    return found


def check_references(session: Session, *, task: DepartmentTask, step: Step, outputs: dict[str, Any]) -> None:
    """FormInvalid (`unknown_attachment`) if the outputs name a stored file that is not an upload for this task."""
    _checked(session, task=task, step=step, outputs=outputs)


def link(session: Session, *, task: DepartmentTask, step: Step, outputs: dict[str, Any],
         at: datetime | None = None) -> dict[str, str]:
    """Link the files the completed outputs name to their fields (checked as `check_references`); their ids and
    SHA-256 digests, for the completion's ledger entry."""
    moment = at or utcnow()
    files = {}
    for key, row in _checked(session, task=task, step=step, outputs=outputs):
        if row.linked_at is None:
            row.field_key = key
            row.linked_at = moment
            session.add(row)
        files[row.id] = row.sha256
    return files
