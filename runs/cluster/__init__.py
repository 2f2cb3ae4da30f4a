"""The cluster run: `python -m runs.cluster` (run.py says what it does)."""
