-- The posts each bulk action or undo changed, per owner and per acting moderator
-- (posts/pace.py): the budgets of changed posts a minute and an hour slide over these rows.
-- A row older than the longest window is deleted by the next spend of its subject.
--
-- Expand only: the previous release neither reads nor writes it (its writes go uncounted
-- during a rolling upgrade, as before).
CREATE TABLE write_spends (
    user_id      integer NOT NULL,  -- the owner, or the moderator who acted
    as_moderator boolean NOT NULL,  -- whose budget: the owner's posts, or the moderator's acts
    spent_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    posts        integer NOT NULL CHECK (posts > 0)
);
CREATE INDEX write_spends_subject_idx ON write_spends (user_id, as_moderator, spent_at);
