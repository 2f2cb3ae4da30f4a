-- The host site's tables the service touches, as the host's own migrations make them:
-- Makapix Club (github fabkury/makapix), `alembic upgrade head` of api/alembic/versions at head
-- d3e4f5a6b7c8 (2026-10-05; the squashed 20260128000000_squashed_schema.py and the revisions
-- after it), read back from the catalog. Columns in order with their types, nullability and
-- defaults, constraints and indexes with the host's names, and the head in alembic_version.
--
-- Since commit 4350ab8 (alembic d4e5f6a7b8c9, what shared HOST.md lists), the revisions that
-- touch these tables, each appending its columns:
--   a1b2c3d4e5f6 users.webauthn_user_handle bytea, unique index ix_users_webauthn_user_handle;
--   e5f6a7b8c9d0 posts.promoted_at timestamptz NULL, index ix_posts_promoted_promoted_at
--                (promoted, promoted_at DESC); backfill promoted_at := created_at where promoted;
--   f7a8b9c0d1e2 users.mention_policy varchar(16) NOT NULL DEFAULT 'everyone';
--   a8b9c0d1e2f3 posts.listed_at timestamptz NOT NULL DEFAULT now(), index ix_posts_listed_at
--                (listed_at DESC, id DESC); backfill listed_at := created_at (the host's ORM
--                sets it on insert since); posts.pending_listing varchar(8) NULL, backfill
--                'first' where not public_visibility, not deleted and never approved;
--   d3e4f5a6b7c8 users.locale varchar(35) NULL (a BCP 47 tag; NULL means English).
-- The others touch none of them: b2c3d4e5f6a7 (social_notifications), c3d4e5f6a7b8 (rows of
-- view_events only). tests/host_at_4350ab8.sql takes these tables back to 4350ab8.
--
-- Left out: the host's other tables, and with them the foreign keys pointing at them; and,
-- where the server lacks the pg_trgm extension (the embedded PostgreSQL has none), the trigram
-- index `ix_users_handle_trgm`, which no query of the service uses.
-- Note what the service must live with: `users.roles` is json; `audit_logs.id`, `comments.id`
-- and `batch_download_requests.id` have no default (the host sets uuid4 in Python); posts have
-- `updated_at`; and the host has a `batch_download_requests` of its own (its Celery PMD).

CREATE TABLE alembic_version (
    version_num character varying(32) NOT NULL
);
ALTER TABLE ONLY alembic_version ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);
INSERT INTO alembic_version (version_num) VALUES ('d3e4f5a6b7c8');

CREATE TABLE users (
    id integer NOT NULL,
    user_key uuid NOT NULL,
    public_sqid character varying(16),
    handle character varying(50) NOT NULL,
    bio text,
    tagline character varying(48),
    website character varying(500),
    avatar_url character varying(500),
    email character varying(255) NOT NULL,
    email_normalized character varying(255),
    email_verified boolean DEFAULT false NOT NULL,
    welcome_completed boolean DEFAULT false NOT NULL,
    reputation integer DEFAULT 0 NOT NULL,
    roles json DEFAULT '[]'::json NOT NULL,
    hidden_by_user boolean DEFAULT false NOT NULL,
    hidden_by_mod boolean DEFAULT false NOT NULL,
    non_conformant boolean DEFAULT false NOT NULL,
    deactivated boolean DEFAULT false NOT NULL,
    banned_until timestamp with time zone,
    auto_public_approval boolean DEFAULT false NOT NULL,
    approved_hashtags character varying(50)[] DEFAULT '{}'::character varying[] NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone,
    handle_normalized character varying(128) NOT NULL,
    terms_version_accepted character varying(20),
    avatar_source_post_id integer,
    webauthn_user_handle bytea,
    mention_policy character varying(16) DEFAULT 'everyone'::character varying NOT NULL,
    locale character varying(35)
);
CREATE SEQUENCE users_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE users_id_seq OWNED BY users.id;
ALTER TABLE ONLY users ALTER COLUMN id SET DEFAULT nextval('users_id_seq'::regclass);
ALTER TABLE ONLY users ADD CONSTRAINT users_pkey PRIMARY KEY (id);
ALTER TABLE ONLY users ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE ONLY users ADD CONSTRAINT users_email_normalized_key UNIQUE (email_normalized);
ALTER TABLE ONLY users ADD CONSTRAINT users_handle_key UNIQUE (handle);
ALTER TABLE ONLY users ADD CONSTRAINT users_public_sqid_key UNIQUE (public_sqid);
ALTER TABLE ONLY users ADD CONSTRAINT users_user_key_key UNIQUE (user_key);
CREATE INDEX ix_users_auto_public_approval ON users USING btree (auto_public_approval);
CREATE INDEX ix_users_avatar_source_post_id ON users USING btree (avatar_source_post_id);
CREATE INDEX ix_users_banned_until ON users USING btree (banned_until);
CREATE INDEX ix_users_created_at ON users USING btree (created_at);
CREATE INDEX ix_users_deactivated ON users USING btree (deactivated);
CREATE INDEX ix_users_email_verified ON users USING btree (email_verified);
CREATE INDEX ix_users_hidden_by_mod ON users USING btree (hidden_by_mod);
CREATE INDEX ix_users_id ON users USING btree (id);
CREATE INDEX ix_users_non_conformant ON users USING btree (non_conformant);
CREATE INDEX ix_users_reputation ON users USING btree (reputation);
CREATE INDEX ix_users_welcome_completed ON users USING btree (welcome_completed);
CREATE UNIQUE INDEX ix_users_email ON users USING btree (email);
CREATE UNIQUE INDEX ix_users_email_normalized ON users USING btree (email_normalized);
CREATE UNIQUE INDEX ix_users_handle ON users USING btree (handle);
CREATE UNIQUE INDEX ix_users_handle_normalized ON users USING btree (handle_normalized);
CREATE UNIQUE INDEX ix_users_public_sqid ON users USING btree (public_sqid);
CREATE UNIQUE INDEX ix_users_user_key ON users USING btree (user_key);
CREATE UNIQUE INDEX ix_users_webauthn_user_handle ON users USING btree (webauthn_user_handle);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
        CREATE INDEX ix_users_handle_trgm ON users USING gin (handle gin_trgm_ops);
    END IF;
END
$$;

CREATE TABLE licenses (
    id integer NOT NULL,
    identifier character varying(50) NOT NULL,
    title character varying(200) NOT NULL,
    canonical_url character varying(500) NOT NULL,
    badge_path character varying(200) NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE SEQUENCE licenses_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE licenses_id_seq OWNED BY licenses.id;
ALTER TABLE ONLY licenses ALTER COLUMN id SET DEFAULT nextval('licenses_id_seq'::regclass);
ALTER TABLE ONLY licenses ADD CONSTRAINT licenses_pkey PRIMARY KEY (id);
ALTER TABLE ONLY licenses ADD CONSTRAINT licenses_identifier_key UNIQUE (identifier);
CREATE INDEX ix_licenses_id ON licenses USING btree (id);
CREATE UNIQUE INDEX ix_licenses_identifier ON licenses USING btree (identifier);

CREATE TABLE posts (
    id integer NOT NULL,
    storage_key uuid NOT NULL,
    storage_shard character varying(8),
    public_sqid character varying(16),
    kind character varying(20) DEFAULT 'artwork'::character varying NOT NULL,
    owner_id integer NOT NULL,
    title character varying(128) NOT NULL,
    description text,
    hashtags character varying[] DEFAULT '{}'::character varying[] NOT NULL,
    art_url character varying(1000),
    width integer,
    height integer,
    base integer,
    size integer,
    frame_count integer DEFAULT 1 NOT NULL,
    min_frame_duration_ms integer,
    max_frame_duration_ms integer,
    unique_colors integer,
    transparency_meta boolean DEFAULT false NOT NULL,
    alpha_meta boolean DEFAULT false NOT NULL,
    transparency_actual boolean DEFAULT false NOT NULL,
    alpha_actual boolean DEFAULT false NOT NULL,
    hash character varying(64),
    visible boolean DEFAULT true NOT NULL,
    hidden_by_user boolean DEFAULT false NOT NULL,
    hidden_by_mod boolean DEFAULT false NOT NULL,
    non_conformant boolean DEFAULT false NOT NULL,
    public_visibility boolean DEFAULT false NOT NULL,
    deleted_by_user boolean DEFAULT false NOT NULL,
    deleted_by_user_date timestamp with time zone,
    promoted boolean DEFAULT false NOT NULL,
    promoted_category character varying(50),
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone,
    metadata_modified_at timestamp with time zone DEFAULT now() NOT NULL,
    artwork_modified_at timestamp with time zone DEFAULT now() NOT NULL,
    dwell_time_ms integer DEFAULT 30000 NOT NULL,
    license_id integer,
    mkpx_file_bytes integer,
    mkpx_attached_at timestamp with time zone,
    mod_hashtags character varying[] DEFAULT '{}'::character varying[] NOT NULL,
    total_duration_ms integer,
    view_count integer DEFAULT 0 NOT NULL,
    upload_channel character varying(16),
    creation_method character varying(32),
    source_details jsonb,
    remixable boolean DEFAULT true NOT NULL,
    promoted_at timestamp with time zone,
    listed_at timestamp with time zone DEFAULT now() NOT NULL,
    pending_listing character varying(8)
);
CREATE SEQUENCE posts_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE posts_id_seq OWNED BY posts.id;
ALTER TABLE ONLY posts ALTER COLUMN id SET DEFAULT nextval('posts_id_seq'::regclass);
ALTER TABLE ONLY posts ADD CONSTRAINT posts_pkey PRIMARY KEY (id);
ALTER TABLE ONLY posts ADD CONSTRAINT posts_public_sqid_key UNIQUE (public_sqid);
ALTER TABLE ONLY posts ADD CONSTRAINT posts_storage_key_key UNIQUE (storage_key);
ALTER TABLE ONLY posts
    ADD CONSTRAINT posts_license_id_fkey FOREIGN KEY (license_id) REFERENCES licenses(id) ON DELETE SET NULL;
ALTER TABLE ONLY posts ADD CONSTRAINT posts_owner_id_fkey FOREIGN KEY (owner_id) REFERENCES users(id);
CREATE INDEX ix_posts_artwork_modified_at ON posts USING btree (artwork_modified_at);
CREATE INDEX ix_posts_base ON posts USING btree (base);
CREATE INDEX ix_posts_created_at ON posts USING btree (created_at);
CREATE INDEX ix_posts_deleted_by_user ON posts USING btree (deleted_by_user);
CREATE INDEX ix_posts_deleted_by_user_date ON posts USING btree (deleted_by_user_date);
CREATE INDEX ix_posts_hashtags ON posts USING gin (hashtags);
CREATE INDEX ix_posts_height ON posts USING btree (height);
CREATE INDEX ix_posts_hidden_by_mod ON posts USING btree (hidden_by_mod);
CREATE INDEX ix_posts_id ON posts USING btree (id);
CREATE INDEX ix_posts_license_id ON posts USING btree (license_id);
CREATE INDEX ix_posts_listed_at ON posts USING btree (listed_at DESC, id DESC);
CREATE INDEX ix_posts_metadata_modified_at ON posts USING btree (metadata_modified_at);
CREATE INDEX ix_posts_non_conformant ON posts USING btree (non_conformant);
CREATE INDEX ix_posts_non_conformant_created ON posts USING btree (non_conformant, created_at DESC);
CREATE INDEX ix_posts_owner_created ON posts USING btree (owner_id, created_at DESC);
CREATE INDEX ix_posts_owner_id ON posts USING btree (owner_id);
CREATE INDEX ix_posts_promoted ON posts USING btree (promoted);
CREATE INDEX ix_posts_promoted_promoted_at ON posts USING btree (promoted, promoted_at DESC);
CREATE INDEX ix_posts_public_visibility ON posts USING btree (public_visibility);
CREATE INDEX ix_posts_size ON posts USING btree (size);
CREATE INDEX ix_posts_visible ON posts USING btree (visible);
CREATE INDEX ix_posts_width ON posts USING btree (width);
CREATE UNIQUE INDEX ix_posts_public_sqid ON posts USING btree (public_sqid);
CREATE UNIQUE INDEX ix_posts_storage_key ON posts USING btree (storage_key);
CREATE UNIQUE INDEX uq_posts_hash_active ON posts USING btree (hash)
    WHERE ((deleted_by_user = false) AND (hash IS NOT NULL));

ALTER TABLE ONLY users ADD CONSTRAINT fk_users_avatar_source_post_id_posts
    FOREIGN KEY (avatar_source_post_id) REFERENCES posts(id) ON DELETE SET NULL;

CREATE TABLE post_files (
    id integer NOT NULL,
    post_id integer NOT NULL,
    format character varying(10) NOT NULL,
    file_bytes integer NOT NULL,
    is_native boolean DEFAULT false NOT NULL
);
CREATE SEQUENCE post_files_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE post_files_id_seq OWNED BY post_files.id;
ALTER TABLE ONLY post_files ALTER COLUMN id SET DEFAULT nextval('post_files_id_seq'::regclass);
ALTER TABLE ONLY post_files ADD CONSTRAINT post_files_pkey PRIMARY KEY (id);
ALTER TABLE ONLY post_files ADD CONSTRAINT uq_post_files_post_format UNIQUE (post_id, format);
ALTER TABLE ONLY post_files
    ADD CONSTRAINT post_files_post_id_fkey FOREIGN KEY (post_id) REFERENCES posts(id) ON DELETE CASCADE;
CREATE INDEX ix_post_files_format_bytes ON post_files USING btree (format, file_bytes);
CREATE INDEX ix_post_files_post_id ON post_files USING btree (post_id);
CREATE UNIQUE INDEX uq_post_files_one_native_per_post ON post_files USING btree (post_id)
    WHERE (is_native = true);

CREATE TABLE comments (
    id uuid NOT NULL,
    post_id integer NOT NULL,
    author_id integer,
    author_ip character varying(45),
    parent_id uuid,
    depth integer DEFAULT 0 NOT NULL,
    body text NOT NULL,
    hidden_by_mod boolean DEFAULT false NOT NULL,
    deleted_by_owner boolean DEFAULT false NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone,
    deleted_by_mod boolean DEFAULT false NOT NULL,
    original_body text
);
ALTER TABLE ONLY comments ADD CONSTRAINT comments_pkey PRIMARY KEY (id);
ALTER TABLE ONLY comments ADD CONSTRAINT comments_author_id_fkey FOREIGN KEY (author_id) REFERENCES users(id);
ALTER TABLE ONLY comments ADD CONSTRAINT comments_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES comments(id);
ALTER TABLE ONLY comments ADD CONSTRAINT comments_post_id_fkey FOREIGN KEY (post_id) REFERENCES posts(id);
CREATE INDEX ix_comments_author_id ON comments USING btree (author_id);
CREATE INDEX ix_comments_author_ip ON comments USING btree (author_ip);
CREATE INDEX ix_comments_created_at ON comments USING btree (created_at);
CREATE INDEX ix_comments_hidden_by_mod ON comments USING btree (hidden_by_mod);
CREATE INDEX ix_comments_id ON comments USING btree (id);
CREATE INDEX ix_comments_parent_id ON comments USING btree (parent_id);
CREATE INDEX ix_comments_post_created ON comments USING btree (post_id, created_at DESC);
CREATE INDEX ix_comments_post_id ON comments USING btree (post_id);

CREATE TABLE reactions (
    id integer NOT NULL,
    post_id integer NOT NULL,
    user_id integer,
    user_ip character varying(45),
    emoji character varying(20) NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE SEQUENCE reactions_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1;
ALTER SEQUENCE reactions_id_seq OWNED BY reactions.id;
ALTER TABLE ONLY reactions ALTER COLUMN id SET DEFAULT nextval('reactions_id_seq'::regclass);
ALTER TABLE ONLY reactions ADD CONSTRAINT reactions_pkey PRIMARY KEY (id);
ALTER TABLE ONLY reactions ADD CONSTRAINT reactions_post_id_fkey FOREIGN KEY (post_id) REFERENCES posts(id);
ALTER TABLE ONLY reactions ADD CONSTRAINT reactions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id);
CREATE INDEX ix_reactions_created_at ON reactions USING btree (created_at);
CREATE INDEX ix_reactions_post_emoji ON reactions USING btree (post_id, emoji);
CREATE INDEX ix_reactions_post_id ON reactions USING btree (post_id);
CREATE INDEX ix_reactions_user_id ON reactions USING btree (user_id);
CREATE INDEX ix_reactions_user_ip ON reactions USING btree (user_ip);
CREATE UNIQUE INDEX uq_reaction_post_ip_emoji ON reactions USING btree (post_id, user_ip, emoji)
    WHERE (user_ip IS NOT NULL);
CREATE UNIQUE INDEX uq_reaction_post_user_emoji ON reactions USING btree (post_id, user_id, emoji)
    WHERE (user_id IS NOT NULL);

CREATE TABLE audit_logs (
    id uuid NOT NULL,
    actor_id integer NOT NULL,
    action character varying(100) NOT NULL,
    target_type character varying(20),
    target_id character varying(50),
    reason_code character varying(50),
    note text,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE ONLY audit_logs ADD CONSTRAINT audit_logs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY audit_logs ADD CONSTRAINT audit_logs_actor_id_fkey FOREIGN KEY (actor_id) REFERENCES users(id);
CREATE INDEX ix_audit_logs_action ON audit_logs USING btree (action);
CREATE INDEX ix_audit_logs_actor_created ON audit_logs USING btree (actor_id, created_at DESC);
CREATE INDEX ix_audit_logs_actor_id ON audit_logs USING btree (actor_id);
CREATE INDEX ix_audit_logs_created_at ON audit_logs USING btree (created_at);
CREATE INDEX ix_audit_logs_id ON audit_logs USING btree (id);
CREATE INDEX ix_audit_logs_target_id ON audit_logs USING btree (target_id);

-- The host's own download requests (its Celery PMD), which the service leaves alone.
CREATE TABLE batch_download_requests (
    id uuid NOT NULL,
    user_id integer NOT NULL,
    post_ids integer[] NOT NULL,
    include_comments boolean DEFAULT false NOT NULL,
    include_reactions boolean DEFAULT false NOT NULL,
    send_email boolean DEFAULT false NOT NULL,
    status character varying(20) DEFAULT 'pending'::character varying NOT NULL,
    error_message text,
    file_path character varying(500),
    file_size_bytes bigint,
    artwork_count integer NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    expires_at timestamp with time zone
);
ALTER TABLE ONLY batch_download_requests ADD CONSTRAINT batch_download_requests_pkey PRIMARY KEY (id);
ALTER TABLE ONLY batch_download_requests
    ADD CONSTRAINT batch_download_requests_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE;
CREATE INDEX ix_batch_download_requests_created_at ON batch_download_requests USING btree (created_at);
CREATE INDEX ix_batch_download_requests_id ON batch_download_requests USING btree (id);
CREATE INDEX ix_batch_download_requests_status ON batch_download_requests USING btree (status);
CREATE INDEX ix_batch_download_requests_user_id ON batch_download_requests USING btree (user_id);
CREATE INDEX ix_bdr_status_expires ON batch_download_requests USING btree (status, expires_at);
CREATE INDEX ix_bdr_user_created ON batch_download_requests USING btree (user_id, created_at DESC);
