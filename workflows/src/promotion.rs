//! `TemplatePromotion`, id `promote-<template id>` (so one runs per template at a time): makes a
//! built version the one new sessions of its template get (docs/catalog.md).
//!
//! Steps: canary (a container from the candidate image on a runtime host; its agent must come up
//! ready and the template's smoke command, if any, must exit 0; the canary is always removed) →
//! approval (when the workspace's policy requires it: the `approve` signal from an owner or
//! admin, checked and recorded by the API, within a timeout) → catalog (one revision) → rollout
//! (every runtime host pre-pulls the image; progress per node) → succeeded. A failure after the
//! catalog changed puts the previous version back (another revision) and says why; before, it
//! changes nothing. Demote and rollback run the same workflow without canary and approval.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, SyncWorkflowContext, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use activities::ControlActivities;
use activities::NodeActivities;
use activities::promotion::{ArchiveTemplate, CatalogSet, PromotionStep, SmokeTest};
use activities::runtime::{ContainerSpec, container_name};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionInput {
    pub promotion_id: String,
    pub workspace_id: String,
    pub template_id: String,
    pub version_id: String,
    pub image: String,
    /// promote, demote, rollback or archive (`version_id` is then the version that was active,
    /// or the newest one: the template is archived and leaves the catalog).
    pub kind: String,
    /// Run a canary first (promote); demote and rollback go straight to the catalog.
    pub canary: Option<Canary>,
    /// Wait for an owner's or admin's approval before changing the catalog.
    pub requires_approval: bool,
    pub approval_timeout_secs: u64,
    pub requested_by: Option<String>,
}

/// The canary container: the candidate version's image and resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub env: Vec<(String, String)>,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    /// The manifest's smoke command, run with `sh -c` once the agent is ready.
    pub smoke: Option<String>,
    pub smoke_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionOutcome {
    /// succeeded, rolled_back, failed or cancelled.
    pub status: String,
    pub error: Option<String>,
    pub revision: Option<u64>,
}

/// The answer to the `progress` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromotionProgress {
    pub step: String,
    pub nodes: Vec<(String, String)>,
    pub approved_by: Option<String>,
}

/// Patch: publish each catalog change to the Cloudflare runtime target (histories from before
/// it replay without the step).
const CLOUDFLARE: &str = "cloudflare-publish-v1";

#[workflow]
#[derive(Default)]
pub struct TemplatePromotion {
    progress: PromotionProgress,
}

fn retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(500))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(20))
        .maximum_attempts(attempts)
        .build()
}

fn control() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retry(20))
        .build()
}

fn on_node(node: &str, timeout: Duration, attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout)
        .task_queue(activities::node_task_queue(node))
        .schedule_to_start_timeout(Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(retry(attempts))
        .build()
}

fn failure_text(e: &ActivityExecutionError) -> String {
    let Some(mut f) = e.failure() else { return e.to_string() };
    while let Some(cause) = f.cause.as_deref() {
        f = cause;
    }
    f.message.clone()
}

fn now_ms(ctx: &WorkflowContext<TemplatePromotion>) -> i64 {
    ctx.workflow_time()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[workflow_methods]
impl TemplatePromotion {
    #[run(name = "TemplatePromotion")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: PromotionInput,
    ) -> WorkflowResult<PromotionOutcome> {
        if input.kind == "archive" {
            return Self::archive(ctx, &input).await;
        }
        if let Some(canary) = &input.canary {
            Self::step(ctx, &input, Some("running"), "canary", None).await?;
            if let Err(why) = Self::canary(ctx, &input, canary).await {
                return Self::end(ctx, &input, "failed", Some(why), None).await;
            }
        }
        if input.requires_approval {
            Self::step(ctx, &input, Some("awaiting_approval"), "awaiting approval", None).await?;
            let timeout = Duration::from_secs(input.approval_timeout_secs);
            let approved = temporalio_sdk::workflows::select! {
                r = ctx.wait_condition(|s| s.progress.approved_by.is_some()) => { r?; true }
                _ = ctx.timer(timeout) => false,
            };
            if !approved {
                let why = format!(
                    "nobody approved it within {} s; the catalog was not changed",
                    input.approval_timeout_secs
                );
                return Self::end(ctx, &input, "cancelled", Some(why), None).await;
            }
            Self::step(ctx, &input, Some("running"), "approved", None).await?;
        }

        Self::step(ctx, &input, None, "updating the catalog", None).await?;
        // Keyed by the promotion (the workflow id repeats for every promotion of a template).
        let key = input.promotion_id.clone();
        let set = CatalogSet {
            template_id: input.template_id.clone(),
            version_id: Some(input.version_id.clone()),
            reason: input.kind.clone(),
            change_key: format!("{key}:set"),
            actor: input.requested_by.clone(),
        };
        let changed = ctx.execute_activity(ControlActivities::catalog_set, set, control()).await;
        let changed = match changed {
            Ok(c) => c,
            Err(e) => {
                return Self::end(ctx, &input, "failed", Some(failure_text(&e)), None).await;
            }
        };

        let mut done = Self::rollout(ctx, &input).await;
        if done.is_ok() && ctx.patched(CLOUDFLARE) {
            done = Self::publish(ctx, &input).await;
        }
        match done {
            Ok(()) => Self::end(ctx, &input, "succeeded", None, Some(changed.revision)).await,
            Err(why) => {
                // Put back what was active before, so new sessions keep working.
                Self::step(ctx, &input, None, "rolling back", None).await?;
                let back = CatalogSet {
                    template_id: input.template_id.clone(),
                    version_id: changed.previous_version_id.clone(),
                    reason: "rollback-after-failure".into(),
                    change_key: format!("{key}:rollback"),
                    actor: input.requested_by.clone(),
                };
                let restored =
                    ctx.execute_activity(ControlActivities::catalog_set, back, control()).await?;
                let mut why = format!("{why}; the previous version is active again");
                if ctx.patched(CLOUDFLARE)
                    && let Err(also) = Self::publish(ctx, &input).await
                {
                    why = format!("{why} (and {also})");
                }
                Self::end(ctx, &input, "rolled_back", Some(why), Some(restored.revision)).await
            }
        }
    }

    #[query(name = "progress")]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> PromotionProgress {
        self.progress.clone()
    }

    /// An owner's or admin's approval; the API checks the role and records who it was.
    #[signal(name = "approve")]
    pub fn approve(&mut self, _ctx: &mut SyncWorkflowContext<Self>, by: String) {
        if self.progress.approved_by.is_none() {
            self.progress.approved_by = Some(by);
        }
    }
}

impl TemplatePromotion {
    async fn step(
        ctx: &mut WorkflowContext<Self>,
        input: &PromotionInput,
        status: Option<&str>,
        step: &str,
        error: Option<Option<String>>,
    ) -> WorkflowResult<()> {
        ctx.state_mut(|s| s.progress.step = step.to_string());
        let progress = ctx
            .state(|s| (!s.progress.nodes.is_empty()).then(|| serde_json::json!(s.progress.nodes)));
        let at = now_ms(ctx);
        let update = PromotionStep {
            promotion_id: input.promotion_id.clone(),
            workspace_id: input.workspace_id.clone(),
            template_id: input.template_id.clone(),
            status: status.map(str::to_string),
            step: Some(step.to_string()),
            error,
            progress,
            at,
        };
        ctx.execute_activity(ControlActivities::promotion_update, update, control()).await?;
        Ok(())
    }

    async fn end(
        ctx: &mut WorkflowContext<Self>,
        input: &PromotionInput,
        status: &str,
        error: Option<String>,
        revision: Option<u64>,
    ) -> WorkflowResult<PromotionOutcome> {
        Self::step(ctx, input, Some(status), status, Some(error.clone())).await?;
        Ok(PromotionOutcome { status: status.to_string(), error, revision })
    }

    /// Archive: the template offers no new sessions (running ones keep going), then leaves the
    /// catalog. Nothing to roll out: no host needs an image for it.
    async fn archive(
        ctx: &mut WorkflowContext<Self>,
        input: &PromotionInput,
    ) -> WorkflowResult<PromotionOutcome> {
        Self::step(ctx, input, Some("running"), "archiving", None).await?;
        let archive = ArchiveTemplate {
            workspace_id: input.workspace_id.clone(),
            template_id: input.template_id.clone(),
            actor: input.requested_by.clone(),
            promotion_id: input.promotion_id.clone(),
        };
        if let Err(e) =
            ctx.execute_activity(ControlActivities::template_archive, archive, control()).await
        {
            return Self::end(ctx, input, "failed", Some(failure_text(&e)), None).await;
        }
        Self::step(ctx, input, None, "updating the catalog", None).await?;
        let clear = CatalogSet {
            template_id: input.template_id.clone(),
            version_id: None,
            reason: "archive".into(),
            change_key: format!("{}:clear", input.promotion_id),
            actor: input.requested_by.clone(),
        };
        let cleared = match ctx
            .execute_activity(ControlActivities::catalog_set, clear, control())
            .await
        {
            Ok(c) => c,
            Err(e) => return Self::end(ctx, input, "failed", Some(failure_text(&e)), None).await,
        };
        // The template's class leaves the Cloudflare target too; the archive stands either way.
        let error = match ctx.patched(CLOUDFLARE) {
            true => Self::publish(ctx, input).await.err(),
            false => None,
        };
        Self::end(ctx, input, "succeeded", error, Some(cleared.revision)).await
    }

    /// A container from the candidate image must come up ready and pass the smoke command.
    async fn canary(
        ctx: &mut WorkflowContext<Self>,
        input: &PromotionInput,
        canary: &Canary,
    ) -> Result<(), String> {
        let node = ctx
            .execute_activity(ControlActivities::pick_node, input.promotion_id.clone(), control())
            .await
            .map_err(|e| format!("placing the canary: {}", failure_text(&e)))?;
        // The canary is a container of its own, labelled with the promotion id.
        let spec = ContainerSpec {
            session_id: input.promotion_id.clone(),
            workspace_id: input.workspace_id.clone(),
            generation: 1,
            image: input.image.clone(),
            env: canary.env.clone(),
            cpu_millis: canary.cpu_millis,
            memory_mb: canary.memory_mb,
            pids_limit: 4096,
            ports: vec![],
        };
        let name = container_name(&input.promotion_id, 1);
        let result = async {
            ctx.execute_activity(
                NodeActivities::ensure_container,
                spec,
                on_node(&node, Duration::from_secs(600), 3),
            )
            .await
            .map_err(|e| format!("creating the canary: {}", failure_text(&e)))?;
            ctx.execute_activity(
                NodeActivities::start_container,
                name.clone(),
                on_node(&node, Duration::from_secs(180), 1),
            )
            .await
            .map_err(|e| format!("the canary's agent did not come up: {}", failure_text(&e)))?;
            if let Some(command) = canary.smoke.clone().filter(|c| !c.trim().is_empty()) {
                let smoke = SmokeTest {
                    container: name.clone(),
                    command,
                    timeout_secs: canary.smoke_timeout_secs,
                };
                let code = ctx
                    .execute_activity(
                        NodeActivities::promotion_smoke,
                        smoke,
                        on_node(&node, Duration::from_secs(canary.smoke_timeout_secs + 60), 1),
                    )
                    .await
                    .map_err(|e| {
                        format!("the smoke command could not run: {}", failure_text(&e))
                    })?;
                if code != 0 {
                    return Err(format!("the smoke command exited with code {code}"));
                }
            }
            Ok(())
        }
        .await;
        // Always removed, whatever happened.
        let _ = ctx
            .execute_activity(
                NodeActivities::remove_containers,
                input.promotion_id.clone(),
                on_node(&node, Duration::from_secs(120), 5),
            )
            .await;
        result
    }

    /// The Cloudflare runtime target gets the new catalog revision (when one is configured; the
    /// activity answers `off` otherwise).
    async fn publish(
        ctx: &mut WorkflowContext<Self>,
        input: &PromotionInput,
    ) -> Result<(), String> {
        Self::step(ctx, input, None, "publishing the catalog", None)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let opts = ActivityOptions::with_start_to_close_timeout(Duration::from_secs(600))
            .retry_policy(retry(5))
            .build();
        ctx.execute_activity(ControlActivities::catalog_publish, (), opts)
            .await
            .map(|_| ())
            .map_err(|e| format!("publishing to the Cloudflare target: {}", failure_text(&e)))
    }

    /// Every runtime host pre-pulls the image; the first that cannot fails the rollout.
    async fn rollout(
        ctx: &mut WorkflowContext<Self>,
        input: &PromotionInput,
    ) -> Result<(), String> {
        let nodes = ctx
            .execute_activity(ControlActivities::nodes_live, (), control())
            .await
            .map_err(|e| format!("listing the runtime hosts: {}", failure_text(&e)))?;
        ctx.state_mut(|s| {
            s.progress.nodes = nodes.iter().map(|n| (n.clone(), "pending".into())).collect();
        });
        for node in nodes {
            let step = format!("rolling out to {node}");
            Self::step(ctx, input, None, &step, None).await.map_err(|e| format!("{e:?}"))?;
            let pulled = ctx
                .execute_activity(
                    NodeActivities::promotion_prepull,
                    input.image.clone(),
                    on_node(&node, Duration::from_secs(1800), 3),
                )
                .await;
            let (state, failed) = match &pulled {
                Ok(_) => ("ready".to_string(), None),
                Err(e) => ("failed".to_string(), Some(failure_text(e))),
            };
            ctx.state_mut(|s| {
                if let Some(entry) = s.progress.nodes.iter_mut().find(|(n, _)| *n == node) {
                    entry.1 = state;
                }
            });
            if let Some(why) = failed {
                return Err(format!("runtime host {node} could not pull the image: {why}"));
            }
        }
        Self::step(ctx, input, None, "rolled out", None).await.map_err(|e| format!("{e:?}"))
    }
}
