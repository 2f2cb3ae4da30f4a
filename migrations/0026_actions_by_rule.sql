-- The system actor of the history: an action done by one of the owner's rules (a cleanup
-- policy's run, 0027), shown and undone as the owner's own. NULL for every other action; the
-- name is kept as it was when the rule ran. Expand only: the previous release neither reads
-- nor writes them.
ALTER TABLE bulk_actions ADD COLUMN policy_id uuid;
ALTER TABLE bulk_actions ADD COLUMN policy_name varchar(80);
