//! Deterministic workflow definitions, their inputs and outputs, and the one place where
//! workers and the replayer register them.
//!
//! Workflow code holds no I/O, clocks or randomness: everything else is an activity.
//! Workflow type names are set explicitly and never change once shipped; the histories under
//! `tests/histories/` are replayed against this code in CI.

use temporalio_sdk::WorkerOptions;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};

pub mod promotion;
pub mod self_check;
pub mod session;
pub mod snapshot;
pub mod template_build;

pub use promotion::{Canary, PromotionInput, PromotionOutcome, TemplatePromotion};
pub use self_check::{SelfCheck, SelfCheckInput, SelfCheckOutput};
pub use session::{Session, SessionInput, SessionSpec};
pub use snapshot::{
    Restore, RestoreInput, Snapshot, SnapshotInput, SnapshotOutcome, SnapshotTarget,
};
pub use template_build::{TemplateBuild, TemplateBuildInput, TemplateBuildOutput};

/// Worker options for the control-plane worker: every control-plane workflow and activity.
pub fn control_worker_options(
    task_queue: &str,
    activities: activities::ControlActivities,
) -> Result<WorkerOptions, RegistrationError> {
    Ok(WorkerOptions::new(task_queue)
        .register_workflow::<SelfCheck>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<TemplateBuild>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<Session>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<Snapshot>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<Restore>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<TemplatePromotion>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_activities(activities)
        .build())
}

/// Worker options for a runtime host's worker (task queue `node-<id>`): activities only.
pub fn node_worker_options(node_id: &str, activities: activities::NodeActivities) -> WorkerOptions {
    WorkerOptions::new(activities::node_task_queue(node_id)).register_activities(activities).build()
}

/// Worker options for a builder (`burstflare builder`, task queue `build.task_queue`):
/// the builder activities only.
pub fn builder_worker_options(
    task_queue: &str,
    activities: activities::BuilderActivities,
) -> WorkerOptions {
    WorkerOptions::new(task_queue).register_activities(activities).build()
}

/// A replayer that knows every workflow type, for the CI replay of saved histories.
pub fn replayer() -> Result<WorkflowReplayer, RegistrationError> {
    let opts = WorkflowReplayerOptions::new()
        .register_workflow::<SelfCheck>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<TemplateBuild>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<Session>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<Snapshot>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<Restore>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .register_workflow::<TemplatePromotion>()
        .map_err(|e| RegistrationError(e.to_string()))?
        .build();
    WorkflowReplayer::new(opts).map_err(|e| RegistrationError(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
#[error("registering workflows failed: {0}")]
pub struct RegistrationError(String);
