-- Issue 7: dev sessions and their Session workflow.
--
-- sessions gains the states the workflow passes through while it tears a container down
-- (`stopping`, `deleting`), what it records about the container (generation, id, image), why a
-- session failed, its idle timeout, and the key that makes a retried create return the session
-- the first request made. `nodes` lists the runtime hosts that report in.
--
-- SQLite cannot change a CHECK constraint, so sessions is rebuilt (create, copy, drop, rename).
-- With foreign keys on, dropping the old table deletes its rows first, cascading to their
-- session_events and snapshots and clearing usage_events.session_id. That loses nothing here:
-- nothing wrote sessions before this migration (issue 7 adds the first writer), so the copy and
-- the cascade both see empty tables. Rows of those tables keep pointing at `sessions` by name,
-- which is the rebuilt table once it is renamed (tests check the foreign keys still hold).
CREATE TABLE sessions_new (
    id                    TEXT    PRIMARY KEY,
    workspace_id          TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_user_id         TEXT    NOT NULL REFERENCES users (id) ON DELETE NO ACTION,
    template_id           TEXT    NOT NULL REFERENCES templates (id) ON DELETE NO ACTION,
    template_version_id   TEXT    NOT NULL REFERENCES template_versions (id) ON DELETE NO ACTION,
    name                  TEXT    NOT NULL,
    state                 TEXT    NOT NULL DEFAULT 'provisioning'
                          CHECK (state IN ('provisioning', 'starting', 'running', 'sleeping',
                                           'stopping', 'stopped', 'deleting', 'deleted',
                                           'failed')),
    workflow_id           TEXT    NOT NULL UNIQUE,
    node_id               TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    started_at            INTEGER,
    stopped_at            INTEGER,
    last_active_at        INTEGER,
    deleted_at            INTEGER,
    latest_snapshot_id    TEXT    REFERENCES snapshots (id) ON DELETE SET NULL,
    -- Container generation: each new container of the session gets the next one.
    generation            INTEGER NOT NULL DEFAULT 0,
    container_id          TEXT,
    image_ref             TEXT,
    -- Why the session failed, in words for its owner.
    error                 TEXT,
    idle_timeout_minutes  INTEGER NOT NULL DEFAULT 30,
    idempotency_key       TEXT
);
INSERT INTO sessions_new
    (id, workspace_id, owner_user_id, template_id, template_version_id, name, state, workflow_id,
     node_id, created_at, updated_at, started_at, stopped_at, last_active_at, deleted_at,
     latest_snapshot_id)
SELECT id, workspace_id, owner_user_id, template_id, template_version_id, name, state, workflow_id,
       node_id, created_at, updated_at, started_at, stopped_at, last_active_at, deleted_at,
       latest_snapshot_id
FROM sessions;
DROP INDEX sessions_live_name;
DROP INDEX sessions_workspace_state;
DROP INDEX sessions_owner_user_id;
DROP INDEX sessions_state_updated_at;
DROP TABLE sessions;
ALTER TABLE sessions_new RENAME TO sessions;

-- A deleted session gives its name back.
CREATE UNIQUE INDEX sessions_live_name ON sessions (workspace_id, name) WHERE state <> 'deleted';
CREATE INDEX sessions_workspace_state ON sessions (workspace_id, state);
CREATE INDEX sessions_owner_user_id ON sessions (owner_user_id);
CREATE INDEX sessions_state_updated_at ON sessions (state, updated_at);
CREATE INDEX sessions_node_id ON sessions (node_id);
-- A retried create with the same key finds the session the first one made, whatever its state.
CREATE UNIQUE INDEX sessions_idempotency_key
    ON sessions (workspace_id, owner_user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Runtime hosts, upserted by their heartbeats; placement picks among the recently seen ones.
CREATE TABLE nodes (
    id              TEXT    PRIMARY KEY,
    docker_version  TEXT    NOT NULL,
    agent_version   TEXT,
    first_seen_at   INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL
);
CREATE INDEX nodes_last_seen_at ON nodes (last_seen_at);
