//! Results of the SelfCheck workflow, which proves that the worker, Temporal and the database are
//! wired together.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed, now_ms};
use crate::ids::SelfCheckId;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfCheck {
    pub id: SelfCheckId,
    pub workflow_id: String,
    /// Unix milliseconds.
    pub checked_at: i64,
    /// Identity of the worker that ran the check.
    pub worker: String,
}

const SELF_CHECK_COLUMNS: &str = "id, workflow_id, checked_at, worker";

fn self_check_from_row(row: &AnyRow) -> Result<SelfCheck, StoreError> {
    Ok(SelfCheck {
        id: col_parsed(row, "id", SelfCheckId::parse)?,
        workflow_id: col(row, "workflow_id")?,
        checked_at: col(row, "checked_at")?,
        worker: col(row, "worker")?,
    })
}

impl Store {
    /// Records that the workflow `workflow_id` ran on `worker`. Idempotent, because activities are
    /// retried: a second call for the same workflow returns the first row unchanged.
    pub async fn record_self_check(
        &self,
        workflow_id: &str,
        worker: &str,
    ) -> Result<SelfCheck, StoreError> {
        sqlx::query(
            "INSERT INTO self_checks (id, workflow_id, checked_at, worker) VALUES ($1, $2, $3, $4)
             ON CONFLICT (workflow_id) DO NOTHING",
        )
        .bind(SelfCheckId::new().as_str())
        .bind(workflow_id)
        .bind(now_ms())
        .bind(worker)
        .execute(&self.pool)
        .await?;
        let sql = format!("SELECT {SELF_CHECK_COLUMNS} FROM self_checks WHERE workflow_id = $1");
        let row = sqlx::query(&sql).bind(workflow_id).fetch_one(&self.pool).await?;
        self_check_from_row(&row)
    }

    pub async fn latest_self_check(&self) -> Result<Option<SelfCheck>, StoreError> {
        let sql = format!(
            "SELECT {SELF_CHECK_COLUMNS} FROM self_checks ORDER BY checked_at DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql).fetch_optional(&self.pool).await?;
        row.as_ref().map(self_check_from_row).transpose()
    }
}
