"""Full exports: every artwork of one user in parts, each part a BagIt bag in a ZIP.
endpoints.py (HTTP), service.py, schemas.py, schedule.py (recurring), incremental.py (`since`),
job.py/job_run.py/job_sql.py/plan.py (the worker's build), bag.py and gallery.py (a part's
files), operator.py (`python -m pmd_service export`)."""
