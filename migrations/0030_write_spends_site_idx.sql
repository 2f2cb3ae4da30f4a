-- The site's budget sums every owner's spends of the last minute and purges those past the
-- hour at each owner's write (posts/pace.py): this index keeps both to their window, where a
-- scan would read the whole hour at every write.
--
-- Expand only: the previous release never reads the site's spends.
CREATE INDEX write_spends_site_idx ON write_spends (spent_at) INCLUDE (posts)
    WHERE NOT as_moderator;
