-- Standalone mode only (dev, demo, tests): stand-ins for the host site's tables, created by the
-- explicit `python -m pmd_service migrate --with-host-tables` into a host schema that has none
-- of them. Beside the real host (Makapix Club) this file is never applied: the service then
-- never creates, alters or indexes a host table, and no other command or start-up applies it.
-- Each table is marked (the COMMENTs at the end): check-host refuses to take a stand-in for
-- the host's own table.
--
-- Shapes follow the host's migrations where the service cares (`roles` is json, posts carry
-- `updated_at`, `storage_shard` is a varchar(8) folder path of one or more levels), with two
-- conveniences for tests: every id, created_at, flag and array has a default, so a row can be
-- inserted naming only the columns that matter. Not versioned: a dev database made by an
-- older layout is rebuilt by removing `.data`.

CREATE TABLE users (
    id           serial PRIMARY KEY,
    user_key     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    public_sqid  varchar(16) UNIQUE,
    handle       varchar(50) NOT NULL UNIQUE,
    bio          text,
    avatar_url   varchar(500),
    email        varchar(255) NOT NULL UNIQUE,
    roles        json NOT NULL DEFAULT '[]'::json,
    deactivated  boolean NOT NULL DEFAULT false,
    banned_until timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz,
    -- The host's newest columns (alembic head d3e4f5a6b7c8): NULL locale means English.
    mention_policy varchar(16) NOT NULL DEFAULT 'everyone',
    locale         varchar(35)
);

CREATE TABLE licenses (
    id         serial PRIMARY KEY,
    identifier varchar(50) NOT NULL UNIQUE,
    title      varchar(200) NOT NULL DEFAULT ''
);

CREATE TABLE posts (
    id                   serial PRIMARY KEY,
    storage_key          uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    storage_shard        varchar(8),
    public_sqid          varchar(16) UNIQUE,
    kind                 varchar(20) NOT NULL DEFAULT 'artwork',
    owner_id             integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title                varchar(128) NOT NULL,
    description          text,
    hashtags             varchar[] NOT NULL DEFAULT '{}',
    art_url              varchar(1000),
    width                integer,
    height               integer,
    frame_count          integer NOT NULL DEFAULT 1,
    -- The artwork's hash: the host frees it when its post is deleted (uq_posts_hash_active
    -- below), so a deleted post whose hash a live post holds cannot be restored.
    hash                 varchar(64),
    hidden_by_user       boolean NOT NULL DEFAULT false,
    hidden_by_mod        boolean NOT NULL DEFAULT false,
    deleted_by_user      boolean NOT NULL DEFAULT false,
    deleted_by_user_date timestamptz,
    view_count           integer NOT NULL DEFAULT 0,
    license_id           integer REFERENCES licenses (id) ON DELETE SET NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz,
    -- The host's own rules ride on these (HOST.md has their exact shapes): its players sync on
    -- metadata_modified_at, a NoDerivatives license keeps remixable false, the artist never
    -- removes a moderator's tag, and mkpx_file_bytes says a layers file is attached.
    metadata_modified_at timestamptz NOT NULL DEFAULT now(),
    artwork_modified_at  timestamptz NOT NULL DEFAULT now(),
    mkpx_file_bytes      integer,
    mkpx_attached_at     timestamptz,
    mod_hashtags         varchar[] NOT NULL DEFAULT '{}'::varchar[],
    remixable            boolean NOT NULL DEFAULT true,
    -- The host's feeds: what the service never writes (docs/architecture.md, "The host's
    -- feeds"). The feeds order by listed_at (a raw-SQL insert sets it as the host's ORM does);
    -- only a moderator's approval sets public_visibility and consumes pending_listing.
    public_visibility    boolean NOT NULL DEFAULT false,
    promoted_at          timestamptz,
    listed_at            timestamptz NOT NULL DEFAULT now(),
    pending_listing      varchar(8)
);
-- The indexes the service's queries need (`python -m pmd_service check-host` lists them).
-- The host's own: the owner's posts by date.
CREATE INDEX ix_posts_owner_created ON posts (owner_id, created_at DESC);
CREATE INDEX ix_posts_hashtags ON posts USING gin (hashtags);
-- The host's own: one live post per artwork.
CREATE UNIQUE INDEX uq_posts_hash_active ON posts (hash)
    WHERE deleted_by_user = false AND hash IS NOT NULL;
-- Recommended to operators by check-host: the live list and its total (counted from the index
-- alone), and the "recently deleted" list.
CREATE INDEX pmd_posts_owner_live ON posts (owner_id, created_at DESC, id DESC)
    WHERE kind = 'artwork' AND NOT deleted_by_user;
CREATE INDEX pmd_posts_owner_deleted ON posts (owner_id, deleted_by_user_date DESC, id DESC)
    WHERE deleted_by_user;

CREATE TABLE post_files (
    id         serial PRIMARY KEY,
    post_id    integer NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    format     varchar(10) NOT NULL,
    file_bytes integer NOT NULL DEFAULT 0,
    is_native  boolean NOT NULL DEFAULT false,
    CONSTRAINT uq_post_files_post_format UNIQUE (post_id, format)
);
CREATE UNIQUE INDEX uq_post_files_one_native_per_post ON post_files (post_id) WHERE is_native;

CREATE TABLE comments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    post_id         integer NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id       integer REFERENCES users (id) ON DELETE SET NULL,
    parent_id       uuid,
    body            text NOT NULL DEFAULT '',
    hidden_by_mod   boolean NOT NULL DEFAULT false,
    deleted_by_owner boolean NOT NULL DEFAULT false,
    deleted_by_mod  boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_comments_post_created ON comments (post_id, created_at DESC);

CREATE TABLE reactions (
    id         serial PRIMARY KEY,
    post_id    integer NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    integer REFERENCES users (id) ON DELETE SET NULL,
    emoji      varchar(20) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_reactions_post_id ON reactions (post_id);

CREATE TABLE audit_logs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    actor_id    integer REFERENCES users (id) ON DELETE SET NULL,
    action      varchar(100) NOT NULL,
    target_type varchar(20),
    target_id   varchar(50),
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_audit_logs_actor_created ON audit_logs (actor_id, created_at DESC);

-- The mark check-host looks for (pmd_service.core.migrate.STANDIN_COMMENT).
COMMENT ON TABLE users IS 'pmd-service standalone stand-in';
COMMENT ON TABLE licenses IS 'pmd-service standalone stand-in';
COMMENT ON TABLE posts IS 'pmd-service standalone stand-in';
COMMENT ON TABLE post_files IS 'pmd-service standalone stand-in';
COMMENT ON TABLE comments IS 'pmd-service standalone stand-in';
COMMENT ON TABLE reactions IS 'pmd-service standalone stand-in';
COMMENT ON TABLE audit_logs IS 'pmd-service standalone stand-in';
