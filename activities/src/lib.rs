//! Activities: every side effect a workflow needs (database, Docker, registry, S3), as
//! `#[activities]` impls on structs that hold their dependencies. Each activity is idempotent
//! (keyed by workflow id + step) or returns a non-retryable error.
//!
//! Activity names are part of the workflow history: they are set explicitly and never change.

pub mod build;
pub mod control;
pub mod node;
pub mod promotion;
pub mod runtime;
pub mod snapshot;

pub use build::BuilderActivities;
pub use control::ControlActivities;
pub use node::NodeActivities;

/// Task queue of the per-host worker for runtime host `node_id`.
pub fn node_task_queue(node_id: &str) -> String {
    format!("node-{node_id}")
}

/// How this worker process identifies itself in activity results and Temporal.
pub fn worker_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{}@{host}", std::process::id())
}
