"""What a check of a definition file reports, and where: a `Problem` at a file, line and field, and the parsed
YAML's map from each field to its line."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PathT = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LoadedYaml:
    data: Any
    lines: dict[PathT, int] = field(default_factory=dict)
    key_order: dict[PathT, list[str]] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of `path`, or of its nearest ancestor present in the file."""
        current = tuple(path)
        while current:
            if current in self.lines:
                return self.lines[current]
            current = current[:-1]
        return self.lines.get((), 1)

    def problem(self, file: str, path: PathT, message: str) -> Problem:
        """A problem at `path`, on its line (or its nearest ancestor's)."""
        return Problem(file, self.line_of(path), format_path(path), message)


def error_message(err: Any) -> tuple[PathT, str]:
    """The location (without pydantic's `[key]` marker for a bad dictionary key) and message of one of pydantic's
    validation errors."""
    loc = tuple(part for part in err["loc"] if part != "[key]")
    kind = err["type"]
    if kind == "extra_forbidden":
        return loc, f"unknown key '{loc[-1]}'"
    if kind == "missing":
        return loc, f"required key '{loc[-1]}' is missing"
    message = str(err["msg"])
    if kind not in ("value_error", "assertion_error") and "input" in err:
        shown = repr(err["input"])
        if len(shown) <= 60:
            message += f" (got {shown})"
    return loc, message
