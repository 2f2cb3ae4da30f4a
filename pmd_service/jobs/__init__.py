"""What every claimed job shares: the protocol of a feature's job kind (kind.py), the one driver
that runs any kind (driver.py), one archive streamed on a thread (streaming.py), what is retried
(failures.py), the worker's resources (context.py), its metrics, and arq's adapter. The kinds
are their features' (bdr/job.py, exports/job.py); the arq settings that name the jobs are
pmd_service/worker.py."""
