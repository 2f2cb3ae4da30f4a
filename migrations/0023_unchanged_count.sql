-- How many of an action's posts it found already so (hiding a hidden post), beside the posts it
-- changed, for the history of actions (posts/history.py): the page's toast, history and Undo
-- then give one count per action. Expand only: NULL for actions written before it, and the
-- previous release neither reads nor writes it.
ALTER TABLE bulk_actions ADD COLUMN unchanged_count integer;
