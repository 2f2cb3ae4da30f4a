-- The site's budget of changed posts a minute (features/posts/pace.py) as one row a second,
-- and of those the policies' runs' share (`background`): an owner's write adds its posts to
-- its second's row under the site's advisory lock, so reading the site's minute sums at most
-- 120 rows, where summing write_spends read every write of the minute at each write.
-- `second`: the second the posts were changed in
-- (its start: a spend leaves the minute up to a second early). No unique key: the lock
-- serializes the writers, and the tests move a row to another second to age it.
-- write_spends keeps each person's spends; its site index stays for purging the hour's end.
-- Expand only: the previous release never reads the site's spends.
CREATE TABLE site_spends (
    second     timestamptz NOT NULL,
    background boolean NOT NULL,
    posts      integer NOT NULL
);
CREATE INDEX site_spends_second_idx ON site_spends (second) INCLUDE (posts, background);
DROP INDEX write_spends_background_idx;
