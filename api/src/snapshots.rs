//! Snapshots of a session's persisted paths (docs/snapshots.md): list, "Save now", restore and
//! delete, for the API and the web pages alike. Taking and restoring run as the `Snapshot` and
//! `Restore` workflows; this module checks who may, refuses what cannot work with a reason,
//! starts them and (when asked) waits for the outcome.

use std::time::Duration;

use domain::ids::SnapshotId;
use domain::store::{SessionRecord, SnapshotRecord};
use sdk::bundle::Manifest;
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};

use crate::auth::{Principal, RequestMeta};
use crate::routes::WorkspaceCtx;
use crate::{AppError, AppState};

/// How long a request waits for a snapshot or a restore before answering with where it is.
const WAIT: Duration = Duration::from_secs(600);

pub fn view(r: &SnapshotRecord) -> sdk::Snapshot {
    sdk::Snapshot {
        id: r.id.to_string(),
        session_id: r.session_id.to_string(),
        trigger: r.trigger.clone(),
        status: r.status.clone(),
        size_bytes: r.size_bytes,
        stored_bytes: r.stored_bytes,
        chunks: r.chunks,
        new_chunks: r.new_chunks,
        error: r.error.clone(),
        created_by: r.created_by.as_ref().map(ToString::to_string),
        created_at: r.created_at,
        verified_at: r.verified_at,
        latest: r.latest,
    }
}

/// The persisted paths of a session's template version and the largest snapshot allowed: the
/// smallest of the configured default, the template's `max_snapshot_bytes` and the plan's.
pub async fn policy(
    state: &AppState,
    manifest: &Manifest,
    workspace: &domain::ids::WorkspaceId,
) -> Result<(Vec<String>, u64), AppError> {
    let plan = state.store.session_limits(workspace).await?.max_snapshot_bytes;
    let max = [Some(state.config.snapshots.max_bytes), manifest.max_snapshot_bytes, plan]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(state.config.snapshots.max_bytes);
    Ok((manifest.persisted_paths.clone(), max))
}

async fn session_policy(
    state: &AppState,
    s: &SessionRecord,
) -> Result<(Vec<String>, u64), AppError> {
    let version = state.store.version_by_id(&s.version_id).await?.ok_or(AppError::NotFound)?;
    let manifest: Manifest = serde_json::from_str(&version.manifest_json)
        .map_err(|e| anyhow::anyhow!("the manifest of version {}: {e}", version.id))?;
    policy(state, &manifest, &s.workspace_id).await
}

async fn session(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<SessionRecord, AppError> {
    let s =
        state.store.session_in_workspace(&ctx.workspace.id, id).await?.ok_or(AppError::NotFound)?;
    if s.state == "deleted" {
        return Err(AppError::NotFound);
    }
    Ok(s)
}

/// Only the session's owner takes and restores snapshots; owners and admins may also delete
/// anyone's (as they may delete the session).
fn may(
    principal: &Principal,
    ctx: &WorkspaceCtx,
    s: &SessionRecord,
    delete: bool,
) -> Result<(), AppError> {
    let own = s.owner == principal.user.id;
    let manage =
        delete && domain::policy::allows(ctx.role, domain::policy::Permission::ManageAnySession);
    if own || manage {
        Ok(())
    } else {
        Err(AppError::Forbidden("this session belongs to someone else"))
    }
}

fn parse_snapshot_id(raw: &str) -> Result<SnapshotId, AppError> {
    // An id that cannot be one is simply not found.
    SnapshotId::parse(raw).map_err(|_| AppError::NotFound)
}

async fn audit(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    action: &str,
    snapshot: &str,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    let target = ("snapshot", snapshot.to_string());
    crate::workspaces::audit(state, meta, principal, &ctx.workspace, action, target, detail).await
}

pub async fn list(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<Vec<sdk::Snapshot>, AppError> {
    let s = session(state, ctx, id).await?;
    Ok(state.store.snapshots_of_session(&s.id).await?.iter().map(view).collect())
}

pub async fn get(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
    snapshot: &str,
) -> Result<sdk::Snapshot, AppError> {
    let s = session(state, ctx, id).await?;
    let sid = parse_snapshot_id(snapshot)?;
    let r = state.store.snapshot_of_session(&s.id, &sid).await?.ok_or(AppError::NotFound)?;
    Ok(view(&r))
}

fn target(
    s: &SessionRecord,
    paths: Vec<String>,
    max_bytes: u64,
) -> Result<workflows::SnapshotTarget, AppError> {
    let node = s.node_id.clone().ok_or_else(|| {
        AppError::Conflict(format!("the session is {} and has no runtime host yet", s.state))
    })?;
    Ok(workflows::SnapshotTarget {
        session_id: s.id.to_string(),
        workspace_id: s.workspace_id.to_string(),
        node,
        generation: s.generation,
        container: activities::runtime::container_name(s.id.as_str(), s.generation),
        paths,
        max_bytes,
    })
}

/// "Save now": a snapshot of a running session. Refused while it is not running, when its
/// template persists nothing, and sooner than `snapshots.min_interval_secs` after the last one.
pub async fn save(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
    wait: bool,
) -> Result<sdk::Snapshot, AppError> {
    let s = session(state, ctx, id).await?;
    may(principal, ctx, &s, false)?;
    if s.state != "running" {
        return Err(AppError::Conflict(format!(
            "the session is {}: only a running session can be snapshotted (start it first; its \
             latest snapshot is kept meanwhile)",
            s.state
        )));
    }
    let (paths, max_bytes) = session_policy(state, &s).await?;
    if paths.is_empty() {
        return Err(AppError::Conflict(
            "the session's template has no persisted_paths, so there is nothing to snapshot".into(),
        ));
    }
    let min = state.config.snapshots.min_interval_secs;
    if let Some(last) = state.store.last_snapshot_at(&s.id, "manual").await? {
        let age = (domain::store::now_ms() - last).max(0) / 1000;
        if age < i64::try_from(min).unwrap_or(i64::MAX) {
            return Err(AppError::TooSoon(format!(
                "snapshots.min_interval_secs: the last manual snapshot of this session is {age} s \
                 old and the least interval is {min} s; try again in {} s",
                i64::try_from(min).unwrap_or(i64::MAX) - age
            )));
        }
    }
    let snapshot_id = SnapshotId::new();
    let input = workflows::SnapshotInput {
        snapshot_id: snapshot_id.to_string(),
        target: target(&s, paths, max_bytes)?,
        trigger: "manual".into(),
        requested_by: Some(principal.user.id.to_string()),
    };
    let client = state
        .temporal
        .client()
        .await
        .map_err(|_| AppError::Unavailable("Temporal is not reachable; retry"))?;
    let workflow_id = format!("snapshot-{snapshot_id}");
    let opts =
        WorkflowStartOptions::new(state.config.temporal.task_queue.clone(), workflow_id.clone())
            .build();
    let handle =
        client.start_workflow(workflows::Snapshot::run, input, opts).await.map_err(|e| {
            tracing::warn!("starting {workflow_id}: {e}");
            AppError::Unavailable("the snapshot could not be started; retry")
        })?;
    audit(
        state,
        meta,
        principal,
        ctx,
        "snapshot.requested",
        snapshot_id.as_str(),
        serde_json::json!({ "session": s.id.as_str(), "name": s.name, "trigger": "manual" }),
    )
    .await?;
    if wait {
        let outcome =
            tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
                .await;
        if let Ok(Ok(outcome)) = outcome
            && outcome.too_large
        {
            return Err(AppError::InvalidField {
                field: "max_bytes".into(),
                message: format!(
                    "{}; the session keeps running: delete files from its persisted paths or raise \
                     the template's max_snapshot_bytes",
                    outcome.error.unwrap_or_default().trim_start_matches("too large: ")
                ),
                too_large: true,
            });
        }
    }
    // Without waiting (or once done), answer with the row as it is. The workflow writes it
    // first thing; until then it is pending by definition.
    for _ in 0..40 {
        if let Some(r) = state.store.snapshot_of_session(&s.id, &snapshot_id).await? {
            return Ok(view(&r));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(sdk::Snapshot {
        id: snapshot_id.to_string(),
        session_id: s.id.to_string(),
        trigger: "manual".into(),
        status: "pending".into(),
        size_bytes: None,
        stored_bytes: None,
        chunks: None,
        new_chunks: None,
        error: None,
        created_by: Some(principal.user.id.to_string()),
        created_at: domain::store::now_ms(),
        verified_at: None,
        latest: false,
    })
}

/// Restores a verified snapshot: into a running session now (after a safety snapshot of its
/// current files), or for any other session at its next start.
pub async fn restore(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
    snapshot: &str,
) -> Result<sdk::RestoreOutcome, AppError> {
    let s = session(state, ctx, id).await?;
    may(principal, ctx, &s, false)?;
    let sid = parse_snapshot_id(snapshot)?;
    let r = state.store.snapshot_of_session(&s.id, &sid).await?.ok_or(AppError::NotFound)?;
    if r.status != "verified" {
        return Err(AppError::Conflict(format!(
            "snapshot {} is {}; only verified snapshots can be restored",
            r.id, r.status
        )));
    }
    let detail = serde_json::json!({ "session": s.id.as_str(), "name": s.name, "from": s.state });
    match s.state.as_str() {
        "running" => {}
        "sleeping" | "stopped" | "failed" => {
            let at = domain::store::now_ms();
            let r = state.store.select_snapshot(&s.id, &sid, at).await?;
            audit(state, meta, principal, ctx, "snapshot.restored", r.id.as_str(), detail).await?;
            return Ok(sdk::RestoreOutcome {
                snapshot: view(&r),
                applied: "next_start".into(),
                safety_snapshot: None,
            });
        }
        other => {
            return Err(AppError::Conflict(format!(
                "the session is {other}; restore once it is running, sleeping or stopped"
            )));
        }
    }
    let (paths, max_bytes) = session_policy(state, &s).await?;
    let manifest_key = r
        .manifest_key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("verified snapshot {} has no manifest", r.id))?;
    let safety = SnapshotId::new();
    let input = workflows::RestoreInput {
        target: target(&s, paths, max_bytes)?,
        snapshot_id: sid.to_string(),
        manifest_key,
        safety_snapshot_id: safety.to_string(),
        requested_by: Some(principal.user.id.to_string()),
    };
    let client = state
        .temporal
        .client()
        .await
        .map_err(|_| AppError::Unavailable("Temporal is not reachable; retry"))?;
    let workflow_id = format!("restore-{}-{safety}", s.id);
    let opts =
        WorkflowStartOptions::new(state.config.temporal.task_queue.clone(), workflow_id.clone())
            .build();
    let handle =
        client.start_workflow(workflows::Restore::run, input, opts).await.map_err(|e| {
            tracing::warn!("starting {workflow_id}: {e}");
            AppError::Unavailable("the restore could not be started; retry")
        })?;
    audit(state, meta, principal, ctx, "snapshot.restore.requested", sid.as_str(), detail).await?;
    let outcome =
        tokio::time::timeout(WAIT, handle.get_result(WorkflowGetResultOptions::default()))
            .await
            .map_err(|_| {
                AppError::Unavailable("the restore is still running; check the snapshot list")
            })?
            .map_err(|e| {
                tracing::warn!("{workflow_id}: {e}");
                AppError::Unavailable("the restore did not finish; check the session's events")
            })?;
    if !outcome.restored {
        return Err(AppError::Conflict(format!(
            "restoring snapshot {sid} failed: {}",
            outcome.error.unwrap_or_default()
        )));
    }
    let r = state.store.snapshot_of_session(&s.id, &sid).await?.ok_or(AppError::NotFound)?;
    Ok(sdk::RestoreOutcome {
        snapshot: view(&r),
        applied: "now".into(),
        safety_snapshot: outcome.safety_snapshot,
    })
}

/// Retires a snapshot (its chunks are collected once nothing else uses them). The session's
/// latest snapshot cannot be deleted.
pub async fn delete(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
    snapshot: &str,
) -> Result<sdk::Snapshot, AppError> {
    let s = session(state, ctx, id).await?;
    may(principal, ctx, &s, true)?;
    let sid = parse_snapshot_id(snapshot)?;
    let r = state.store.delete_snapshot(&s.id, &sid).await.map_err(|e| match e {
        domain::StoreError::Invalid(m) => AppError::Conflict(m),
        other => other.into(),
    })?;
    let detail =
        serde_json::json!({ "session": s.id.as_str(), "name": s.name, "trigger": r.trigger });
    audit(state, meta, principal, ctx, "snapshot.deleted", r.id.as_str(), detail).await?;
    Ok(view(&r))
}
