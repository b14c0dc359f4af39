"""Benchmarks: `make bench` (python -m bench). They print their figures; they are not tests."""
