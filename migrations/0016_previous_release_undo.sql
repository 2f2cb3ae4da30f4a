-- During a rolling upgrade the previous release (0.1.0) may be asked to undo an action this
-- release recorded; it reads only bulk_action_posts, would find nothing there, and would mark
-- the action undone with no post put back. Its undo sets `undone_at` alone, where this
-- release's also drops the kept history (`post_ids`), so such an update is refused as a
-- database that cannot serve now (SQLSTATE 57P03): the previous release answers 503 with
-- Retry-After and the client's retry reaches a server of this release. Contract (drop the
-- trigger) in the release after the previous one is gone.
CREATE FUNCTION pmd_refuse_previous_release_undo() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bulk action % was recorded by a newer release of pmd-service; undo it there',
        OLD.id USING ERRCODE = '57P03';
END
$$;

CREATE TRIGGER bulk_actions_previous_release_undo
BEFORE UPDATE OF undone_at ON bulk_actions
FOR EACH ROW
WHEN (OLD.undone_at IS NULL AND NEW.undone_at IS NOT NULL
      AND OLD.post_ids IS NOT NULL AND NEW.post_ids IS NOT NULL)
EXECUTE FUNCTION pmd_refuse_previous_release_undo();
