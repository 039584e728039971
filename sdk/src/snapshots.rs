//! Snapshots of a session's persisted paths (docs/snapshots.md): what the API answers for
//! `…/sessions/{id}/snapshots`.

use serde::{Deserialize, Serialize};

/// Why a snapshot was taken.
pub const SNAPSHOT_TRIGGERS: [&str; 5] = ["manual", "sleep", "stop", "restart", "pre-restore"];

/// Where a snapshot is: `pending` (packing and uploading), `uploaded` (the manifest is written,
/// not yet verified), `verified` (restorable), `failed` (see `error`), `deleted` (retired;
/// its chunks are collected once nothing else uses them).
pub const SNAPSHOT_STATUSES: [&str; 5] = ["pending", "uploaded", "verified", "failed", "deleted"];

/// One snapshot of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub session_id: String,
    /// One of [`SNAPSHOT_TRIGGERS`].
    pub trigger: String,
    /// One of [`SNAPSHOT_STATUSES`].
    pub status: String,
    /// Bytes of the packed persisted paths (the tar stream), once uploaded.
    pub size_bytes: Option<u64>,
    /// Compressed bytes this snapshot added to storage (unchanged chunks are not stored twice).
    pub stored_bytes: Option<u64>,
    pub chunks: Option<u64>,
    pub new_chunks: Option<u64>,
    /// Why it failed, for `failed`.
    pub error: Option<String>,
    /// Who asked (user id), `None` when the platform took it (sleep, stop, restart).
    pub created_by: Option<String>,
    /// Unix milliseconds when packing began: the moment the files are from.
    pub created_at: i64,
    pub verified_at: Option<i64>,
    /// Whether the session's next start restores this one.
    pub latest: bool,
}

/// `POST …/snapshots/{id}/restore`: what happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub snapshot: Snapshot,
    /// `now` (a running session's files were replaced) or `next_start` (a session that is not
    /// running restores it when it starts).
    pub applied: String,
    /// For `now`: the snapshot of the files as they were just before, so the restore itself
    /// can be undone.
    pub safety_snapshot: Option<String>,
}

pub fn snapshot_is_final(status: &str) -> bool {
    matches!(status, "verified" | "failed" | "deleted")
}
