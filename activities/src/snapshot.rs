//! Snapshot activities (docs/snapshots.md). The node's two move bytes between a session's agent
//! and object storage: `snapshot.upload` streams the agent's pack of the persisted paths into
//! the workspace's chunk store and writes the manifest last; `snapshot.restore` streams a
//! verified manifest back into the agent, which stages it and swaps it in. The control plane's
//! record each step in the database, verify a manifest by reading every chunk back, move the
//! session's latest pointer, apply retention and collect garbage.
//!
//! Retries are safe everywhere: chunks are content-addressed (writing one twice writes the same
//! bytes), the manifest is keyed by the snapshot id, the database steps are idempotent, and an
//! interrupted restore leaves the agent's current files untouched.

use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

use domain::blob::BlobStore;
use domain::snapshots::{ChunkStore, SnapshotError};

/// Input of `snapshot.upload` (node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotUpload {
    pub snapshot_id: String,
    pub workspace_id: String,
    pub session_id: String,
    pub generation: u64,
    /// The session's container on this node.
    pub container: String,
    pub paths: Vec<String>,
    /// Largest amount of file content allowed (the agent refuses more before sending a byte).
    pub max_bytes: u64,
}

/// What `snapshot.upload` stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedManifest {
    pub manifest_key: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub chunks: u64,
    pub new_chunks: u64,
    pub stored_bytes: u64,
}

/// Input of `snapshot.restore` (node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRestore {
    pub snapshot_id: String,
    pub workspace_id: String,
    pub session_id: String,
    pub generation: u64,
    pub container: String,
    pub manifest_key: String,
    pub paths: Vec<String>,
}

/// Input of `snapshot.begin` (control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBegin {
    pub snapshot_id: String,
    pub session_id: String,
    pub workspace_id: String,
    /// manual, sleep, stop, restart or pre-restore.
    pub trigger: String,
    pub created_by: Option<String>,
    /// Workflow time (unix ms): the moment the files are from.
    pub at: i64,
}

/// What `snapshot.commit` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitReport {
    /// Whether the session's latest pointer moved to this snapshot (a slower concurrent
    /// snapshot that finished later does not move it back).
    pub moved: bool,
    /// Snapshots retention retired.
    pub retired: Vec<String>,
}

/// The snapshot a fresh container restores, and the one before it (offered when the latest
/// cannot be restored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatestSnapshot {
    pub snapshot_id: String,
    pub manifest_key: String,
    pub previous: Option<String>,
}

/// What the node needs to move snapshots: the object store and the secret agent tokens are
/// derived from.
#[derive(Clone)]
pub struct NodeSnapshots {
    pub blob: BlobStore,
    pub runtime_secret: Vec<u8>,
    /// A client without an overall timeout (a pack streams for as long as it takes), with a
    /// read timeout so a silent agent does not hold an activity forever.
    pub http: reqwest::Client,
}

impl NodeSnapshots {
    pub fn new(blob: BlobStore, runtime_secret: Vec<u8>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(120))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { blob, runtime_secret, http }
    }
}

/// How a snapshot or restore failure starts when the session's container is not running (so
/// there is nothing to pack, and retrying cannot help).
pub const CONTAINER_GONE: &str = "container not running";

pub(crate) fn non_retryable(message: impl Into<String>) -> ActivityError {
    ActivityError::application(ApplicationFailure::non_retryable(message.into()))
}

fn retryable(message: impl Into<String>) -> ActivityError {
    anyhow::anyhow!(message.into()).into()
}

/// The agent's `{"error": …}` body, or the status when it has none.
async fn agent_error(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    body["error"].as_str().map_or_else(|| format!("the agent answered {status}"), str::to_string)
}

/// A storage failure is worth retrying; corrupt data is not.
fn snapshot_err(e: SnapshotError) -> ActivityError {
    match e {
        SnapshotError::Corrupt { .. } | SnapshotError::BadManifest { .. } => {
            non_retryable(e.to_string())
        }
        other => retryable(other.to_string()),
    }
}

/// Packs the persisted paths through the agent on `port` and stores them.
pub(crate) async fn upload(
    node: &NodeSnapshots,
    port: u16,
    input: &SnapshotUpload,
) -> Result<UploadedManifest, ActivityError> {
    let token =
        domain::connect::agent_token(&node.runtime_secret, &input.session_id, input.generation);
    let resp = node
        .http
        .post(format!("http://127.0.0.1:{port}/snapshot/pack"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "paths": input.paths, "max_bytes": input.max_bytes }))
        .send()
        .await
        .map_err(|e| retryable(format!("reaching the session's agent: {e}")))?;
    match resp.status().as_u16() {
        200 => {}
        413 => return Err(non_retryable(format!("too large: {}", agent_error(resp).await))),
        // Another pack or restore holds the session's lock: wait for it.
        409 => return Err(retryable(agent_error(resp).await)),
        400 | 401 | 503 => {
            return Err(non_retryable(format!(
                "the agent refused the snapshot: {}",
                agent_error(resp).await
            )));
        }
        _ => return Err(retryable(agent_error(resp).await)),
    }
    // The body streams the tar; a body cut short (the agent died, the pack failed midway) is
    // an error from the reader, never a shorter snapshot.
    let stream = resp.bytes_stream().map(|r| r.map_err(std::io::Error::other));
    let reader = tokio_util::io::StreamReader::new(stream);
    let chunks = ChunkStore::for_workspace(node.blob.clone(), &input.workspace_id);
    let (manifest, stats) = chunks.upload(reader).await.map_err(snapshot_err)?;
    if manifest.size == 0 {
        return Err(retryable("the agent sent an empty stream"));
    }
    // Written last: until the manifest exists nothing refers to the new chunks.
    let key = chunks.put_manifest(&input.snapshot_id, &manifest).await.map_err(snapshot_err)?;
    Ok(UploadedManifest {
        manifest_key: key,
        size_bytes: manifest.size,
        sha256: manifest.sha256,
        chunks: stats.chunks,
        new_chunks: stats.new_chunks,
        stored_bytes: stats.stored_bytes,
    })
}

/// Streams a stored snapshot into the agent on `port`. Every chunk is checked before it is
/// sent; at the first bad one the body is cut, so the agent discards what it staged and the
/// session's current files stay as they were.
pub(crate) async fn restore(
    node: &NodeSnapshots,
    port: u16,
    input: &SnapshotRestore,
) -> Result<u64, ActivityError> {
    let chunks = ChunkStore::for_workspace(node.blob.clone(), &input.workspace_id);
    let manifest = chunks.get_manifest(&input.manifest_key).await.map_err(|e| match e {
        SnapshotError::Storage(_) => retryable(format!("reading the manifest: {e}")),
        other => non_retryable(format!("snapshot {} is damaged: {other}", input.snapshot_id)),
    })?;
    let (mut writer, pipe) = tokio::io::duplex(1 << 20);
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let reader = {
        let chunks = chunks.clone();
        let manifest = manifest.clone();
        tokio::spawn(async move {
            let result = chunks.read(&manifest, &mut writer).await;
            if let Err(e) = &result {
                let _ = failed_tx.send(e.to_string());
            }
            drop(writer);
            result
        })
    };
    // The body ends with an error item when reading failed, so the request is cut rather than
    // completed: the agent sees an incomplete stream and keeps the current files.
    let failure = futures::stream::once(failed_rx).filter_map(|r| async move {
        r.ok().map(|why| Err::<bytes::Bytes, _>(std::io::Error::other(why)))
    });
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(pipe).chain(failure));
    let token =
        domain::connect::agent_token(&node.runtime_secret, &input.session_id, input.generation);
    let paths = serde_json::to_string(&input.paths).map_err(anyhow::Error::from)?;
    let sent = node
        .http
        .post(format!("http://127.0.0.1:{port}/snapshot/restore"))
        .bearer_auth(token)
        .header("X-BurstFlare-Paths", paths)
        .header("Content-Type", "application/x-tar")
        .body(body)
        .send()
        .await;
    let read = reader.await.map_err(|e| retryable(format!("the reader task failed: {e}")))?;
    if let Err(e) = read {
        return Err(match e {
            SnapshotError::Corrupt { .. } | SnapshotError::BadManifest { .. } => non_retryable(
                format!("snapshot {} is damaged and was not restored: {e}", input.snapshot_id),
            ),
            other => retryable(format!("reading snapshot {}: {other}", input.snapshot_id)),
        });
    }
    let resp = sent.map_err(|e| retryable(format!("sending the snapshot to the agent: {e}")))?;
    match resp.status().as_u16() {
        200 => Ok(manifest.size),
        409 => Err(retryable(agent_error(resp).await)),
        s @ (400 | 401 | 413 | 503) => Err(non_retryable(format!(
            "the agent refused the restore ({s}): {}",
            agent_error(resp).await
        ))),
        _ => Err(retryable(format!("the agent could not restore: {}", agent_error(resp).await))),
    }
}

// ---- control plane ----

use domain::Store;
use domain::ids::{SessionId, SnapshotId, UserId, WorkspaceId};
use domain::store::{AuditEntry, NewSnapshot, SnapshotRecord, UploadedSnapshot};

fn parse<T>(r: Result<T, domain::ids::IdError>) -> Result<T, ActivityError> {
    r.map_err(|e| non_retryable(e.to_string()))
}

fn store_err(e: domain::StoreError) -> ActivityError {
    match e {
        domain::StoreError::Database(_) => retryable(format!("{:#}", anyhow::Error::from(e))),
        other => non_retryable(other.to_string()),
    }
}

fn audit_entry(action: &str, s: &SnapshotRecord) -> AuditEntry {
    let mut entry = AuditEntry::new(action)
        .workspace(&s.workspace_id)
        .target("snapshot", s.id.as_str())
        .detail(serde_json::json!({
            "session": s.session_id.as_str(),
            "trigger": s.trigger,
            "size_bytes": s.size_bytes,
            "stored_bytes": s.stored_bytes,
            "error": s.error,
        }));
    if let Some(user) = &s.created_by {
        entry = entry.actor(user);
    }
    entry
}

pub(crate) async fn begin(store: &Store, b: &SnapshotBegin) -> Result<(), ActivityError> {
    let id = parse(SnapshotId::parse(&b.snapshot_id))?;
    let session = parse(SessionId::parse(&b.session_id))?;
    let workspace = parse(WorkspaceId::parse(&b.workspace_id))?;
    let by = b.created_by.as_deref().map(UserId::parse).transpose();
    let by = parse(by)?;
    let new = NewSnapshot {
        id: &id,
        session: &session,
        workspace: &workspace,
        trigger: &b.trigger,
        created_by: by.as_ref(),
        at: b.at,
    };
    store.begin_snapshot(&new).await.map_err(store_err)?;
    Ok(())
}

pub(crate) async fn uploaded(
    store: &Store,
    id: &str,
    u: &UploadedManifest,
) -> Result<(), ActivityError> {
    let id = parse(SnapshotId::parse(id))?;
    let facts = UploadedSnapshot {
        manifest_key: &u.manifest_key,
        size_bytes: u.size_bytes,
        sha256: &u.sha256,
        chunks: u.chunks,
        new_chunks: u.new_chunks,
        stored_bytes: u.stored_bytes,
    };
    store.snapshot_uploaded(&id, &facts).await.map_err(store_err)?;
    Ok(())
}

/// How a verification failure starts when it removed a damaged chunk that the snapshot shares
/// with storage: uploading again stores it afresh.
pub const CHUNK_REMOVED: &str = "damaged chunk removed";

pub(crate) async fn verify(
    ctx: &temporalio_sdk::activities::ActivityContext,
    store: &Store,
    blob: BlobStore,
    workspace: &str,
    key: &str,
) -> Result<(), ActivityError> {
    let chunks = ChunkStore::for_workspace(blob, workspace);
    let work = async {
        let manifest = chunks.get_manifest(key).await.map_err(snapshot_err)?;
        let Err(e) = chunks.verify(&manifest).await else { return Ok(()) };
        let SnapshotError::Corrupt { sha256, .. } = &e else { return Err(snapshot_err(e)) };
        // A chunk this snapshot reused from an earlier one is damaged in storage. Remove it
        // (it is useless as it is), so that uploading again stores it from the live files.
        let Some(r) = manifest.chunks.iter().find(|c| &c.sha256 == sha256) else {
            return Err(snapshot_err(e));
        };
        if !chunks.remove_if_damaged(r).await.map_err(snapshot_err)? {
            return Err(snapshot_err(e));
        }
        let ws = parse(WorkspaceId::parse(workspace))?;
        let entry = AuditEntry::new("snapshot.chunk.damaged")
            .workspace(&ws)
            .target("chunk", sha256.as_str())
            .detail(serde_json::json!({ "manifest": key, "error": e.to_string() }));
        store.append_audit(&entry).await.map_err(store_err)?;
        Err(non_retryable(format!("{CHUNK_REMOVED}: {e}")))
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => { let _ = ctx.record_heartbeat(()).await; }
        }
    }
}

pub(crate) async fn commit(
    store: &Store,
    config: &crate::control::ControlSnapshots,
    id: &str,
) -> Result<CommitReport, ActivityError> {
    let id = parse(SnapshotId::parse(id))?;
    let before = store.snapshot_by_id(&id).await.map_err(store_err)?;
    let (record, moved) =
        store.commit_snapshot(&id, domain::store::now_ms()).await.map_err(store_err)?;
    if before.is_some_and(|b| b.status != "verified") {
        let mut entry = audit_entry("snapshot.verified", &record);
        if moved {
            entry = entry.detail(serde_json::json!({
                "session": record.session_id.as_str(),
                "trigger": record.trigger,
                "size_bytes": record.size_bytes,
                "stored_bytes": record.stored_bytes,
                "latest": true,
            }));
        }
        store.append_audit(&entry).await.map_err(store_err)?;
    }
    let retired = store
        .retire_snapshots(&record.session_id, config.keep, config.keep_failed)
        .await
        .map_err(store_err)?;
    for r in &retired {
        store.append_audit(&audit_entry("snapshot.retired", r)).await.map_err(store_err)?;
    }
    collect_garbage(store, config, &record.workspace_id).await;
    Ok(CommitReport { moved, retired: retired.iter().map(|r| r.id.to_string()).collect() })
}

/// Mark and sweep of the workspace's chunks; a failure is logged and retried with the next
/// snapshot (garbage costs space, never data).
async fn collect_garbage(
    store: &Store,
    config: &crate::control::ControlSnapshots,
    workspace: &WorkspaceId,
) {
    let live = match store.live_manifest_keys(workspace).await {
        Ok(live) => live,
        Err(e) => {
            tracing::warn!("snapshot gc of workspace {workspace}: {e}");
            return;
        }
    };
    let chunks = ChunkStore::for_workspace(config.blob.clone(), workspace.as_str());
    match chunks.collect_garbage(&live, config.gc_grace).await {
        Ok(report) => tracing::info!(
            "snapshot gc of workspace {workspace}: {} chunks seen, {} deleted ({} bytes), {} \
             recent kept, {} manifests deleted",
            report.chunks_seen,
            report.chunks_deleted,
            report.bytes_freed,
            report.kept_recent,
            report.manifests_deleted
        ),
        Err(e) => tracing::warn!("snapshot gc of workspace {workspace}: {e}"),
    }
}

pub(crate) async fn fail(store: &Store, id: &str, error: &str) -> Result<(), ActivityError> {
    let id = parse(SnapshotId::parse(id))?;
    let before = store.snapshot_by_id(&id).await.map_err(store_err)?;
    let record = store.fail_snapshot(&id, error).await.map_err(store_err)?;
    if record.status == "failed" && before.is_some_and(|b| b.status != "failed") {
        store.append_audit(&audit_entry("snapshot.failed", &record)).await.map_err(store_err)?;
    }
    Ok(())
}

pub(crate) async fn latest(
    store: &Store,
    session: &str,
) -> Result<Option<LatestSnapshot>, ActivityError> {
    let session = parse(SessionId::parse(session))?;
    let Some(latest) = store.latest_snapshot(&session).await.map_err(store_err)? else {
        return Ok(None);
    };
    let Some(key) = latest.manifest_key.clone() else {
        return Err(non_retryable(format!("snapshot {} has no manifest", latest.id)));
    };
    let previous =
        store.previous_verified_snapshot(&session, &latest.id).await.map_err(store_err)?;
    Ok(Some(LatestSnapshot {
        snapshot_id: latest.id.to_string(),
        manifest_key: key,
        previous: previous.map(|p| p.id.to_string()),
    }))
}

pub(crate) async fn select(
    store: &Store,
    session: &str,
    id: &str,
    at: i64,
    by: Option<&str>,
) -> Result<(), ActivityError> {
    let session = parse(SessionId::parse(session))?;
    let id = parse(SnapshotId::parse(id))?;
    let record = store.select_snapshot(&session, &id, at).await.map_err(store_err)?;
    let mut entry = audit_entry("snapshot.restored", &record);
    if let Some(by) = by {
        entry = entry.actor(&parse(UserId::parse(by))?);
    }
    store.append_audit(&entry).await.map_err(store_err)?;
    Ok(())
}

pub(crate) async fn retire_all(
    store: &Store,
    config: Option<&crate::control::ControlSnapshots>,
    session: &str,
) -> Result<u32, ActivityError> {
    let session = parse(SessionId::parse(session))?;
    let retired = store.retire_all_snapshots(&session).await.map_err(store_err)?;
    for r in &retired {
        store.append_audit(&audit_entry("snapshot.retired", r)).await.map_err(store_err)?;
    }
    if let (Some(config), Some(first)) = (config, retired.first()) {
        collect_garbage(store, config, &first.workspace_id).await;
    }
    Ok(u32::try_from(retired.len()).unwrap_or(u32::MAX))
}
