"""The API's and the workers' start-up heaps are frozen out of the garbage collector's full scans
(core/platform/heap.py); the worker's side is checked where a worker is started (tests/test_flows.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# In a fresh interpreter: the test process may have frozen its own heap already.
API_START = """
import gc
from fastapi.testclient import TestClient
from api.app import app
before = gc.get_freeze_count()
with TestClient(app):
    during = gc.get_freeze_count()
print(before, during)
"""


def test_the_api_freezes_its_start_up_heap_once_it_has_started() -> None:
    out = subprocess.run([sys.executable, "-c", API_START], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    before, during = int(out[-2]), int(out[-1])
    assert before == 0
    assert during > 100_000  # the modules, classes and registries of FastAPI, SQLAlchemy, pydantic and Baton


def test_the_heap_is_frozen_once_per_process() -> None:
    from core.platform.heap import freeze_startup_heap

    first = freeze_startup_heap()
    later = [[n] for n in range(1000)]  # objects the collector tracks, made after the start-up
    assert first > 0
    assert freeze_startup_heap() == first
    # Not frozen again: what came later stays with the collector (the permanent generation only shrinks, as frozen
    # objects are freed; a second freeze would have added these thousand).
    assert gc.get_freeze_count() <= first
    assert all(gc.is_tracked(item) for item in later)
    del later
