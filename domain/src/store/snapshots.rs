//! Snapshots of a session's persisted paths (docs/snapshots.md): their rows and the session's
//! latest-snapshot pointer, what a fresh container is restored from.
//!
//! A snapshot is `pending` while the Snapshot workflow packs and uploads it, `uploaded` once its
//! manifest is stored, `verified` once committed; `failed` and `deleted` are final. Only a commit
//! or a restore moves the pointer, and only to a verified snapshot of the same session:
//!
//! - a commit moves it only forward, by the pointer's ordering value (`latest_snapshot_at`, ties
//!   broken by id), so a slow snapshot committed after a newer one does not win;
//! - a restore moves it unconditionally, to an older snapshot too, with the time of the restore as
//!   its ordering value: a snapshot started before the restore does not undo it.
//!
//! Every operation that reads or moves the pointer first locks the session's row (a write to it,
//! which takes a row lock on PostgreSQL and the write lock on SQLite), so that commits, restores,
//! deletes and retention of one session happen one after another.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{Store, StoreError, col, col_parsed, col_parsed_opt};
use crate::ids::{SessionId, SnapshotId, UserId, WorkspaceId};

/// What can trigger a snapshot, as the schema's CHECK lists them.
pub const SNAPSHOT_TRIGGERS: [&str; 5] = ["manual", "sleep", "stop", "restart", "pre-restore"];

/// Longest `error` kept for a failed snapshot, in characters.
const MAX_ERROR_CHARS: usize = 2000;

/// What [`Store::begin_snapshot`] needs.
#[derive(Debug, Clone, Copy)]
pub struct NewSnapshot<'a> {
    /// Chosen by the caller, so that a retried begin finds the row the first one made.
    pub id: &'a SnapshotId,
    pub session: &'a SessionId,
    /// The session's workspace.
    pub workspace: &'a WorkspaceId,
    /// One of [`SNAPSHOT_TRIGGERS`].
    pub trigger: &'a str,
    /// Who asked for it; `None` when the platform took it (sleep, stop, restart).
    pub created_by: Option<&'a UserId>,
    /// When (unix ms): the snapshot's `created_at`, its place in the session's order.
    pub at: i64,
}

/// The facts of an uploaded snapshot's manifest, for [`Store::snapshot_uploaded`].
#[derive(Debug, Clone, Copy)]
pub struct UploadedSnapshot<'a> {
    /// The manifest's object key.
    pub manifest_key: &'a str,
    /// Size of the packed stream.
    pub size_bytes: u64,
    /// sha256 of the packed stream, lowercase hex.
    pub sha256: &'a str,
    /// Chunks in the manifest.
    pub chunks: u64,
    /// Of those, the ones this upload stored (the others were already there).
    pub new_chunks: u64,
    /// Bytes this upload stored (compressed).
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: SnapshotId,
    pub session_id: SessionId,
    pub workspace_id: WorkspaceId,
    /// One of [`SNAPSHOT_TRIGGERS`].
    pub trigger: String,
    /// `pending`, `uploaded`, `verified`, `failed` or `deleted`.
    pub status: String,
    /// The manifest's object key, once uploaded.
    pub manifest_key: Option<String>,
    /// Once uploaded.
    pub size_bytes: Option<u64>,
    /// Once uploaded.
    pub sha256: Option<String>,
    pub chunks: Option<u64>,
    pub new_chunks: Option<u64>,
    pub stored_bytes: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Who asked for it; `None` when the platform took it.
    pub created_by: Option<UserId>,
    pub created_at: i64,
    pub verified_at: Option<i64>,
    /// whether sessions.latest_snapshot_id points at it
    pub latest: bool,
}

/// Selects snapshots as `sn` with their session as `s`, with what [`snapshot_from_row`] reads;
/// callers add WHERE.
const SNAPSHOT_SELECT: &str = "SELECT sn.id, sn.session_id, sn.workspace_id, sn.trigger_kind,
        sn.status, sn.content_key, sn.size_bytes, sn.sha256, sn.chunks, sn.new_chunks,
        sn.stored_bytes, sn.error, sn.created_by, sn.created_at, sn.verified_at,
        CASE WHEN s.latest_snapshot_id = sn.id THEN 1 ELSE 0 END AS latest
     FROM snapshots sn
     JOIN sessions s ON s.id = sn.session_id";

/// Newest first.
const NEWEST_FIRST: &str = "ORDER BY sn.created_at DESC, sn.id DESC";

fn snapshot_from_row(row: &AnyRow) -> Result<SnapshotRecord, StoreError> {
    let content_key: String = col(row, "content_key")?;
    // '' until the manifest is uploaded; size and sha256 hold placeholders until then.
    let uploaded = !content_key.is_empty();
    let size_bytes: i64 = col(row, "size_bytes")?;
    let sha256: String = col(row, "sha256")?;
    let latest: i64 = col(row, "latest")?;
    Ok(SnapshotRecord {
        id: col_parsed(row, "id", SnapshotId::parse)?,
        session_id: col_parsed(row, "session_id", SessionId::parse)?,
        workspace_id: col_parsed(row, "workspace_id", WorkspaceId::parse)?,
        trigger: col(row, "trigger_kind")?,
        status: col(row, "status")?,
        manifest_key: uploaded.then_some(content_key),
        size_bytes: uploaded.then(|| to_u64(size_bytes, "size_bytes")).transpose()?,
        sha256: uploaded.then_some(sha256),
        chunks: opt_u64(row, "chunks")?,
        new_chunks: opt_u64(row, "new_chunks")?,
        stored_bytes: opt_u64(row, "stored_bytes")?,
        error: col(row, "error")?,
        created_by: col_parsed_opt(row, "created_by", UserId::parse)?,
        created_at: col(row, "created_at")?,
        verified_at: col(row, "verified_at")?,
        latest: latest != 0,
    })
}

fn to_u64(value: i64, name: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("snapshot {name} {value}")))
}

fn opt_u64(row: &AnyRow, name: &str) -> Result<Option<u64>, StoreError> {
    let value: Option<i64> = col(row, name)?;
    value.map(|v| to_u64(v, name)).transpose()
}

fn to_i64(value: u64, name: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("snapshot {name}: {value} is too large")))
}

fn check_trigger(trigger: &str) -> Result<(), StoreError> {
    if SNAPSHOT_TRIGGERS.contains(&trigger) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "trigger: {trigger:?} is not one of {}",
            SNAPSHOT_TRIGGERS.join(", ")
        )))
    }
}

/// A snapshot in a state the operation cannot start from.
fn wrong_status(record: &SnapshotRecord, doing: &str) -> StoreError {
    StoreError::Invalid(format!(
        "snapshot {} is {}: it cannot be {doing}",
        record.id, record.status
    ))
}

/// Locks the session's row for the rest of `tx` (see the module's documentation). `NotFound` if
/// the session does not exist.
async fn lock_session(tx: &mut Transaction<'_, Any>, session: &str) -> Result<(), StoreError> {
    let locked =
        sqlx::query("UPDATE sessions SET latest_snapshot_id = latest_snapshot_id WHERE id = $1")
            .bind(session)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    if locked == 0 { Err(StoreError::NotFound) } else { Ok(()) }
}

async fn snapshot_in(
    tx: &mut Transaction<'_, Any>,
    id: &str,
) -> Result<Option<SnapshotRecord>, StoreError> {
    let sql = format!("{SNAPSHOT_SELECT} WHERE sn.id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut **tx).await?;
    row.as_ref().map(snapshot_from_row).transpose()
}

impl Store {
    /// Inserts a `pending` snapshot. Idempotent on id: the same id again returns the existing row
    /// unchanged (`Conflict { what: "snapshot id" }` if that row is another session's).
    /// `NotFound` if the session (or `created_by`) does not exist; `Invalid` naming `trigger` for
    /// an unknown trigger, or `workspace` if the session is in another workspace.
    pub async fn begin_snapshot(&self, s: &NewSnapshot<'_>) -> Result<SnapshotRecord, StoreError> {
        check_trigger(s.trigger)?;
        sqlx::query(
            "INSERT INTO snapshots
                 (id, session_id, workspace_id, trigger_kind, content_key, size_bytes, sha256,
                  status, created_by, created_at)
             SELECT $1, s.id, s.workspace_id, $4, '', 0, '', 'pending', $5, $6
             FROM sessions s WHERE s.id = $2 AND s.workspace_id = $3
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(s.id.as_str())
        .bind(s.session.as_str())
        .bind(s.workspace.as_str())
        .bind(s.trigger)
        .bind(s.created_by.map(UserId::as_str))
        .bind(s.at)
        .execute(&self.pool)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
            _ => StoreError::Database(e),
        })?;
        if let Some(existing) = self.snapshot_by_id(s.id).await? {
            if existing.session_id != *s.session {
                return Err(StoreError::Conflict { what: "snapshot id" });
            }
            return Ok(existing);
        }
        // Nothing inserted and nothing there: the session is missing or elsewhere.
        match self.session_by_id(s.session).await? {
            None => Err(StoreError::NotFound),
            Some(_) => Err(StoreError::Invalid(format!(
                "workspace: session {} is not in workspace {}",
                s.session, s.workspace
            ))),
        }
    }

    /// `pending` → `uploaded` with the manifest's facts. Already `uploaded` or `verified`: returns
    /// it unchanged (a retry). `failed` or `deleted`: `Invalid`. Unknown: `NotFound`.
    pub async fn snapshot_uploaded(
        &self,
        id: &SnapshotId,
        u: &UploadedSnapshot<'_>,
    ) -> Result<SnapshotRecord, StoreError> {
        if u.manifest_key.is_empty() {
            return Err(StoreError::Invalid("manifest_key: must not be empty".to_owned()));
        }
        sqlx::query(
            "UPDATE snapshots
             SET status = 'uploaded', content_key = $2, size_bytes = $3, sha256 = $4, chunks = $5,
                 new_chunks = $6, stored_bytes = $7
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id.as_str())
        .bind(u.manifest_key)
        .bind(to_i64(u.size_bytes, "size_bytes")?)
        .bind(u.sha256)
        .bind(to_i64(u.chunks, "chunks")?)
        .bind(to_i64(u.new_chunks, "new_chunks")?)
        .bind(to_i64(u.stored_bytes, "stored_bytes")?)
        .execute(&self.pool)
        .await?;
        let record = self.snapshot_by_id(id).await?.ok_or(StoreError::NotFound)?;
        match record.status.as_str() {
            "uploaded" | "verified" => Ok(record),
            _ => Err(wrong_status(&record, "marked uploaded")),
        }
    }

    /// `uploaded` (or `verified`) → `verified` (`verified_at = at`, kept if already set), and in
    /// the same transaction moves the session's pointer to it if the session has none or the
    /// pointer's `latest_snapshot_at` is before this snapshot's `created_at` (on a tie, the larger
    /// id wins); `latest_snapshot_at` then becomes its `created_at`. Returns the snapshot and
    /// whether the pointer is at it after the commit: a retried commit answers as the first one
    /// did (unless the pointer moved on since). `pending`, `failed` or `deleted`: `Invalid`.
    /// Unknown: `NotFound`.
    pub async fn commit_snapshot(
        &self,
        id: &SnapshotId,
        at: i64,
    ) -> Result<(SnapshotRecord, bool), StoreError> {
        // The session of a snapshot never changes: read outside the transaction, so that its
        // first statement is the lock.
        let before = self.snapshot_by_id(id).await?.ok_or(StoreError::NotFound)?;
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, before.session_id.as_str()).await?;
        let verified = sqlx::query(
            "UPDATE snapshots SET status = 'verified', verified_at = COALESCE(verified_at, $2)
             WHERE id = $1 AND status IN ('uploaded', 'verified')",
        )
        .bind(id.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if verified == 0 {
            let record = snapshot_in(&mut tx, id.as_str()).await?.ok_or(StoreError::NotFound)?;
            return Err(wrong_status(&record, "committed"));
        }
        sqlx::query(
            "UPDATE sessions SET latest_snapshot_id = $2, latest_snapshot_at = $3
             WHERE id = $1
               AND (latest_snapshot_id IS NULL OR latest_snapshot_at IS NULL
                    OR latest_snapshot_at < $3
                    OR (latest_snapshot_at = $3 AND latest_snapshot_id < $2))",
        )
        .bind(before.session_id.as_str())
        .bind(id.as_str())
        .bind(before.created_at)
        .execute(&mut *tx)
        .await?;
        let record = snapshot_in(&mut tx, id.as_str()).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        let moved = record.latest;
        Ok((record, moved))
    }

    /// `pending` or `uploaded` → `failed` with `error` (its first 2000 characters). A snapshot
    /// already `verified`, `failed` or `deleted` is returned unchanged. Unknown: `NotFound`.
    pub async fn fail_snapshot(
        &self,
        id: &SnapshotId,
        error: &str,
    ) -> Result<SnapshotRecord, StoreError> {
        let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
        sqlx::query(
            "UPDATE snapshots SET status = 'failed', error = $2
             WHERE id = $1 AND status IN ('pending', 'uploaded')",
        )
        .bind(id.as_str())
        .bind(error)
        .execute(&self.pool)
        .await?;
        self.snapshot_by_id(id).await?.ok_or(StoreError::NotFound)
    }

    /// A restore: points `session` at its verified snapshot `id`, whatever the pointer was, with
    /// `latest_snapshot_at = at`. `NotFound` if the snapshot is not that session's or is deleted;
    /// `Invalid` if it is not verified.
    pub async fn select_snapshot(
        &self,
        session: &SessionId,
        id: &SnapshotId,
        at: i64,
    ) -> Result<SnapshotRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, session.as_str()).await?;
        let record = snapshot_in(&mut tx, id.as_str())
            .await?
            .filter(|r| r.session_id == *session && r.status != "deleted")
            .ok_or(StoreError::NotFound)?;
        if record.status != "verified" {
            return Err(wrong_status(&record, "restored"));
        }
        sqlx::query(
            "UPDATE sessions SET latest_snapshot_id = $2, latest_snapshot_at = $3 WHERE id = $1",
        )
        .bind(session.as_str())
        .bind(id.as_str())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let record = snapshot_in(&mut tx, id.as_str()).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(record)
    }

    /// The session's snapshots but the deleted ones, newest first (`created_at`, then id).
    pub async fn snapshots_of_session(
        &self,
        session: &SessionId,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let sql = format!(
            "{SNAPSHOT_SELECT} WHERE sn.session_id = $1 AND sn.status <> 'deleted' {NEWEST_FIRST}"
        );
        let rows = sqlx::query(&sql).bind(session.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    /// The session's snapshot `id`; `None` if it is another session's, deleted or unknown.
    pub async fn snapshot_of_session(
        &self,
        session: &SessionId,
        id: &SnapshotId,
    ) -> Result<Option<SnapshotRecord>, StoreError> {
        let sql = format!(
            "{SNAPSHOT_SELECT}
             WHERE sn.id = $1 AND sn.session_id = $2 AND sn.status <> 'deleted'"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(session.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// The snapshot `id`, whatever its session and status (for workflows and activities).
    pub async fn snapshot_by_id(
        &self,
        id: &SnapshotId,
    ) -> Result<Option<SnapshotRecord>, StoreError> {
        let sql = format!("{SNAPSHOT_SELECT} WHERE sn.id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// The snapshot the session's pointer is at, if any: what a fresh container is restored from.
    pub async fn latest_snapshot(
        &self,
        session: &SessionId,
    ) -> Result<Option<SnapshotRecord>, StoreError> {
        let sql = format!("{SNAPSHOT_SELECT} WHERE s.id = $1 AND sn.id = s.latest_snapshot_id");
        let row = sqlx::query(&sql).bind(session.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// The manifest key of the snapshot the session's pointer is at, if any.
    pub async fn latest_snapshot_key(
        &self,
        session: &SessionId,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.latest_snapshot(session).await?.and_then(|r| r.manifest_key))
    }

    /// The session's newest verified snapshot older than its snapshot `before` (by `created_at`,
    /// then id), for "restore the previous one". `None` if there is none, or if `before` is not a
    /// snapshot of that session.
    pub async fn previous_verified_snapshot(
        &self,
        session: &SessionId,
        before: &SnapshotId,
    ) -> Result<Option<SnapshotRecord>, StoreError> {
        let sql = format!(
            "{SNAPSHOT_SELECT}
             JOIN snapshots b ON b.id = $2 AND b.session_id = sn.session_id
             WHERE sn.session_id = $1 AND sn.status = 'verified'
               AND (sn.created_at < b.created_at OR (sn.created_at = b.created_at AND sn.id < b.id))
             {NEWEST_FIRST} LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(session.as_str())
            .bind(before.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// Retention: marks `deleted`, and returns, the session's verified snapshots beyond the newest
    /// `keep_verified` (at least 1) and its failed ones beyond the newest `keep_failed`. Never the
    /// pointer's target, never the newest verified one, never a pending or uploaded one.
    /// `NotFound` if the session does not exist.
    pub async fn retire_snapshots(
        &self,
        session: &SessionId,
        keep_verified: u32,
        keep_failed: u32,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let keep_verified = usize::try_from(keep_verified.max(1)).unwrap_or(usize::MAX);
        let keep_failed = usize::try_from(keep_failed).unwrap_or(usize::MAX);
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, session.as_str()).await?;
        let sql = format!(
            "{SNAPSHOT_SELECT}
             WHERE sn.session_id = $1 AND sn.status IN ('verified', 'failed') {NEWEST_FIRST}"
        );
        let rows = sqlx::query(&sql).bind(session.as_str()).fetch_all(&mut *tx).await?;
        let snapshots = rows.iter().map(snapshot_from_row).collect::<Result<Vec<_>, _>>()?;
        let by_status = |status: &'static str| snapshots.iter().filter(move |r| r.status == status);
        let victims: Vec<&SnapshotRecord> = by_status("verified")
            .skip(keep_verified)
            .chain(by_status("failed").skip(keep_failed))
            .filter(|r| !r.latest)
            .collect();
        let mut retired = Vec::with_capacity(victims.len());
        for victim in victims {
            sqlx::query("UPDATE snapshots SET status = 'deleted' WHERE id = $1")
                .bind(victim.id.as_str())
                .execute(&mut *tx)
                .await?;
            retired.push(SnapshotRecord { status: "deleted".to_owned(), ..victim.clone() });
        }
        tx.commit().await?;
        Ok(retired)
    }

    /// A user's delete: marks the session's snapshot `id` deleted. The pointer's target is
    /// refused (`Invalid`), and so is a snapshot still being taken (pending or uploaded).
    /// `NotFound` if it is not that session's or already deleted.
    pub async fn delete_snapshot(
        &self,
        session: &SessionId,
        id: &SnapshotId,
    ) -> Result<SnapshotRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_session(&mut tx, session.as_str()).await?;
        let record = snapshot_in(&mut tx, id.as_str())
            .await?
            .filter(|r| r.session_id == *session && r.status != "deleted")
            .ok_or(StoreError::NotFound)?;
        if record.latest {
            return Err(StoreError::Invalid(
                "the session's latest snapshot cannot be deleted; save or restore another first"
                    .to_owned(),
            ));
        }
        if matches!(record.status.as_str(), "pending" | "uploaded") {
            return Err(StoreError::Invalid(format!(
                "snapshot {id} is still being taken; delete it once it is done"
            )));
        }
        sqlx::query("UPDATE snapshots SET status = 'deleted' WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SnapshotRecord { status: "deleted".to_owned(), ..record })
    }

    /// The session is being deleted: clears its pointer and marks every snapshot of it deleted;
    /// returns those it marked (oldest last). `NotFound` if the session does not exist.
    pub async fn retire_all_snapshots(
        &self,
        session: &SessionId,
    ) -> Result<Vec<SnapshotRecord>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let cleared = sqlx::query(
            "UPDATE sessions SET latest_snapshot_id = NULL, latest_snapshot_at = NULL WHERE id = $1",
        )
        .bind(session.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if cleared == 0 {
            return Err(StoreError::NotFound);
        }
        let sql = format!(
            "{SNAPSHOT_SELECT} WHERE sn.session_id = $1 AND sn.status <> 'deleted' {NEWEST_FIRST}"
        );
        let rows = sqlx::query(&sql).bind(session.as_str()).fetch_all(&mut *tx).await?;
        let snapshots = rows.iter().map(snapshot_from_row).collect::<Result<Vec<_>, _>>()?;
        sqlx::query("UPDATE snapshots SET status = 'deleted' WHERE session_id = $1")
            .bind(session.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(snapshots
            .into_iter()
            .map(|r| SnapshotRecord { status: "deleted".to_owned(), ..r })
            .collect())
    }

    /// The manifest keys of the workspace's uploaded and verified snapshots, sorted, each once:
    /// what garbage collection must keep (with the chunks they list).
    pub async fn live_manifest_keys(
        &self,
        workspace: &WorkspaceId,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT content_key FROM snapshots
             WHERE workspace_id = $1 AND status IN ('uploaded', 'verified') AND content_key <> ''
             ORDER BY content_key",
        )
        .bind(workspace.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| col(row, "content_key")).collect()
    }

    /// `created_at` of the session's newest snapshot with this trigger that did not fail (deleted
    /// ones count): for the least interval between manual snapshots. `Invalid` for an unknown
    /// trigger.
    pub async fn last_snapshot_at(
        &self,
        session: &SessionId,
        trigger: &str,
    ) -> Result<Option<i64>, StoreError> {
        check_trigger(trigger)?;
        let row = sqlx::query(
            "SELECT MAX(created_at) AS at FROM snapshots
             WHERE session_id = $1 AND trigger_kind = $2 AND status <> 'failed'",
        )
        .bind(session.as_str())
        .bind(trigger)
        .fetch_one(&self.pool)
        .await?;
        col(&row, "at")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_checked() {
        for trigger in SNAPSHOT_TRIGGERS {
            assert!(check_trigger(trigger).is_ok(), "{trigger}");
        }
        let err = check_trigger("cron").unwrap_err().to_string();
        assert!(err.starts_with("trigger: \"cron\" is not one of manual, sleep"), "{err}");
    }
}
