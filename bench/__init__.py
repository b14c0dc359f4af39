"""Benchmarks: `make bench` (python -m bench). They print their figures; they are not tests."""

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"  # where each benchmark writes its last run's figures
