"""Reading a file attached to a task's form: for whoever may read the field that names it, nobody else."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import CurrentUser, SessionDep
from core.attachments import service as attachments
from core.incidents import reads
from core.platform.errors import NotFound

router = APIRouter(prefix="/api/attachments", tags=["tasks"])

# The file is shown or saved, never run: no script, no plug-in, no frame, as its own origin.
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox; frame-ancestors 'none'"


def disposition(kind: str, filename: str) -> str:
    """`inline` or `attachment` with the file's name, in ASCII for old clients and UTF-8 (RFC 6266) for the rest."""
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\%' else "_" for ch in filename)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/{attachment_id}", response_class=FileResponse,
            responses={200: {"description": "The file, as its bytes were judged (a photo or a PDF)",
                             "content": {t: {} for t in attachments.ALLOWED}}})
def download(attachment_id: str, principal: CurrentUser, session: SessionDep) -> FileResponse:
    """A stored file, for those who may read the field of the task that names it (as the field's value: its
    share, and a department must be on the incident), or its sender before the task is completed. Anyone else
    gets 404, as for any object one may not see. Photos are shown inline, other files are downloaded."""
    reader = None if principal.sees_all else principal.user.department
    row = reads.readable_attachment(session, attachment_id, reader=reader, actor=principal.actor)
    path = attachments.path_of(row)
    if not path.is_file():
        raise NotFound(f"no attachment '{attachment_id}'")
    kind = "inline" if row.content_type in attachments.INLINE else "attachment"
    return FileResponse(path, media_type=row.content_type,
                        headers={"Content-Disposition": disposition(kind, row.filename),
                                 "X-Content-Type-Options": "nosniff", "Content-Security-Policy": FILE_CSP})
