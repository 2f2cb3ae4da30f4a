"""The worker's periodic jobs: the sweep, and the daily cleanup of expired files and rows."""
