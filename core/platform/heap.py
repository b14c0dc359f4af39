"""The garbage collector of Baton's long-running processes (the API's and the workers')."""

from __future__ import annotations

import gc
from functools import cache


@cache  # once per process: a later call returns the first one's count
def freeze_startup_heap() -> int:
    """Put every object alive once a process has started (its modules, classes and functions; Prefect's,
    SQLAlchemy's and pydantic's registries; the clients it opened) in the collector's permanent generation, once
    per process. CPython's full collection walks every tracked object: in a worker that was 120 to 770 ms at a
    time (`gc.callbacks`, `python -m bench --quick`, 2026-12-05), long enough that a stage crossing committed
    150 ms after its ledger entries were written, in 2 of 30 samples. Objects made later (incidents' coroutines,
    sessions, requests) are collected as before. Returns how many objects were frozen then: the count is not read
    again later, since a frozen object that is freed leaves the permanent generation (the count fell by 134 between
    two calls in a loaded test process, 2026-12-05)."""
    gc.collect()  # garbage from the start-up is freed, not frozen
    gc.freeze()
    return gc.get_freeze_count()
