"""The ready/failed emails: composed and sent (compose.py), at most once (notify.py)."""
