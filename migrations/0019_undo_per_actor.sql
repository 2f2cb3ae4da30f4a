-- Each person's undo history is capped on its own (posts/undo.py, KEPT_HISTORY_BYTES): an
-- owner's own actions and each moderator's are kept apart, so no one's actions drop another's
-- undo. The statement that writes an action sums the kept history of whoever acted (the
-- moderator, or the owner on their own posts) newest first: this index serves it.
CREATE INDEX bulk_actions_who_acted_idx
    ON bulk_actions ((coalesce(actor_id, owner_id)), created_at DESC, id DESC)
    WHERE dropped_at IS NULL AND undone_at IS NULL;

-- The history 0.1.0 recorded (bulk_action_posts) is read again (posts/previous_history.py):
-- 0013 marked every action of it not undone yet as dropped, at the time the ledger records
-- for 0013; those marks go, and those actions can be undone within their 24 hours.
UPDATE bulk_actions SET dropped_at = NULL
WHERE post_ids IS NULL AND undone_at IS NULL
  AND dropped_at = (SELECT applied_at FROM schema_migrations WHERE version = 13);
