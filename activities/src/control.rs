//! Control-plane activities: the ones that touch the database and object storage.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use domain::Store;

use crate::snapshot::{CommitReport, LatestSnapshot, SnapshotBegin, UploadedManifest};

pub struct ControlActivities {
    store: Store,
    identity: String,
    snapshots: Option<ControlSnapshots>,
    cloudflare: Option<crate::promotion::CloudflarePublisher>,
}

/// What the control plane needs for snapshots: the object store and the retention policy.
#[derive(Clone)]
pub struct ControlSnapshots {
    pub blob: domain::blob::BlobStore,
    /// Verified snapshots kept per session (the latest is always kept).
    pub keep: u32,
    /// Failed snapshots kept per session, for the record.
    pub keep_failed: u32,
    /// Unreferenced chunks younger than this are never collected.
    pub gc_grace: std::time::Duration,
}

impl ControlActivities {
    pub fn new(store: Store) -> Self {
        Self { store, identity: crate::worker_identity(), snapshots: None, cloudflare: None }
    }

    /// Publish every catalog change to the Cloudflare runtime target (`[cloudflare]`).
    #[must_use]
    pub fn with_cloudflare(mut self, cloudflare: crate::promotion::CloudflarePublisher) -> Self {
        self.cloudflare = Some(cloudflare);
        self
    }

    #[must_use]
    pub fn with_snapshots(mut self, snapshots: ControlSnapshots) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    fn snapshot_config(&self) -> Result<&ControlSnapshots, ActivityError> {
        self.snapshots.as_ref().ok_or_else(|| {
            crate::snapshot::non_retryable("this worker has no object storage configured")
        })
    }
}

/// What the `self_check.record` activity wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfCheckRecord {
    pub workflow_id: String,
    /// Unix milliseconds of the first (and only) row for this workflow.
    pub checked_at: i64,
    pub worker: String,
}

#[activities]
impl ControlActivities {
    /// Writes one `self_checks` row for the calling workflow. Idempotent: a retry or a
    /// replayed schedule of the same workflow returns the row written first.
    #[activity(name = "self_check.record")]
    pub async fn record_self_check(
        self: Arc<Self>,
        ctx: ActivityContext,
        _input: (),
    ) -> Result<SelfCheckRecord, ActivityError> {
        let workflow_id = ctx
            .info()
            .workflow_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("self_check.record must run inside a workflow"))?;
        let row = self
            .store
            .record_self_check(&workflow_id, &self.identity)
            .await
            .map_err(anyhow::Error::from)?;
        Ok(SelfCheckRecord {
            workflow_id: row.workflow_id,
            checked_at: row.checked_at,
            worker: row.worker,
        })
    }

    /// Records a build's new state, and its version's: the workflow is the only writer of
    /// both. Idempotent: a state the build is already in, or a build that has finished,
    /// changes nothing. A finished build writes one audit event, the first time only.
    #[activity(name = "build.transition")]
    pub async fn build_transition(
        self: Arc<Self>,
        _ctx: ActivityContext,
        t: BuildTransition,
    ) -> Result<String, ActivityError> {
        let id = domain::ids::TemplateBuildId::parse(&t.build_id).map_err(anyhow::Error::from)?;
        let image = t.image.as_ref().map(|(r, d)| (r.as_str(), d.as_str()));
        let (build, changed) = self
            .store
            .set_build_status(&id, &t.to, t.error.as_deref(), image)
            .await
            .map_err(anyhow::Error::from)?;
        let version_status = match build.status.as_str() {
            "validating" | "building" | "pushing" => Some("building"),
            "succeeded" => Some("built"),
            "failed" | "cancelled" => Some("failed"),
            _ => None,
        };
        if let Some(status) = version_status {
            let image = match (&build.image_ref, &build.image_digest) {
                (Some(r), Some(d)) if status == "built" => Some((r.as_str(), d.as_str())),
                _ => None,
            };
            self.store
                .set_version_status(&build.version_id, status, image)
                .await
                .map_err(anyhow::Error::from)?;
        }
        if changed && sdk::build_is_final(&build.status) {
            let mut detail = serde_json::json!({
                "template": build.template_name,
                "version": build.version,
                "attempt": build.attempt,
                "workflow_id": build.workflow_id,
            });
            if let Some(d) = &build.image_digest {
                detail["digest"] = serde_json::json!(d);
            }
            if let Some(e) = &build.error {
                detail["error"] = serde_json::json!(e);
            }
            let entry = domain::store::AuditEntry::new(format!("template.build.{}", build.status))
                .workspace(&build.workspace_id)
                .target("template_build", build.id.as_str())
                .detail(detail);
            self.store.append_audit(&entry).await.map_err(anyhow::Error::from)?;
        }
        // Build minutes count toward the workspace's usage, once per attempt that ran (a
        // retried transition finds the event recorded already).
        if let (true, Some(started), Some(finished)) =
            (sdk::build_is_final(&build.status), build.started_at, build.finished_at)
        {
            let minutes = ((finished - started).max(0) + 59_999) / 60_000;
            self.store
                .record_usage(
                    &build.workspace_id,
                    build.requested_by.as_ref(),
                    domain::store::USAGE_BUILD_MINUTES,
                    minutes.max(1),
                    finished,
                    &format!("{}:build_minutes", build.workflow_id),
                )
                .await
                .map_err(anyhow::Error::from)?;
        }
        Ok(build.status)
    }

    /// Picks the runtime host for a session: the least loaded of the hosts seen in the last
    /// 90 s. Retried while none is online.
    #[activity(name = "session.pick_node")]
    pub async fn pick_node(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _session_id: String,
    ) -> Result<String, ActivityError> {
        let since = domain::store::now_ms() - 90_000;
        let nodes = self.store.live_nodes(since).await.map_err(anyhow::Error::from)?;
        nodes.first().map(|n| n.id.clone()).ok_or_else(|| {
            anyhow::anyhow!("no runtime host is online (start `burstflare node`)").into()
        })
    }

    /// The object key of the session's latest verified snapshot, if any.
    #[activity(name = "session.latest_snapshot")]
    pub async fn latest_snapshot(
        self: Arc<Self>,
        _ctx: ActivityContext,
        session_id: String,
    ) -> Result<Option<String>, ActivityError> {
        let id = domain::ids::SessionId::parse(&session_id).map_err(anyhow::Error::from)?;
        Ok(self.store.latest_snapshot_key(&id).await.map_err(anyhow::Error::from)?)
    }

    /// Records a snapshot as begun (pending). Idempotent on the snapshot id.
    #[activity(name = "snapshot.begin")]
    pub async fn snapshot_begin(
        self: Arc<Self>,
        _ctx: ActivityContext,
        b: SnapshotBegin,
    ) -> Result<(), ActivityError> {
        crate::snapshot::begin(&self.store, &b).await
    }

    /// Records that a snapshot's chunks and manifest are stored. Idempotent.
    #[activity(name = "snapshot.uploaded")]
    pub async fn snapshot_uploaded(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (String, UploadedManifest),
    ) -> Result<(), ActivityError> {
        crate::snapshot::uploaded(&self.store, &input.0, &input.1).await
    }

    /// Reads a snapshot's manifest and every chunk back and checks sizes and hashes; a damaged
    /// snapshot fails for good. Writes nothing. Input: (workspace id, manifest key).
    #[activity(name = "snapshot.verify")]
    pub async fn snapshot_verify(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: (String, String),
    ) -> Result<(), ActivityError> {
        let blob = self.snapshot_config()?.blob.clone();
        crate::snapshot::verify(&ctx, &self.store, blob, &input.0, &input.1).await
    }

    /// Marks a verified snapshot and moves the session's latest pointer to it unless a newer
    /// one is there already; then applies retention and collects unreferenced chunks (best
    /// effort). Idempotent.
    #[activity(name = "snapshot.commit")]
    pub async fn snapshot_commit(
        self: Arc<Self>,
        _ctx: ActivityContext,
        snapshot_id: String,
    ) -> Result<CommitReport, ActivityError> {
        let config = self.snapshot_config()?.clone();
        crate::snapshot::commit(&self.store, &config, &snapshot_id).await
    }

    /// Records a snapshot as failed, with why (a verified one is left as it is).
    #[activity(name = "snapshot.fail")]
    pub async fn snapshot_fail(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (String, String),
    ) -> Result<(), ActivityError> {
        crate::snapshot::fail(&self.store, &input.0, &input.1).await
    }

    /// The snapshot a fresh container of the session restores, if any.
    #[activity(name = "snapshot.latest")]
    pub async fn snapshot_latest(
        self: Arc<Self>,
        _ctx: ActivityContext,
        session_id: String,
    ) -> Result<Option<LatestSnapshot>, ActivityError> {
        crate::snapshot::latest(&self.store, &session_id).await
    }

    /// After a restore: points the session at the restored snapshot. Input: (session id,
    /// snapshot id, workflow time, who asked).
    #[activity(name = "snapshot.select")]
    pub async fn snapshot_select(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (String, String, i64, Option<String>),
    ) -> Result<(), ActivityError> {
        crate::snapshot::select(&self.store, &input.0, &input.1, input.2, input.3.as_deref()).await
    }

    /// A deleted session's snapshots are retired and their chunks collected.
    #[activity(name = "snapshot.retire_all")]
    pub async fn snapshot_retire_all(
        self: Arc<Self>,
        _ctx: ActivityContext,
        session_id: String,
    ) -> Result<u32, ActivityError> {
        crate::snapshot::retire_all(&self.store, self.snapshots.as_ref(), &session_id).await
    }

    /// Records where a promotion is; its end is audited once.
    #[activity(name = "promotion.update")]
    pub async fn promotion_update(
        self: Arc<Self>,
        _ctx: ActivityContext,
        step: crate::promotion::PromotionStep,
    ) -> Result<(), ActivityError> {
        crate::promotion::update(&self.store, &step).await
    }

    /// Changes the runtime catalog: one revision per change, idempotent by its change key.
    #[activity(name = "catalog.set")]
    pub async fn catalog_set(
        self: Arc<Self>,
        _ctx: ActivityContext,
        change: crate::promotion::CatalogSet,
    ) -> Result<crate::promotion::CatalogSetResult, ActivityError> {
        crate::promotion::set_catalog(&self.store, &change).await
    }

    /// Archives a template (no new sessions); audited once.
    #[activity(name = "template.archive")]
    pub async fn template_archive(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: crate::promotion::ArchiveTemplate,
    ) -> Result<(), ActivityError> {
        crate::promotion::archive_template(&self.store, &input).await
    }

    /// Publishes the latest catalog revision to the Cloudflare runtime target, when one is
    /// configured: rendered, checked with `wrangler deploy --dry-run`, deployed when credentials
    /// are set. Idempotent: an already published (or newer) revision is skipped.
    #[activity(name = "catalog.publish")]
    pub async fn catalog_publish(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<crate::promotion::PublishResult, ActivityError> {
        crate::promotion::publish(&self.store, self.cloudflare.as_ref()).await
    }

    /// The runtime hosts online now. Read-only.
    #[activity(name = "nodes.live")]
    pub async fn nodes_live(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<Vec<String>, ActivityError> {
        crate::promotion::live_nodes(&self.store).await
    }

    /// Moves a session's `last_active_at` forward (never back).
    #[activity(name = "session.touch")]
    pub async fn touch_session(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: (String, i64),
    ) -> Result<(), ActivityError> {
        let id = domain::ids::SessionId::parse(&input.0).map_err(anyhow::Error::from)?;
        self.store.touch_session_activity(&id, input.1).await.map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// Records one step of a session: its row, one session event (by sequence number), the
    /// usage of a run that ended, and an audit event. The workflow is the only writer, and
    /// the event's sequence number makes a retried record change nothing twice.
    #[activity(name = "session.record")]
    pub async fn record_session(
        self: Arc<Self>,
        _ctx: ActivityContext,
        r: SessionStep,
    ) -> Result<(), ActivityError> {
        let id = domain::ids::SessionId::parse(&r.session_id).map_err(anyhow::Error::from)?;
        let before =
            self.store.session_by_id(&id).await.map_err(anyhow::Error::from)?.ok_or_else(|| {
                anyhow::anyhow!("session {} is not in the database", r.session_id)
            })?;
        let write = domain::store::SessionWrite {
            state: &r.state,
            at: r.at,
            node_id: r.node.as_deref(),
            generation: r.generation,
            container_id: r.container_id.as_ref().map(|c| c.as_deref()),
            error: r.error.as_ref().map(|e| e.as_deref()),
        };
        let after =
            self.store.write_session_state(&id, &write).await.map_err(anyhow::Error::from)?;
        let fresh = self
            .store
            .append_session_event(&id, r.seq, &r.kind, &r.detail, r.at)
            .await
            .map_err(anyhow::Error::from)?;
        // One usage event per step (zero minutes when the session was not running), keyed by
        // the step so a retried record adds nothing.
        if let Some(minutes) = r.runtime_minutes {
            self.store
                .record_usage(
                    &after.workspace_id,
                    Some(&after.owner),
                    "runtime_minutes",
                    minutes,
                    r.at,
                    &format!("{}:{}", after.workflow_id, r.seq),
                )
                .await
                .map_err(anyhow::Error::from)?;
        }
        if fresh && before.state != after.state {
            let entry = domain::store::AuditEntry::new(format!("session.{}", after.state))
                .workspace(&after.workspace_id)
                .target("session", after.id.as_str())
                .detail(serde_json::json!({
                    "name": after.name,
                    "from": before.state,
                    "reason": r.kind,
                    "node": after.node_id,
                    "generation": after.generation,
                    "error": after.error,
                }));
            self.store.append_audit(&entry).await.map_err(anyhow::Error::from)?;
        }
        Ok(())
    }
}

/// Input of `build.transition`: move a build (and its version) to a new state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildTransition {
    pub build_id: String,
    /// One of the build states: validating, building, pushing, succeeded, failed, cancelled.
    pub to: String,
    pub error: Option<String>,
    /// `(image_ref, digest)` when the build succeeded.
    pub image: Option<(String, String)>,
}

/// Input of `session.record`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStep {
    pub session_id: String,
    /// The session event's sequence number (per session, from the workflow).
    pub seq: u64,
    pub state: String,
    /// Event kind, e.g. `state.running`, `op.stop`, `idle.sleep`.
    pub kind: String,
    pub detail: serde_json::Value,
    /// Workflow time of the step (unix ms).
    pub at: i64,
    pub node: Option<String>,
    pub generation: Option<u64>,
    pub container_id: Option<Option<String>>,
    pub error: Option<Option<String>>,
    /// Whole minutes the session ran since the previous step.
    pub runtime_minutes: Option<i64>,
}
