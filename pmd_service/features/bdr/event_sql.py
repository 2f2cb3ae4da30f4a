"""The BDR events' trigger functions, generated from schemas.ItemRow."""

from __future__ import annotations

import msgspec

from ...core.locks import AdvisoryLock
from ...core.payload_sql import build_object, changed, watched
from ...sse.kinds import EventKind
from .schemas import ItemRow


def repeatable_sql(kind: EventKind, shape: type[msgspec.Struct] = ItemRow) -> str:
    """`kind`: the events' kind; `shape`: the payload's definition (another only in a test)."""
    payload = build_object(shape, indent=" " * 12)
    payload_dynamic = build_object(shape, indent=" " * 16)
    # Rows are paired by id: the service never changes a BDR's id.
    labels = f"'{kind.kind}', '{kind.audience}'"
    condition = changed([c for c in watched(shape) if c != "id"], "o", "r", " " * 15)
    return f"""\
-- The BDR events' trigger functions, generated from pmd_service/features/bdr/schemas.py ItemRow
-- by `python -m pmd_service.web.event_kinds` (features/bdr/event_sql.py): edit those, not this
-- file. The migration runner re-creates them whenever this file changes (core/migrate.py).

-- SET search_path FROM CURRENT: the functions find stream_events in the service's schema even
-- when rows are changed from a session with another search path (an operator's psql). The
-- table rings the stream's doorbell itself (migration 0018).
-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION bdr_emit_inserted() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- Most inserts are unannounced (the server announces them after its reply): no event, so
    -- no lock either.
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE announced) THEN
        RETURN NULL;
    END IF;
    -- Readers resume with "id > last seen", which is only safe if ids become visible in
    -- commit order: the lock, taken before the first id is drawn and held to commit,
    -- serialises event-producing transactions.
    PERFORM pg_advisory_xact_lock({AdvisoryLock.EVENT_ORDER:d});
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    SELECT r.id, r.user_id, {labels}, {payload}
    FROM new_rows AS r WHERE r.announced;
    RETURN NULL;
END
$$;

-- The statements are EXECUTEd, so planned for each call (see 0005).
-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION bdr_emit_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    -- Announced rows whose update changed what their item shows.
    changed CONSTANT text := $q$
        FROM new_rows AS r JOIN old_rows AS o USING (id)
        WHERE r.announced
          AND (NOT o.announced
               OR {condition})
    $q$;
    any_change boolean;
BEGIN
    -- Heartbeats and claims change nothing an item shows: checked before the lock. A count,
    -- not EXISTS (see 0005).
    EXECUTE 'SELECT count(*) > 0 ' || changed INTO any_change;
    IF NOT any_change THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock({AdvisoryLock.EVENT_ORDER:d});  -- as in bdr_emit_inserted
    EXECUTE $q$
        INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
        SELECT r.id, r.user_id, {labels}, {payload_dynamic}
    $q$ || changed;
    RETURN NULL;
END
$$;
"""
