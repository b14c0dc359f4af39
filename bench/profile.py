"""Where the CPU goes under load: py-spy records the stack's processes while the benchmark drives them.

py-spy samples a running Python process from outside (it reads the interpreter's memory through ptrace), so the
processes run exactly the code they run in production. Each process tree is recorded to py-spy's `raw` format
(one line per distinct stack: `frame;frame;...;frame count`), which `hot_frames` folds into the functions that
hold the CPU themselves (self) and those under which it is held (inclusive).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

RATE = 97  # samples a second: a prime, so sampling does not beat in step with a periodic loop (the 0.2 s wake poll)
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")  # py-spy's "function (file.py:123)": the line number is dropped when folding


def py_spy() -> str | None:
    """The py-spy command beside this interpreter (the test extras install it), or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    """py-spy recording the named processes (each with its children: uvicorn's and PostgreSQL's workers) until
    the `with` block ends; the raw stacks land in `folder/<name>.txt`."""

    folder: Path
    pids: dict[str, int]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> Recording:
        command = py_spy()
        if command is None:
            self.errors = {name: "py-spy is not installed" for name in self.pids}
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            self.running[name] = subprocess.Popen(
                [command, "record", "--pid", str(pid), "--subprocesses", "--rate", str(RATE), "--format", "raw",
                 "--nonblocking", "--output", str(self.folder / f"{name}.txt")],
                stdout=subprocess.DEVNULL, stderr=(self.folder / f"{name}.log").open("wb"))
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for proc in self.running.values():
            proc.send_signal(signal.SIGINT)  # py-spy writes what it has recorded and exits
        for name, proc in self.running.items():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                self.errors[name] = "py-spy did not stop within 60 s"
            if not (self.folder / f"{name}.txt").exists():
                log = (self.folder / f"{name}.log").read_text(errors="replace").strip().splitlines()
                self.errors.setdefault(name, log[-1] if log else f"py-spy exited {proc.returncode}")


@dataclass(frozen=True)
class Hot:
    function: str
    self_share: float  # of the process's on-CPU samples, this function itself running
    inclusive_share: float  # ... this function or what it called


def _frame(raw: str) -> str:
    return _FRAME_LINE.sub(")", raw.strip())


def _stacks(raw_file: Path) -> Iterator[tuple[list[str], int]]:
    """Each distinct stack of a py-spy raw file as its function frames (line numbers folded away; process and
    thread frames, py-spy's "process 123:..." roots, skipped) and its sample count."""
    for line in raw_file.read_text(errors="replace").splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        frames = [_frame(f) for f in match["stack"].split(";") if f and not f.startswith(("process ", "thread "))]
        if frames:
            yield frames, int(match["count"])


def hot_frames(raw_file: Path, top: int = 12) -> tuple[int, list[Hot]]:
    """The on-CPU samples in a py-spy raw file and its `top` functions by self time, each with its inclusive
    share."""
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = 0
    for frames, count in _stacks(raw_file):
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            under[name] += count
    if total == 0:
        return 0, []
    return total, [Hot(name, count / total, under[name] / total) for name, count in own.most_common(top)]


_FILE = re.compile(r"\((?P<file>[^()]*?)(?::\d+)?\)$")


def package_of(frame: str) -> str:
    """Who a frame's code belongs to: an installed package (sqlalchemy, prefect, pydantic), one of Baton's own
    folders (core, api, flows, tasks), or a standard-library module (stdlib:asyncio). py-spy names a file by its
    path under the sys.path entry it was imported from (`sqlalchemy/orm/session.py`, `json/encoder.py`)."""
    match = _FILE.search(frame)
    path = match["file"] if match else ""
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith("/"):
        parts = Path(path).parts
        own = [p for p in ("core", "api", "flows", "tasks", "process_defs", "bench") if p in parts]
        stdlib = [i for i, p in enumerate(parts) if re.fullmatch(r"python3\.\d+", p)]
        if own:
            return own[0]
        path = "/".join(parts[stdlib[-1] + 1:]) if stdlib else path
    top = path.split("/", 1)[0].removesuffix(".py")
    if not top:
        return "?"
    return f"stdlib:{top}" if top in sys.stdlib_module_names else top


def by_package(raw_file: Path) -> dict[str, float]:
    """Each package's share of the on-CPU samples spent in its own code (self time), largest first."""
    own: Counter[str] = Counter()
    for frames, count in _stacks(raw_file):
        own[package_of(frames[-1])] += count
    total = sum(own.values())
    return {name: count / total for name, count in own.most_common()} if total else {}
