"""What every job of the worker shares: the claim of a row by one run and its attempt
(claims.py, attempts.py, failures.py), the worker's resources (context.py), one ZIP streamed on
a thread (streaming.py) and put in place (placing.py), the worker's metrics, and arq's adapter.
The jobs themselves are their features' (bdr/job.py, exports/job.py) and upkeep/'s; the arq
settings that name them are pmd_service/worker.py."""
