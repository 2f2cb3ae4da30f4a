"""Benchmarks: `python -m bench.posts` (they print figures; they are not tests)."""
