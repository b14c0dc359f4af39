"""A refused row of an imported file (a roster, a register): one shape for every import, so that the API, the pages
and the CLI name a bad row the same way — its number, the field at fault, a stable code, why in both languages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.platform.errors import BatonError


@dataclass(frozen=True)
class RowProblem:
    """A refused row: its number (a sheet's header is row 1; a GeoJSON feature counts from 1), the field at
    fault, a stable code, why (English and Chinese)."""

    row: int
    field: str
    code: str
    en: str
    zh: str

    def where(self, source: str) -> str:
        """As the CLI prints it: `file:row:field: code: why`."""
        return f"{source}:{self.row}:{self.field}: {self.code}: {self.en}"

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, "field": self.field, "code": self.code, "message": self.en, "message_zh": self.zh}


class FileUnreadable(BatonError):
    """An imported file that cannot be read as a whole (not the format its name says, not UTF-8, no header, too many
    rows): nothing of it is imported. `details` has a stable `reason` and the Chinese wording, so that the API, the
    pages and the CLI name it alike; each kind of import subclasses it with a code of its own."""

    code = "file_unreadable"
    http_status = 422

    def __init__(self, reason: str, message: str, zh: str) -> None:
        super().__init__(message, details={"reason": reason, "message_zh": zh})
        self.reason = reason
        self.zh = zh
