//! Reading what a workspace has used, from the `usage_events` that session and build workflows
//! append.

use super::sessions::ACTIVE_STATES_SQL;
use super::{Store, StoreError, col};
use crate::ids::WorkspaceId;

/// Usage event kinds summed over a period, in minutes.
const RUNTIME_MINUTES: &str = "runtime_minutes";
const BUILD_MINUTES: &str = "build_minutes";
/// A gauge: each event is a reading of the bytes stored, not an increment.
const STORAGE_BYTES: &str = "storage_bytes";

/// A workspace's usage over a period, and its state now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageRow {
    /// Summed over the period.
    pub runtime_minutes: i64,
    /// Summed over the period.
    pub build_minutes: i64,
    /// The latest reading, whenever it was taken; 0 before the first.
    pub storage_bytes: i64,
    /// Sessions that are provisioning, starting, running or sleeping now.
    pub active_sessions: u64,
}

/// Usage event kinds that count minutes.
pub const USAGE_BUILD_MINUTES: &str = BUILD_MINUTES;

impl Store {
    /// Appends a usage event once: a second call with the same `idempotency_key` (a retried
    /// activity) changes nothing. Returns whether this call recorded it.
    pub async fn record_usage(
        &self,
        workspace: &WorkspaceId,
        user: Option<&crate::ids::UserId>,
        kind: &str,
        quantity: i64,
        at: i64,
        idempotency_key: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO usage_events (id, workspace_id, user_id, kind, quantity, at, idempotency_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(crate::ids::UsageEventId::new().to_string())
        .bind(workspace.as_str())
        .bind(user.map(|u| u.as_str().to_string()))
        .bind(kind)
        .bind(quantity)
        .bind(at)
        .bind(idempotency_key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How many usage events have an idempotency key starting with `prefix` (a workflow's
    /// events: `<workflow id>:`), for audits and tests.
    pub async fn count_usage_events_with_key_prefix(
        &self,
        prefix: &str,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM usage_events WHERE substr(idempotency_key, 1, $1) = $2",
        )
        .bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
        .bind(prefix)
        .fetch_one(&self.pool)
        .await?;
        col(&row, "n")
    }

    /// `workspace`'s usage from `since` (unix ms, inclusive) on, in one round trip.
    pub async fn usage_summary(
        &self,
        workspace: &WorkspaceId,
        since: i64,
    ) -> Result<UsageRow, StoreError> {
        // The CASTs matter on PostgreSQL: SUM(BIGINT) is NUMERIC, which sqlx::Any cannot decode.
        let sql = format!(
            "SELECT
                 (SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM usage_events
                  WHERE workspace_id = $1 AND kind = $3 AND at >= $2) AS runtime_minutes,
                 (SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) FROM usage_events
                  WHERE workspace_id = $1 AND kind = $4 AND at >= $2) AS build_minutes,
                 COALESCE((SELECT quantity FROM usage_events
                           WHERE workspace_id = $1 AND kind = $5
                           ORDER BY at DESC, id DESC LIMIT 1), 0) AS storage_bytes,
                 (SELECT COUNT(*) FROM sessions
                  WHERE workspace_id = $1 AND state IN ({ACTIVE_STATES_SQL})) AS active_sessions"
        );
        let row = sqlx::query(&sql)
            .bind(workspace.as_str())
            .bind(since)
            .bind(RUNTIME_MINUTES)
            .bind(BUILD_MINUTES)
            .bind(STORAGE_BYTES)
            .fetch_one(&self.pool)
            .await?;
        let active: i64 = col(&row, "active_sessions")?;
        Ok(UsageRow {
            runtime_minutes: col(&row, "runtime_minutes")?,
            build_minutes: col(&row, "build_minutes")?,
            storage_bytes: col(&row, "storage_bytes")?,
            active_sessions: u64::try_from(active)
                .map_err(|_| StoreError::Corrupt(format!("negative count {active}")))?,
        })
    }
}
