"""Cleanup policies: an owner's rules hiding or deleting old posts on a schedule, each run one
of the posts' bulk actions."""
