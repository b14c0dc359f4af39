"""Benchmarks: `make bench` (python -m bench). They print their figures; they are not tests."""

import os
from pathlib import Path

# Where each benchmark writes its last run's figures; BATON_BENCH_RESULTS moves them (the bench's own test does).
RESULTS = Path(os.environ.get("BATON_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
