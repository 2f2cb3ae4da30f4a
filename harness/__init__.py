"""The chaos run's report page (chaos_doc.py) and its saved runs (chaos_runs/); the runs
themselves are in runs/, what they share in support/."""
