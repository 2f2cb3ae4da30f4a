"""Runs on real stacks: `python -m runs.chaos`, `runs.cluster` (root) and `runs.fuzz`."""
