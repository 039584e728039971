-- Issue 6: template bundles and the TemplateBuild workflow.
--
-- template_versions gains what the upload and the build record: the bundle's size and sha256
-- (checked against storage before a version is accepted), when its presigned upload URL
-- expires, and the image the build produced (tag and registry digest).
ALTER TABLE template_versions ADD COLUMN bundle_size BIGINT;
ALTER TABLE template_versions ADD COLUMN bundle_sha256 TEXT;
ALTER TABLE template_versions ADD COLUMN upload_expires_at BIGINT;
ALTER TABLE template_versions ADD COLUMN image_ref TEXT;
ALTER TABLE template_versions ADD COLUMN image_digest TEXT;

-- template_builds is rebuilt: nothing wrote it before this migration and nothing references it,
-- and its states now follow the workflow's steps. One row per attempt; a retry is a new row
-- (and a new workflow) for the same version.
DROP INDEX template_builds_status;
DROP TABLE template_builds;
CREATE TABLE template_builds (
    id                    TEXT    PRIMARY KEY,
    template_version_id   TEXT    NOT NULL REFERENCES template_versions (id) ON DELETE CASCADE,
    attempt               BIGINT  NOT NULL,
    status                TEXT    NOT NULL DEFAULT 'queued'
                          CHECK (status IN ('queued', 'validating', 'building', 'pushing',
                                            'succeeded', 'failed', 'cancelled')),
    workflow_id           TEXT    NOT NULL UNIQUE,
    requested_by_user_id  TEXT    REFERENCES users (id) ON DELETE SET NULL,
    image_ref             TEXT,
    image_digest          TEXT,
    error                 TEXT,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL,
    started_at            BIGINT,
    finished_at           BIGINT,
    UNIQUE (template_version_id, attempt)
);
CREATE INDEX template_builds_status ON template_builds (status, created_at);
