"""The worker's periodic jobs: the sweep, so that no run or email is left stuck, and the daily
cleanup of expired files, rows and objects."""
