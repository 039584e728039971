-- Archiving a template is a TemplatePromotion run too (kind 'archive'), so that it cannot overlap
-- a promotion of the same template. SQLite cannot change a CHECK in place: rebuild the table.
CREATE TABLE template_promotions_new (
    id            TEXT    PRIMARY KEY,
    workspace_id  TEXT    NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    template_id   TEXT    NOT NULL REFERENCES templates (id) ON DELETE CASCADE,
    version_id    TEXT    NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    workflow_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('promote', 'demote', 'rollback', 'archive')),
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
INSERT INTO template_promotions_new SELECT * FROM template_promotions;
DROP TABLE template_promotions;
ALTER TABLE template_promotions_new RENAME TO template_promotions;
CREATE INDEX template_promotions_template_created_at ON template_promotions (template_id, created_at);
