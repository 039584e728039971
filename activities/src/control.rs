//! Control-plane activities: the ones that touch the database and object storage.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use domain::Store;

pub struct ControlActivities {
    store: Store,
    identity: String,
}

impl ControlActivities {
    pub fn new(store: Store) -> Self {
        Self { store, identity: crate::worker_identity() }
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
}
