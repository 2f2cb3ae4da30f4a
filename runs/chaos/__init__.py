"""The chaos run: `python -m runs.chaos` (run.py says what it does)."""
