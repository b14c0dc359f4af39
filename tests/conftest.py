"""The suite's fixtures live in tests/fixtures/ (one module per part of the world a test needs) and are loaded
here for every test: a fresh migrated application database per test (copied from a template migrated once),
one real Prefect server per session, the API in process (or over real HTTP where a test needs a server), users
and tokens, a clock to move forward, the machine's system packages, and the closing figures.

Tiers: `pytest -m "not slow"` (`make test-fast`) leaves out what starts processes (Prefect, workers, PostgreSQL,
uvicorn, Chromium) and the long suites; `make test` runs everything."""

from __future__ import annotations

import pytest

# The fixture modules are imported here (for the names below) before pytest loads them as plugins: have their
# asserts rewritten all the same.
pytest.register_assert_rewrite("tests.fixtures")

from tests.fixtures.database import copy_plans  # noqa: E402
from tests.fixtures.figures import Say  # noqa: E402
from tests.fixtures.prefect import StartWorker  # noqa: E402

pytest_plugins = [
    "tests.fixtures.system",
    "tests.fixtures.database",
    "tests.fixtures.prefect",
    "tests.fixtures.api",
    "tests.fixtures.clock",
    "tests.fixtures.figures",
    "tests.fixtures.tiers",
    "tests.fixtures.grouping",
]

__all__ = ["Say", "StartWorker", "copy_plans"]
