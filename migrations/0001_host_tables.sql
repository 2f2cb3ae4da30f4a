-- Tables of the host site this service runs beside. Column names follow the host schema so the
-- service can run against its database; IF NOT EXISTS leaves an existing host table alone.
-- Every id, created_at, flag and array has a default so rows can be inserted naming only
-- the columns that matter.

CREATE TABLE IF NOT EXISTS users (
    id           serial PRIMARY KEY,
    user_key     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    public_sqid  varchar(16) UNIQUE,
    handle       varchar(50) NOT NULL UNIQUE,
    email        varchar(255) NOT NULL UNIQUE,
    roles        jsonb NOT NULL DEFAULT '[]'::jsonb,
    deactivated  boolean NOT NULL DEFAULT false,
    banned_until timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS licenses (
    id         serial PRIMARY KEY,
    identifier varchar(50) NOT NULL UNIQUE,
    title      varchar(200) NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS posts (
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
    hidden_by_user       boolean NOT NULL DEFAULT false,
    hidden_by_mod        boolean NOT NULL DEFAULT false,
    deleted_by_user      boolean NOT NULL DEFAULT false,
    deleted_by_user_date timestamptz,
    view_count           integer NOT NULL DEFAULT 0,
    license_id           integer REFERENCES licenses (id) ON DELETE SET NULL,
    created_at           timestamptz NOT NULL DEFAULT now()
);

-- The dashboard list: an owner's live artworks, newest first, keyset on (created_at, id).
CREATE INDEX IF NOT EXISTS posts_pmd_listing_idx
    ON posts (owner_id, created_at DESC, id DESC)
    WHERE kind = 'artwork' AND NOT deleted_by_user;
-- The "recently deleted" list and restore window.
CREATE INDEX IF NOT EXISTS posts_pmd_deleted_idx
    ON posts (owner_id, deleted_by_user_date DESC, id DESC)
    WHERE deleted_by_user;

CREATE TABLE IF NOT EXISTS post_files (
    post_id    integer NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    format     varchar(10) NOT NULL,
    file_bytes integer,
    is_native  boolean NOT NULL DEFAULT false,
    UNIQUE (post_id, format)
);
CREATE UNIQUE INDEX IF NOT EXISTS post_files_one_native_idx ON post_files (post_id) WHERE is_native;

CREATE TABLE IF NOT EXISTS comments (
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
CREATE INDEX IF NOT EXISTS comments_post_idx ON comments (post_id, created_at);

CREATE TABLE IF NOT EXISTS reactions (
    id         serial PRIMARY KEY,
    post_id    integer NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id    integer REFERENCES users (id) ON DELETE SET NULL,
    emoji      varchar(20) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reactions_post_idx ON reactions (post_id);

CREATE TABLE IF NOT EXISTS audit_logs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    actor_id    integer REFERENCES users (id) ON DELETE SET NULL,
    action      varchar(64) NOT NULL,
    target_type varchar(32),
    target_id   varchar(64),
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_logs_actor_idx ON audit_logs (actor_id, created_at DESC);
