-- BurstFlare initial schema, PostgreSQL dialect.
--
-- Kept table-for-table and column-for-column identical to ../sqlite/0001_initial.sql so that one
-- Rust code path (sqlx::Any) reads both: ids are UUIDv7 strings (TEXT), timestamps are unix
-- milliseconds, booleans are 0/1 integers, JSON is TEXT, hashes and credential ids are raw bytes.
--
-- Foreign keys: ON DELETE CASCADE for rows that mean nothing without their parent; ON DELETE SET NULL
-- for history that outlives a person; ON DELETE NO ACTION for resources with side effects outside the
-- database (sessions, templates), which must be torn down by their workflows first. NO ACTION rather
-- than RESTRICT because it is checked at the end of the statement, so deleting a workspace can still
-- cascade to its templates and its sessions in one statement.

CREATE TABLE users (
    id            TEXT    PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE passkeys (
    id             TEXT    PRIMARY KEY,
    user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id  BYTEA   NOT NULL UNIQUE,
    name           TEXT    NOT NULL,
    -- webauthn-rs `Passkey`, serialized; the authoritative copy of the public key.
    passkey_json   TEXT    NOT NULL,
    sign_count     BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    last_used_at   BIGINT
);
CREATE INDEX passkeys_user_id ON passkeys (user_id);

CREATE TABLE recovery_codes (
    id          TEXT    PRIMARY KEY,
    user_id     TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   BYTEA   NOT NULL,
    created_at  BIGINT  NOT NULL,
    used_at     BIGINT,
    UNIQUE (user_id, code_hash)
);

CREATE TABLE browser_sessions (
    id                   TEXT    PRIMARY KEY,
    user_id              TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash           BYTEA   NOT NULL UNIQUE,
    created_at           BIGINT  NOT NULL,
    last_seen_at         BIGINT  NOT NULL,
    idle_expires_at      BIGINT  NOT NULL,
    absolute_expires_at  BIGINT  NOT NULL,
    revoked_at           BIGINT,
    ip                   TEXT,
    user_agent           TEXT,
    -- Random per session and rendered into forms; proves a form came from our page, and is not a
    -- credential on its own.
    csrf_token           TEXT    NOT NULL,
    -- Set when signed in with a recovery code: the session may only add a passkey until one exists.
    must_add_passkey     BIGINT  NOT NULL DEFAULT 0 CHECK (must_add_passkey IN (0, 1))
);
CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id);
CREATE INDEX browser_sessions_absolute_expires_at ON browser_sessions (absolute_expires_at);

-- OAuth 2.0 device authorization grant (RFC 8628), used by `flare login`.
CREATE TABLE device_authorizations (
    id                TEXT    PRIMARY KEY,
    device_code_hash  BYTEA   NOT NULL UNIQUE,
    user_code         TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'denied', 'consumed', 'expired')),
    interval_secs     BIGINT  NOT NULL,
    client_name       TEXT    NOT NULL,
    ip                TEXT,
    approved_user_id  TEXT    REFERENCES users (id) ON DELETE CASCADE,
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    last_polled_at    BIGINT,
    decided_at        BIGINT
);
-- User codes are short, so they only need to be unique among the codes a person could still type.
CREATE UNIQUE INDEX device_authorizations_pending_user_code
    ON device_authorizations (user_code) WHERE status = 'pending';
CREATE INDEX device_authorizations_expires_at ON device_authorizations (expires_at);

-- CLI refresh tokens rotate on every use; all tokens of one login share a family, and presenting an
-- already used token revokes the whole family (and the access tokens minted from it).
CREATE TABLE refresh_tokens (
    id           TEXT    PRIMARY KEY,
    family_id    TEXT    NOT NULL,
    user_id      TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   BYTEA   NOT NULL UNIQUE,
    client_name  TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL,
    expires_at   BIGINT  NOT NULL,
    used_at      BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);

CREATE TABLE api_tokens (
    id                 TEXT    PRIMARY KEY,
    user_id            TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               TEXT    NOT NULL,
    token_hash         BYTEA   NOT NULL UNIQUE,
    -- Set for access tokens minted by a refresh token, so revoking the family revokes them too.
    refresh_family_id  TEXT,
    created_at         BIGINT  NOT NULL,
    expires_at         BIGINT,
    revoked_at         BIGINT,
    last_used_at       BIGINT
);
CREATE INDEX api_tokens_user_id ON api_tokens (user_id);
CREATE INDEX api_tokens_refresh_family_id ON api_tokens (refresh_family_id);

-- WebAuthn ceremony state stays on the server (never in a cookie) and is deleted on first use.
CREATE TABLE webauthn_ceremonies (
    id            TEXT    PRIMARY KEY,
    kind          TEXT    NOT NULL CHECK (kind IN ('registration', 'authentication')),
    user_id       TEXT    REFERENCES users (id) ON DELETE CASCADE,
    state_json    TEXT    NOT NULL,
    -- What the ceremony is for, e.g. the pending sign-up's email and name, or the new passkey's name.
    context_json  TEXT    NOT NULL DEFAULT '{}',
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires_at ON webauthn_ceremonies (expires_at);

CREATE TABLE plans (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    limits_json  TEXT    NOT NULL,
    created_at   BIGINT  NOT NULL
);

CREATE TABLE workspaces (
    id             TEXT    PRIMARY KEY,
    name           TEXT    NOT NULL,
    slug           TEXT    NOT NULL UNIQUE,
    personal       BIGINT  NOT NULL DEFAULT 0 CHECK (personal IN (0, 1)),
    owner_user_id  TEXT    NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    plan_id        TEXT    NOT NULL REFERENCES plans (id) ON DELETE RESTRICT,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    deleted_at     BIGINT
);
CREATE INDEX workspaces_owner_user_id ON workspaces (owner_user_id);
CREATE UNIQUE INDEX workspaces_one_personal_per_owner ON workspaces (owner_user_id) WHERE personal = 1;

CREATE TABLE memberships (
    workspace_id  TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX memberships_user_id ON memberships (user_id);

CREATE TABLE invites (
    id                   TEXT    PRIMARY KEY,
    workspace_id         TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    token_hash           BYTEA   NOT NULL UNIQUE,
    email                TEXT    NOT NULL,
    -- Ownership is transferred, never granted by invitation.
    role                 TEXT    NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    invited_by_user_id   TEXT    REFERENCES users (id) ON DELETE SET NULL,
    created_at           BIGINT  NOT NULL,
    expires_at           BIGINT  NOT NULL,
    accepted_at          BIGINT,
    accepted_by_user_id  TEXT    REFERENCES users (id) ON DELETE SET NULL,
    revoked_at           BIGINT
);
CREATE INDEX invites_workspace_id ON invites (workspace_id);

CREATE TABLE templates (
    id                  TEXT    PRIMARY KEY,
    workspace_id        TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name                TEXT    NOT NULL,
    description         TEXT    NOT NULL DEFAULT '',
    created_by_user_id  TEXT    REFERENCES users (id) ON DELETE SET NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    archived_at         BIGINT,
    UNIQUE (workspace_id, name)
);

CREATE TABLE template_versions (
    id                  TEXT    PRIMARY KEY,
    template_id         TEXT    NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version             TEXT    NOT NULL,
    manifest_json       TEXT    NOT NULL,
    bundle_key          TEXT,
    status              TEXT    NOT NULL DEFAULT 'draft'
                        CHECK (status IN ('draft', 'uploaded', 'building', 'built', 'failed')),
    created_by_user_id  TEXT    REFERENCES users (id) ON DELETE SET NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    UNIQUE (template_id, version)
);

CREATE TABLE template_builds (
    id                   TEXT    PRIMARY KEY,
    template_version_id  TEXT    NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    status               TEXT    NOT NULL DEFAULT 'queued'
                         CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt              BIGINT  NOT NULL DEFAULT 1,
    workflow_id          TEXT    NOT NULL,
    log_key              TEXT,
    image_ref            TEXT,
    error                TEXT,
    created_at           BIGINT  NOT NULL,
    started_at           BIGINT,
    finished_at          BIGINT,
    UNIQUE (template_version_id, attempt)
);
CREATE INDEX template_builds_status ON template_builds (status, created_at);

-- What new sessions of a template run. One row per promoted template.
CREATE TABLE runtime_catalog (
    template_id          TEXT    PRIMARY KEY REFERENCES templates (id) ON DELETE CASCADE,
    active_version_id    TEXT    NOT NULL REFERENCES template_versions (id) ON DELETE NO ACTION,
    image_ref            TEXT    NOT NULL,
    previous_version_id  TEXT    REFERENCES template_versions (id) ON DELETE SET NULL,
    previous_image_ref   TEXT,
    updated_at           BIGINT  NOT NULL
);

CREATE TABLE sessions (
    id                   TEXT    PRIMARY KEY,
    workspace_id         TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_user_id        TEXT    NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    template_id          TEXT    NOT NULL REFERENCES templates (id) ON DELETE NO ACTION,
    template_version_id  TEXT    NOT NULL REFERENCES template_versions (id) ON DELETE NO ACTION,
    name                 TEXT    NOT NULL,
    state                TEXT    NOT NULL DEFAULT 'provisioning'
                         CHECK (state IN ('provisioning', 'starting', 'running', 'sleeping',
                                          'stopped', 'deleted', 'failed')),
    workflow_id          TEXT    NOT NULL UNIQUE,
    node_id              TEXT,
    created_at           BIGINT  NOT NULL,
    updated_at           BIGINT  NOT NULL,
    started_at           BIGINT,
    stopped_at           BIGINT,
    last_active_at       BIGINT,
    deleted_at           BIGINT
);
-- A deleted session gives its name back.
CREATE UNIQUE INDEX sessions_live_name ON sessions (workspace_id, name) WHERE state <> 'deleted';
CREATE INDEX sessions_workspace_state ON sessions (workspace_id, state);
CREATE INDEX sessions_owner_user_id ON sessions (owner_user_id);
CREATE INDEX sessions_state_updated_at ON sessions (state, updated_at);

CREATE TABLE session_events (
    session_id   TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq          BIGINT  NOT NULL,
    kind         TEXT    NOT NULL,
    detail_json  TEXT    NOT NULL DEFAULT '{}',
    at           BIGINT  NOT NULL,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE snapshots (
    id           TEXT    PRIMARY KEY,
    session_id   TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    content_key  TEXT    NOT NULL,
    size_bytes   BIGINT  NOT NULL,
    sha256       TEXT    NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'uploaded', 'verified', 'failed', 'deleted')),
    created_at   BIGINT  NOT NULL,
    verified_at  BIGINT
);
CREATE INDEX snapshots_session_created_at ON snapshots (session_id, created_at);
CREATE INDEX snapshots_content_key ON snapshots (content_key);

-- Added after snapshots exists because the two tables point at each other.
ALTER TABLE sessions ADD COLUMN latest_snapshot_id TEXT REFERENCES snapshots (id) ON DELETE SET NULL;

CREATE TABLE usage_events (
    id               TEXT    PRIMARY KEY,
    workspace_id     TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id          TEXT    REFERENCES users (id) ON DELETE SET NULL,
    session_id       TEXT    REFERENCES sessions (id) ON DELETE SET NULL,
    kind             TEXT    NOT NULL,
    quantity         BIGINT  NOT NULL,
    at               BIGINT  NOT NULL,
    -- Activities retry; the key (workflow id + step) makes a retried write a no-op.
    idempotency_key  TEXT    NOT NULL UNIQUE
);
CREATE INDEX usage_events_workspace_at ON usage_events (workspace_id, at);
CREATE INDEX usage_events_user_at ON usage_events (user_id, at);

CREATE TABLE quotas (
    workspace_id    TEXT    PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    plan_id         TEXT    NOT NULL REFERENCES plans (id) ON DELETE RESTRICT,
    overrides_json  TEXT    NOT NULL DEFAULT '{}',
    updated_at      BIGINT  NOT NULL
);

-- Append-only history. No foreign keys on purpose: an entry must outlive the user and the workspace
-- it names.
CREATE TABLE audit_log (
    id             TEXT    PRIMARY KEY,
    at             BIGINT  NOT NULL,
    actor_user_id  TEXT,
    workspace_id   TEXT,
    action         TEXT    NOT NULL,
    target_kind    TEXT,
    target_id      TEXT,
    ip             TEXT,
    user_agent     TEXT,
    detail_json    TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_workspace_at ON audit_log (workspace_id, at);
CREATE INDEX audit_log_actor_at ON audit_log (actor_user_id, at);

-- One row per run of the SelfCheck workflow; the unique workflow id makes a retried activity a no-op.
CREATE TABLE self_checks (
    id           TEXT    PRIMARY KEY,
    workflow_id  TEXT    NOT NULL UNIQUE,
    checked_at   BIGINT  NOT NULL,
    worker       TEXT    NOT NULL
);
CREATE INDEX self_checks_checked_at ON self_checks (checked_at);

-- Must match `store::FREE_PLAN_ID`. Limits are counts, bytes and minutes; `null` means unlimited.
INSERT INTO plans (id, name, limits_json, created_at) VALUES (
    '00000000-0000-7000-8000-000000000001',
    'free',
    '{"max_members":5,"max_templates":5,"max_sessions":3,"max_running_sessions":1,"max_snapshot_bytes":5368709120,"session_minutes_per_month":6000}',
    0
);
