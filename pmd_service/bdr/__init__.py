"""Batch download requests (BDRs): ZIPs of up to 128 artworks. endpoints.py (HTTP), service.py
(rules and SQL), schemas.py (request and item), job.py/job_run.py/job_sql.py (the worker's build),
announcer.py (a new request's first event), cutover.py (the host's own PMD rows)."""
