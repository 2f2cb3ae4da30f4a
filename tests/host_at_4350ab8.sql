-- The host's tables as at commit 4350ab8 (alembic d4e5f6a7b8c9): run on tests/host_schema.sql,
-- the downgrade() of each later revision that touches them, newest first, as the host's own
-- `alembic downgrade d4e5f6a7b8c9` does.

-- d3e4f5a6b7c8_users_locale
ALTER TABLE users DROP COLUMN locale;
-- a8b9c0d1e2f3_posts_listed_at
ALTER TABLE posts DROP COLUMN pending_listing;
DROP INDEX ix_posts_listed_at;
ALTER TABLE posts DROP COLUMN listed_at;
-- f7a8b9c0d1e2_users_mention_policy
ALTER TABLE users DROP COLUMN mention_policy;
-- e5f6a7b8c9d0_posts_promoted_at
DROP INDEX ix_posts_promoted_promoted_at;
ALTER TABLE posts DROP COLUMN promoted_at;
-- a1b2c3d4e5f6_webauthn_credentials (its webauthn_credentials table is not among these)
DROP INDEX ix_users_webauthn_user_handle;
ALTER TABLE users DROP COLUMN webauthn_user_handle;

UPDATE alembic_version SET version_num = 'd4e5f6a7b8c9';
