"""What the BDR and the export jobs' statements share (jobs/bdr/sql.py, jobs/exports/sql.py):
which row a run may claim, the guard of every write of the run that holds it, and its owner."""

from __future__ import annotations

# Pending, or processing but held by no run (released for a retry) or by a run whose heartbeat
# stopped $3 seconds ago (its worker is gone).
CLAIMABLE = """(status = 'pending'
       OR (status = 'processing'
           AND (claim_token IS NULL OR heartbeat_at < now() - make_interval(secs => $3))))"""
# Row $1 still held by the run of claim token $2.
OWNED = "id = $1 AND claim_token = $2 AND status = 'processing'"
# Hands row $1 back for a retry in $3 seconds, if the run of token $2 still holds it.
RELEASE_FOR_RETRY = f"""
SET claim_token = NULL, heartbeat_at = NULL, retry_at = now() + make_interval(secs => $3)
WHERE {OWNED}
"""
SQL_OWNER = "SELECT handle, public_sqid FROM users WHERE id = $1"
