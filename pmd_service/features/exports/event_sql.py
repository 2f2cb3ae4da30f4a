"""The export's payload functions and trigger function, generated from schemas.Payload."""

from __future__ import annotations

import msgspec

from ...core.locks import AdvisoryLock
from ...core.payload_sql import build_object, changed, watched
from ...sse.kinds import EventKind
from .schemas import Payload


def repeatable_sql(kind: EventKind, shape: type[msgspec.Struct] = Payload) -> str:
    """`kind`: the events' kind; `shape`: the payloads' definition (another only in a test)."""
    item = build_object(shape)
    event = build_object(shape, event=True)
    condition = changed([c for c in watched(shape) if c != "id"], "OLD", "NEW", " " * 11)
    return f"""\
-- The export's payload functions and its events' trigger function, generated from
-- pmd_service/features/exports/schemas.py Payload by `python -m pmd_service.web.event_kinds`
-- (features/exports/event_sql.py): edit those, not this file. The migration runner re-creates them
-- whenever this file changes (core/migrate.py).

-- An export as the API shows it (without its URLs, which the service adds): made here, so it
-- carries the parts as they are in the same transaction. `kind` tells a stream's reader that
-- it is an export, not a BDR.
CREATE OR REPLACE FUNCTION export_payload(r exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT {item}
$$;

-- An event's payload stays small whatever the export (see 0008): counts for the lists, and
-- at most a few parts.
CREATE OR REPLACE FUNCTION export_event_payload(r exports) RETURNS jsonb LANGUAGE sql STABLE
SET search_path FROM CURRENT AS $$
    SELECT {event}
$$;

-- The table rings the stream's doorbell itself (migration 0018).
-- contract: pmd_bdr_events, expanded in 0018
CREATE OR REPLACE FUNCTION export_emit_event() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NOT (
           {condition}) THEN
        RETURN NULL;  -- a heartbeat or a claim: nothing the item shows
    END IF;
    PERFORM pg_advisory_xact_lock({AdvisoryLock.EVENT_ORDER:d});  -- ids visible in commit order (see 0005)
    INSERT INTO stream_events (subject_id, user_id, kind, audience, payload)
    VALUES (NEW.id, NEW.user_id, '{kind.kind}', '{kind.audience}', export_event_payload(NEW));
    RETURN NULL;
END
$$;
"""
