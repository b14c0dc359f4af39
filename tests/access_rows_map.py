"""Access-matrix rows for the map (see test_access.py): every logged-in user reads the map's layers (built for
them: what a department may see is tested in test_map.py) and the base layer; nobody else."""

from __future__ import annotations

from tests.test_access import EVERYONE, Case

ROWS: list[Case] = [
    Case("GET", "/api/map/layers", "none", EVERYONE),
    Case("GET", "/api/map/boundaries", "none", EVERYONE),
]
