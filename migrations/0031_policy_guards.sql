-- What keeps a cleanup policy (0027) from stalling, surprising or being overruled
-- (features/posts/policy_runs.py):
-- - `paused_by_moderator`: a moderator's pause binds until a moderator lifts it;
-- - `approved_count`: the count the owner last approved (create, a widening, an approval); a
--   run that would change far more waits for the owner (`last_run.status` `held`). NULL on a
--   policy saved before this column: nothing to compare, so its runs are never held;
-- - `failures`: runs failed in a row, which back the policy off the head of the tick's line;
-- - `runs`: every run taken, whatever it changed, so "each policy once a period" is countable.
-- `write_spends.background`: a spend of a policy's run, held to the site's background share
-- (features/posts/pace.py) so people's own writes keep their room.
-- Expand only: the previous release neither reads nor writes any of them.
ALTER TABLE cleanup_policies
    ADD COLUMN paused_by_moderator boolean NOT NULL DEFAULT false,
    ADD COLUMN approved_count integer,
    ADD COLUMN failures integer NOT NULL DEFAULT 0,
    ADD COLUMN runs bigint NOT NULL DEFAULT 0;

ALTER TABLE write_spends ADD COLUMN background boolean NOT NULL DEFAULT false;
-- The background share's sum over the last minute, as write_spends_site_idx serves the site's.
CREATE INDEX write_spends_background_idx ON write_spends (spent_at) INCLUDE (posts)
    WHERE background;
