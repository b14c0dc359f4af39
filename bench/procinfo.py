"""Resident memory (PSS), threads and CPU time of process trees, read from /proc."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_of(pid: int) -> list[int]:
    tree = _children()
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(tree.get(current, []))
    return out


def _pss_mb(pid: int) -> float | None:
    """Proportional set size: shared pages (PostgreSQL's shared buffers, libraries) counted once across the
    processes that share them, so a sum over processes is the memory they really hold together."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Usage:
    rss_mb: float
    threads: int
    cpu_seconds: float


def cpu_seconds(pids: list[int], *, exited_children: bool = False) -> float:
    """CPU time of the processes; with `exited_children`, also what their children that already exited (and were
    waited for) spent, as a runner's flow-run processes that came and went."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
        if exited_children:
            total += (int(fields[13]) + int(fields[14])) / TICKS
    return total


def usage(pids: list[int]) -> Usage:
    rss = 0.0
    threads = 0
    cpu = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            statm = Path(f"/proc/{pid}/statm").read_text().split()
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / TICKS
        threads += int(fields[17])
        rss += _pss_mb(pid) or int(statm[1]) * PAGE / 1e6
    return Usage(rss, threads, cpu)
