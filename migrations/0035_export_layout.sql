-- An export's layout (issue 78): `bagit`, each part a BagIt bag, or `activitypub`, each part an
-- account archive in the layout Mastodon's backup writes, which other sites import.
-- Expand only: the previous release never names the column, and its exports are bags.
ALTER TABLE exports ADD COLUMN layout text NOT NULL DEFAULT 'bagit'
    CONSTRAINT exports_layout_check CHECK (layout IN ('bagit', 'activitypub'));
