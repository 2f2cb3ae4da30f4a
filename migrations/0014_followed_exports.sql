-- Incremental exports follow only an export that reached `ready` (issue 51): `covered_post_ids`
-- is written when the parts are planned, so an export cancelled or failed after that looked
-- followable, and the changes made before it were in no later export. `ready_at` says it was
-- ready (it stays through an expiry or a removal); the service also takes `status = 'ready'`,
-- so an export the previous release made ready during a rolling deploy is followable too.
ALTER TABLE exports ADD COLUMN ready_at timestamptz,
    ADD COLUMN by_operator boolean NOT NULL DEFAULT false;
-- Only a failure writes an error_message, and a cancel before ready leaves `cancelled`: an
-- expired export without one was ready before it expired or was removed.
UPDATE exports SET ready_at = completed_at
WHERE status IN ('ready', 'expired') AND error_message IS NULL AND covered_post_ids IS NOT NULL;
-- An operator's export (python -m pmd_service export) neither counts toward the user's own
-- cooldown nor is followed by `since: last`; until now the command marked it by its request id.
UPDATE exports SET by_operator = true WHERE request_id = 'operator-export';

-- Why the service cancelled a schedule (its user deactivated or banned); null when the user
-- cancelled it or it ran its course.
ALTER TABLE export_schedules ADD COLUMN cancel_reason text;
