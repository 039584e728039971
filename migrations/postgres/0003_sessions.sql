-- Issue 7: dev sessions and their Session workflow.
--
-- sessions gains the states the workflow passes through while it tears a container down
-- (`stopping`, `deleting`), what it records about the container (generation, id, image), why a
-- session failed, its idle timeout, and the key that makes a retried create return the session
-- the first request made. `nodes` lists the runtime hosts that report in.
--
-- The SQLite dialect rebuilds sessions to change its CHECK; here the constraint (named by
-- PostgreSQL's default, as 0001 left it unnamed) is replaced in place.
ALTER TABLE sessions DROP CONSTRAINT sessions_state_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_state_check
    CHECK (state IN ('provisioning', 'starting', 'running', 'sleeping', 'stopping', 'stopped',
                     'deleting', 'deleted', 'failed'));

-- Container generation: each new container of the session gets the next one.
ALTER TABLE sessions ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN container_id TEXT;
ALTER TABLE sessions ADD COLUMN image_ref TEXT;
-- Why the session failed, in words for its owner.
ALTER TABLE sessions ADD COLUMN error TEXT;
ALTER TABLE sessions ADD COLUMN idle_timeout_minutes BIGINT NOT NULL DEFAULT 30;
ALTER TABLE sessions ADD COLUMN idempotency_key TEXT;

CREATE INDEX sessions_node_id ON sessions (node_id);
-- A retried create with the same key finds the session the first one made, whatever its state.
CREATE UNIQUE INDEX sessions_idempotency_key
    ON sessions (workspace_id, owner_user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Runtime hosts, upserted by their heartbeats; placement picks among the recently seen ones.
CREATE TABLE nodes (
    id              TEXT    PRIMARY KEY,
    docker_version  TEXT    NOT NULL,
    agent_version   TEXT,
    first_seen_at   BIGINT  NOT NULL,
    last_seen_at    BIGINT  NOT NULL
);
CREATE INDEX nodes_last_seen_at ON nodes (last_seen_at);
