-- The click a batch belongs to: a client that sends one person's selection in batches of 128
-- names the same `click_id` in each (POST /api/pmd/action and /license, by ids), and the batches
-- of one click by the same person, of the same action on the same owner's posts, within the
-- undo window, are one entry of the history with one undo (posts/clicks.py). Each batch keeps
-- its own row (its time, its values, each post's previous ones), so an undo of the click puts
-- back every batch as its own undo would. NULL: an action of its own, as before.
--
-- Expand only: the previous release neither reads nor writes it, and lists and undoes each
-- batch as an action of its own.
ALTER TABLE bulk_actions ADD COLUMN click_id uuid;
-- A click's batches, found from any one of them (its undo, its entry in the list).
CREATE INDEX bulk_actions_click_idx ON bulk_actions (click_id, created_at, id)
    WHERE click_id IS NOT NULL;
