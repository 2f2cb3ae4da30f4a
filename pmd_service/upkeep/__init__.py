"""The worker's periodic jobs: the sweep (stuck and orphaned runs, owed emails) and the nightly cleanup (expired files and objects)."""
