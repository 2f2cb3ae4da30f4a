-- A failed download's or export's machine code beside its message (`error_code`: user_not_found,
-- no_posts, too_large, internal; the table is pmd_service/core/codes.py), which the host's app
-- translates as it does the host's own download items.
--
-- Expand only: the previous release neither reads nor writes it, and a row it fails keeps a
-- null code (its item says `error_code: null` beside the message).
ALTER TABLE batch_download_requests ADD COLUMN error_code text;
ALTER TABLE exports ADD COLUMN error_code text;
