-- The event payloads are defined once, in Python beside their item (pmd_service/bdr/schemas.py
-- ItemRow, pmd_service/exports/schemas.py Payload), and their functions generated from it into
-- migrations/repeatable/, which the migration runner re-creates whenever they change, in this
-- same transaction now (core/migrate.py). A migration adding a field to an item no longer
-- re-creates a trigger body by hand (0007 needed 102 lines for one column).
--
-- What the hand-written bodies were built from goes: the pieces 0011 joined, and the two
-- payload functions themselves, whose parameter the generated ones name `r` (a replacement
-- cannot rename it). The trigger functions are replaced in place (CREATE OR REPLACE).
DROP FUNCTION export_payload(exports);
DROP FUNCTION export_event_payload(exports);
DROP FUNCTION export_payload_0007(exports);
DROP FUNCTION export_event_payload_0008(exports);
DROP FUNCTION export_payload_0011(exports);
