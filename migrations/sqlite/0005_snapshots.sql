-- Issue 9: snapshots of a session's persisted paths (docs/snapshots.md).
--
-- A snapshot row is written `pending` when the Snapshot workflow starts, `uploaded` once its
-- manifest is in the object store (content_key is then the manifest's key; '' before), `verified`
-- once committed, when the session's pointer may move to it. size_bytes and sha256 (NOT NULL since
-- 0001) hold 0 and '' until the upload.
--
-- snapshots gains its workspace (copied from the session, for garbage collection per workspace),
-- what triggered it, the chunk counts of its upload, why it failed, and who asked for it (NULL
-- when the platform took it). sessions gains the ordering value of its latest-snapshot pointer:
-- the snapshot's created_at when a commit moved it, the time of the restore when a restore did.
ALTER TABLE snapshots ADD COLUMN workspace_id TEXT NOT NULL DEFAULT '';
UPDATE snapshots
SET workspace_id = (SELECT s.workspace_id FROM sessions s WHERE s.id = snapshots.session_id);
ALTER TABLE snapshots ADD COLUMN trigger_kind TEXT NOT NULL DEFAULT 'manual'
    CHECK (trigger_kind IN ('manual', 'sleep', 'stop', 'restart', 'pre-restore'));
ALTER TABLE snapshots ADD COLUMN chunks INTEGER;
ALTER TABLE snapshots ADD COLUMN new_chunks INTEGER;
ALTER TABLE snapshots ADD COLUMN stored_bytes INTEGER;
ALTER TABLE snapshots ADD COLUMN error TEXT;
ALTER TABLE snapshots ADD COLUMN created_by TEXT REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX snapshots_workspace_status ON snapshots (workspace_id, status);

ALTER TABLE sessions ADD COLUMN latest_snapshot_at INTEGER;
UPDATE sessions
SET latest_snapshot_at = (SELECT sn.created_at FROM snapshots sn
                          WHERE sn.id = sessions.latest_snapshot_id)
WHERE latest_snapshot_id IS NOT NULL;
