-- Issue 10: the runtime catalog's history, template promotions and the promotion policy
-- (docs/catalog.md).
--
-- runtime_catalog (since 0001: one row per template with an active version) is written only by
-- domain::store::catalog, in one transaction with the catalog_revisions row that records the
-- change. Revisions are numbered 1, 2, 3, … for the whole installation; catalog_head holds the
-- latest one and is the row every catalog writer locks first, so that revisions are handed out
-- one at a time. A revision keeps the whole catalog as it was after the change (document, JSON)
-- and outlives what it names: no foreign keys but the actor's. change_key (the workflow id and
-- step that made the change) makes a retried change a no-op; version_id and
-- previous_version_id are the template's active version after and before it.
CREATE TABLE catalog_head (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  INTEGER NOT NULL
);
INSERT INTO catalog_head (id, revision) VALUES (1, 0);

CREATE TABLE catalog_revisions (
    revision             INTEGER PRIMARY KEY,
    created_at           INTEGER NOT NULL,
    reason               TEXT    NOT NULL,
    change_key           TEXT    NOT NULL UNIQUE,
    actor_user_id        TEXT    REFERENCES users (id) ON DELETE SET NULL,
    template_id          TEXT,
    version_id           TEXT,
    previous_version_id  TEXT,
    document             TEXT    NOT NULL
);

-- The catalog revision that last changed the row (NULL for rows written before 0006).
ALTER TABLE runtime_catalog ADD COLUMN revision INTEGER;

-- One row per TemplatePromotion run (promote, demote, rollback). progress is JSON: the rollout's
-- progress per runtime node.
CREATE TABLE template_promotions (
    id            TEXT    PRIMARY KEY,
    workspace_id  TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    template_id   TEXT    NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version_id    TEXT    NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    workflow_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('promote', 'demote', 'rollback')),
    status        TEXT    NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'awaiting_approval', 'succeeded', 'rolled_back',
                                    'failed', 'cancelled')),
    step          TEXT,
    error         TEXT,
    requested_by  TEXT    REFERENCES users (id) ON DELETE SET NULL,
    approved_by   TEXT    REFERENCES users (id) ON DELETE SET NULL,
    approved_at   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    progress      TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX template_promotions_template_created_at ON template_promotions (template_id, created_at);

-- The workspace's promotion policy: 1 when a promotion waits for an owner's or admin's approval.
ALTER TABLE workspaces ADD COLUMN promotion_requires_approval INTEGER NOT NULL DEFAULT 0
    CHECK (promotion_requires_approval IN (0, 1));
