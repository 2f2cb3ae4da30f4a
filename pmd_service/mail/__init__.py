"""The ready and failed emails of every job kind: composed, sent, and sent at most once."""
