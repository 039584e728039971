//! `TemplateBuild`: one build attempt of one template version, from an accepted bundle to an
//! image in the registry. Workflow id `build-<version id>-<attempt>`; a retry is a new
//! attempt, so a new workflow.
//!
//! Steps: validating (`build.inspect`, non-retryable on a bad bundle) → building
//! (`build.image`, heartbeats, cancellable) → pushing (`build.push`) → succeeded, with the
//! image digest recorded. Builder steps run on the `build` task queue, state changes
//! (`build.transition`) on the control queue. A failed or cancelled build completes the
//! workflow with that outcome after recording it, so the database always says how it ended.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, WorkflowCancellationToken, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

use activities::ControlActivities;
use activities::build::{BuildJob, BuilderActivities};
use activities::control::BuildTransition;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateBuildInput {
    pub job: BuildJob,
    /// Task queue of the builder activities (`build.task_queue`).
    pub build_queue: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateBuildOutput {
    /// succeeded, failed or cancelled.
    pub status: String,
    pub image_ref: Option<String>,
    pub digest: Option<String>,
    pub error: Option<String>,
}

#[workflow]
#[derive(Default)]
pub struct TemplateBuild {
    phase: String,
}

fn transition_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_millis(500))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(30))
                .maximum_attempts(20)
                .build(),
        )
        // State changes must land even while the workflow is being cancelled.
        .cancellation_token(WorkflowCancellationToken::new())
        .build()
}

fn builder_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .maximum_attempts(attempts)
        .build()
}

/// The innermost message of a failure chain: what actually went wrong, in the activity's words.
fn root_message(failure: &Failure) -> String {
    let mut f = failure;
    while let Some(cause) = f.cause.as_deref() {
        f = cause;
    }
    f.message.clone()
}

fn failure_text(e: &ActivityExecutionError) -> String {
    match e.failure() {
        Some(f) => root_message(f),
        None => e.to_string(),
    }
}

enum Step<T> {
    Done(T),
    Failed(String),
    Cancelled,
}

fn step<T>(r: Result<T, ActivityExecutionError>) -> Step<T> {
    match r {
        Ok(v) => Step::Done(v),
        Err(ActivityExecutionError::Cancelled(_)) => Step::Cancelled,
        Err(e) => Step::Failed(failure_text(&e)),
    }
}

#[workflow_methods]
impl TemplateBuild {
    #[run(name = "TemplateBuild")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: TemplateBuildInput,
    ) -> WorkflowResult<TemplateBuildOutput> {
        let job = input.job;
        let queue = input.build_queue;

        Self::enter(ctx, &job, "validating").await?;
        let inspected = ctx
            .execute_activity(
                BuilderActivities::inspect,
                job.clone(),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(300))
                    .task_queue(queue.clone())
                    .retry_policy(builder_retry(5))
                    .build(),
            )
            .await;
        if let Some(out) = Self::settle(ctx, &job, step(inspected)).await? {
            return Ok(out);
        }

        Self::enter(ctx, &job, "building").await?;
        let built = ctx
            .execute_activity(
                BuilderActivities::image,
                job.clone(),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(
                    job.timeout_secs + 300,
                ))
                .task_queue(queue.clone())
                // A builder that dies is noticed within this time and the build reruns.
                .heartbeat_timeout(Duration::from_secs(20))
                .retry_policy(builder_retry(4))
                .build(),
            )
            .await;
        if let Some(out) = Self::settle(ctx, &job, step(built)).await? {
            return Ok(out);
        }

        Self::enter(ctx, &job, "pushing").await?;
        let pushed = ctx
            .execute_activity(
                BuilderActivities::push,
                job.clone(),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(1800))
                    .task_queue(queue)
                    .heartbeat_timeout(Duration::from_secs(30))
                    .retry_policy(builder_retry(6))
                    .build(),
            )
            .await;
        let pushed = match step(pushed) {
            Step::Done(p) => p,
            other => {
                let out = Self::settle(ctx, &job, other.map_unit()).await?;
                return Ok(out.unwrap_or_else(|| TemplateBuildOutput {
                    status: "failed".into(),
                    image_ref: None,
                    digest: None,
                    error: None,
                }));
            }
        };

        let image = (pushed.image_ref.clone(), pushed.digest.clone());
        Self::record(ctx, &job, "succeeded", None, Some(image)).await?;
        ctx.state_mut(|s| s.phase = "succeeded".into());
        Ok(TemplateBuildOutput {
            status: "succeeded".into(),
            image_ref: Some(pushed.image_ref),
            digest: Some(pushed.digest),
            error: None,
        })
    }

    #[query(name = "phase")]
    pub fn phase(&self, _ctx: &WorkflowContextView) -> String {
        self.phase.clone()
    }
}

impl<T> Step<T> {
    fn map_unit(self) -> Step<()> {
        match self {
            Step::Done(_) => Step::Done(()),
            Step::Failed(e) => Step::Failed(e),
            Step::Cancelled => Step::Cancelled,
        }
    }
}

impl TemplateBuild {
    async fn enter(
        ctx: &mut WorkflowContext<Self>,
        job: &BuildJob,
        phase: &str,
    ) -> WorkflowResult<()> {
        ctx.state_mut(|s| s.phase = phase.to_string());
        Self::record(ctx, job, phase, None, None).await
    }

    async fn record(
        ctx: &mut WorkflowContext<Self>,
        job: &BuildJob,
        to: &str,
        error: Option<String>,
        image: Option<(String, String)>,
    ) -> WorkflowResult<()> {
        ctx.execute_activity(
            ControlActivities::build_transition,
            BuildTransition { build_id: job.build_id.clone(), to: to.to_string(), error, image },
            transition_options(),
        )
        .await?;
        Ok(())
    }

    /// For a step that did not succeed: records how the build ended and returns the outcome.
    /// `None` means the step succeeded and the build goes on.
    async fn settle<T>(
        ctx: &mut WorkflowContext<Self>,
        job: &BuildJob,
        s: Step<T>,
    ) -> WorkflowResult<Option<TemplateBuildOutput>> {
        let (status, error) = match s {
            Step::Done(_) => return Ok(None),
            Step::Failed(e) => ("failed", Some(e)),
            Step::Cancelled => ("cancelled", None),
        };
        ctx.state_mut(|st| st.phase = status.to_string());
        Self::record(ctx, job, status, error.clone(), None).await?;
        Ok(Some(TemplateBuildOutput {
            status: status.into(),
            image_ref: None,
            digest: None,
            error,
        }))
    }
}
