-- Issue 8: connecting to sessions (SSH over WebSocket and the browser terminal).
--
-- ssh_keys: users' SSH public keys; the agent accepts only the session owner's keys.
-- runtime_tokens: short-lived tokens bound to one user and one session, presented (hashed here)
-- on the SSH WebSocket; a live connection lasts while its token is neither revoked nor expired.
-- nodes gains the URL of its tunnel, through which the API reaches the agents on that host.
CREATE TABLE ssh_keys (
    id            TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          TEXT    NOT NULL,
    algorithm     TEXT    NOT NULL,
    -- `SHA256:…` of the key blob; one user registers a key once.
    fingerprint   TEXT    NOT NULL,
    -- OpenSSH one-line form without the comment.
    public_key    TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);
CREATE UNIQUE INDEX ssh_keys_user_fingerprint ON ssh_keys (user_id, fingerprint);

CREATE TABLE runtime_tokens (
    id            TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id    TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash    BYTEA   NOT NULL UNIQUE,
    created_at    BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX runtime_tokens_session_id ON runtime_tokens (session_id);
CREATE INDEX runtime_tokens_expires_at ON runtime_tokens (expires_at);

ALTER TABLE nodes ADD COLUMN tunnel_url TEXT;
