//! `Snapshot` and `Restore` (docs/snapshots.md).
//!
//! `Snapshot`, id `snapshot-<snapshot id>`: begin (a pending row) → upload on the session's
//! node (the agent packs the persisted paths, the node stores content-addressed chunks, reads
//! each new one back and writes the manifest last) → uploaded → verify (the control plane reads
//! the manifest and every chunk back) → commit (verified; the session's latest pointer moves
//! only if no newer snapshot is there; retention and garbage collection). Any failure is
//! recorded on the snapshot and audited, and the workflow completes with the outcome, so the
//! caller (the Session workflow's sleep saga, or the API's "Save now") decides what to do.
//!
//! `Restore`, id `restore-<session id>-<n>`: a safety snapshot of the current files
//! (`pre-restore`) → the node streams the chosen snapshot, verified chunk by chunk, into the
//! agent, which stages it and swaps it in → the session's pointer moves to the restored
//! snapshot. A failure at any step leaves the current files and the latest pointer as they were.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ChildWorkflowOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use activities::ControlActivities;
use activities::NodeActivities;
use activities::snapshot::{SnapshotBegin, SnapshotRestore, SnapshotUpload};

/// Longest a pack and upload may run.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where the session is and what to pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotTarget {
    pub session_id: String,
    pub workspace_id: String,
    pub node: String,
    pub generation: u64,
    /// The container's name on the node.
    pub container: String,
    pub paths: Vec<String>,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInput {
    pub snapshot_id: String,
    pub target: SnapshotTarget,
    /// manual, sleep, stop, restart or pre-restore.
    pub trigger: String,
    /// The user who asked, for manual and pre-restore snapshots.
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotOutcome {
    pub snapshot_id: String,
    /// verified or failed.
    pub status: String,
    pub error: Option<String>,
    /// The snapshot was refused because the persisted paths hold more than `max_bytes`.
    pub too_large: bool,
    /// The session's container was not running, so there was nothing to pack.
    #[serde(default)]
    pub container_gone: bool,
    /// Whether the session's latest pointer moved to it.
    pub latest: bool,
    pub size_bytes: Option<u64>,
}

fn retry(attempts: u32, max: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(max)
        .maximum_attempts(attempts)
        .build()
}

fn control_call() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retry(30, Duration::from_secs(20)))
        .build()
}

fn failure_text(e: &ActivityExecutionError) -> String {
    let Some(mut f) = e.failure() else { return e.to_string() };
    while let Some(cause) = f.cause.as_deref() {
        f = cause;
    }
    f.message.clone()
}

fn now_ms<W>(ctx: &WorkflowContext<W>) -> i64 {
    ctx.workflow_time()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[workflow]
#[derive(Default)]
pub struct Snapshot {
    step: String,
}

#[workflow_methods]
impl Snapshot {
    #[run(name = "Snapshot")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: SnapshotInput,
    ) -> WorkflowResult<SnapshotOutcome> {
        let id = input.snapshot_id.clone();
        let t = &input.target;
        ctx.state_mut(|s| s.step = "begin".into());
        let at = now_ms(ctx);
        let begin = SnapshotBegin {
            snapshot_id: id.clone(),
            session_id: t.session_id.clone(),
            workspace_id: t.workspace_id.clone(),
            trigger: input.trigger.clone(),
            created_by: input.requested_by.clone(),
            at,
        };
        ctx.execute_activity(ControlActivities::snapshot_begin, begin, control_call()).await?;

        // A second round only when verification found (and removed) a damaged chunk that this
        // snapshot reused: uploading again stores it from the live files.
        let mut round = 0;
        let size = loop {
            round += 1;
            ctx.state_mut(|s| s.step = "packing and uploading".into());
            let upload = SnapshotUpload {
                snapshot_id: id.clone(),
                workspace_id: t.workspace_id.clone(),
                session_id: t.session_id.clone(),
                generation: t.generation,
                container: t.container.clone(),
                paths: t.paths.clone(),
                max_bytes: t.max_bytes,
            };
            let opts = ActivityOptions::with_start_to_close_timeout(UPLOAD_TIMEOUT)
                .task_queue(activities::node_task_queue(&t.node))
                .schedule_to_start_timeout(Duration::from_secs(120))
                .heartbeat_timeout(Duration::from_secs(30))
                .retry_policy(retry(6, Duration::from_secs(30)))
                .build();
            let uploaded =
                match ctx.execute_activity(NodeActivities::snapshot_upload, upload, opts).await {
                    Ok(u) => u,
                    Err(e) => return Self::failed(ctx, &id, &failure_text(&e)).await,
                };
            ctx.execute_activity(
                ControlActivities::snapshot_uploaded,
                (id.clone(), uploaded.clone()),
                control_call(),
            )
            .await?;

            ctx.state_mut(|s| s.step = "verifying".into());
            let opts = ActivityOptions::with_start_to_close_timeout(UPLOAD_TIMEOUT)
                .heartbeat_timeout(Duration::from_secs(30))
                .retry_policy(retry(5, Duration::from_secs(30)))
                .build();
            match ctx
                .execute_activity(
                    ControlActivities::snapshot_verify,
                    (t.workspace_id.clone(), uploaded.manifest_key.clone()),
                    opts,
                )
                .await
            {
                Ok(()) => break uploaded.size_bytes,
                Err(e) => {
                    let why = failure_text(&e);
                    if round == 1 && why.starts_with(activities::snapshot::CHUNK_REMOVED) {
                        continue;
                    }
                    let why = format!("verification failed: {why}");
                    return Self::failed(ctx, &id, &why).await;
                }
            }
        };

        ctx.state_mut(|s| s.step = "committing".into());
        let report = ctx
            .execute_activity(ControlActivities::snapshot_commit, id.clone(), control_call())
            .await?;
        ctx.state_mut(|s| s.step = "done".into());
        Ok(SnapshotOutcome {
            snapshot_id: id,
            status: "verified".into(),
            error: None,
            too_large: false,
            container_gone: false,
            latest: report.moved,
            size_bytes: Some(size),
        })
    }

    #[query(name = "step")]
    pub fn step(&self, _ctx: &WorkflowContextView) -> String {
        self.step.clone()
    }
}

impl Snapshot {
    async fn failed(
        ctx: &mut WorkflowContext<Self>,
        id: &str,
        why: &str,
    ) -> WorkflowResult<SnapshotOutcome> {
        ctx.state_mut(|s| s.step = "failed".into());
        ctx.execute_activity(
            ControlActivities::snapshot_fail,
            (id.to_string(), why.to_string()),
            control_call(),
        )
        .await?;
        Ok(SnapshotOutcome {
            snapshot_id: id.to_string(),
            status: "failed".into(),
            error: Some(why.to_string()),
            too_large: why.starts_with("too large: "),
            container_gone: why.starts_with(activities::snapshot::CONTAINER_GONE),
            latest: false,
            size_bytes: None,
        })
    }
}

/// Runs a `Snapshot` as a child of the calling workflow and returns its outcome.
pub async fn snapshot_child<W>(
    ctx: &mut WorkflowContext<W>,
    input: SnapshotInput,
) -> WorkflowResult<SnapshotOutcome> {
    let opts = ChildWorkflowOptions::workflow_id(format!("snapshot-{}", input.snapshot_id));
    let started = ctx.start_child_workflow(Snapshot::run, input, opts).await?;
    Ok(started.result().await?)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInput {
    pub target: SnapshotTarget,
    pub snapshot_id: String,
    pub manifest_key: String,
    /// Id for the safety snapshot of the current files.
    pub safety_snapshot_id: String,
    pub requested_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub restored: bool,
    pub error: Option<String>,
    pub safety_snapshot: Option<String>,
}

#[workflow]
#[derive(Default)]
pub struct Restore {
    step: String,
}

#[workflow_methods]
impl Restore {
    #[run(name = "Restore")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: RestoreInput,
    ) -> WorkflowResult<RestoreOutcome> {
        let t = input.target.clone();
        ctx.state_mut(|s| s.step = "saving the current files".into());
        let safety = SnapshotInput {
            snapshot_id: input.safety_snapshot_id.clone(),
            target: t.clone(),
            trigger: "pre-restore".into(),
            requested_by: input.requested_by.clone(),
        };
        let saved = snapshot_child(ctx, safety).await?;
        if saved.status != "verified" {
            return Ok(RestoreOutcome {
                restored: false,
                error: Some(format!(
                    "the current files could not be saved first, so nothing was changed: {}",
                    saved.error.unwrap_or_default()
                )),
                safety_snapshot: None,
            });
        }
        ctx.state_mut(|s| s.step = "restoring".into());
        let restore = SnapshotRestore {
            snapshot_id: input.snapshot_id.clone(),
            workspace_id: t.workspace_id.clone(),
            session_id: t.session_id.clone(),
            generation: t.generation,
            container: t.container.clone(),
            manifest_key: input.manifest_key.clone(),
            paths: t.paths.clone(),
        };
        let opts = ActivityOptions::with_start_to_close_timeout(UPLOAD_TIMEOUT)
            .task_queue(activities::node_task_queue(&t.node))
            .schedule_to_start_timeout(Duration::from_secs(120))
            .heartbeat_timeout(Duration::from_secs(30))
            .retry_policy(retry(5, Duration::from_secs(30)))
            .build();
        if let Err(e) = ctx.execute_activity(NodeActivities::snapshot_restore, restore, opts).await
        {
            return Ok(RestoreOutcome {
                restored: false,
                error: Some(format!(
                    "{}; the session's files are unchanged (saved as snapshot {})",
                    failure_text(&e),
                    saved.snapshot_id
                )),
                safety_snapshot: Some(saved.snapshot_id),
            });
        }
        ctx.state_mut(|s| s.step = "recording".into());
        let at = now_ms(ctx);
        ctx.execute_activity(
            ControlActivities::snapshot_select,
            (t.session_id.clone(), input.snapshot_id.clone(), at, input.requested_by.clone()),
            control_call(),
        )
        .await?;
        ctx.state_mut(|s| s.step = "done".into());
        Ok(RestoreOutcome { restored: true, error: None, safety_snapshot: Some(saved.snapshot_id) })
    }

    #[query(name = "step")]
    pub fn step(&self, _ctx: &WorkflowContextView) -> String {
        self.step.clone()
    }
}
