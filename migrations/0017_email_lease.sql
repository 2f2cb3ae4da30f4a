-- A taken email carries a lease (mail/notify.py): taking it sets `email_sent_at` as before and
-- `email_lease_until`. DATA starts only while the lease holds, and starting it clears the lease
-- (as does a send without SMTP); a send the server did not take clears both. A lease that ran
-- out means its sender died before DATA: the email is owed again, and the sweep sends it.
--
-- Expand only: the previous release takes and releases by `email_sent_at` alone and never sets
-- a lease, so it never sends an email this release holds, and its own takes stay as they were.
ALTER TABLE batch_download_requests ADD COLUMN email_lease_until timestamptz;
ALTER TABLE exports ADD COLUMN email_lease_until timestamptz;

-- The sweep's emails owed: beside `bdr_email_owed_idx` (never taken), the few rows that hold a
-- lease. Exports, far fewer than BDRs, have no index for their emails owed.
CREATE INDEX bdr_email_lease_idx ON batch_download_requests (email_lease_until)
    WHERE email_lease_until IS NOT NULL;
