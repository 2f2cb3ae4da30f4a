-- The site's budget sums every owner's spends of the last minute and purges those past the
-- hour at each owner's write (posts/pace.py): without an index of their own, both read every
-- row of the hour, so 100,000 policies due at once slowed each run as the hour filled.
--
-- Expand only: the previous release never reads the site's spends.
CREATE INDEX write_spends_site_idx ON write_spends (spent_at) INCLUDE (posts)
    WHERE NOT as_moderator;
