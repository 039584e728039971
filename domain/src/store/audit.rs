//! The audit log: who did what, where and when. Append-only.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed, col_parsed_opt, now_ms};
use crate::ids::{AuditId, UserId, WorkspaceId};

/// One audit log entry. Build it with [`AuditEntry::new`] and the setters, then
/// [`Store::append_audit`] it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: AuditId,
    /// Unix milliseconds.
    pub at: i64,
    /// `None` for the system itself (workflows, schedules).
    pub actor: Option<UserId>,
    /// `None` for actions outside any workspace (sign-in, instance administration).
    pub workspace: Option<WorkspaceId>,
    /// Dotted verb, e.g. `workspace.member.added`.
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Anything else worth keeping; an empty object when there is nothing.
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// An entry for `action` happening now, by nobody in particular, anywhere.
    pub fn new(action: impl Into<String>) -> Self {
        AuditEntry {
            id: AuditId::new(),
            at: now_ms(),
            actor: None,
            workspace: None,
            action: action.into(),
            target_kind: None,
            target_id: None,
            ip: None,
            user_agent: None,
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn actor(mut self, user: &UserId) -> Self {
        self.actor = Some(user.clone());
        self
    }

    pub fn workspace(mut self, workspace: &WorkspaceId) -> Self {
        self.workspace = Some(workspace.clone());
        self
    }

    pub fn target(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.target_kind = Some(kind.into());
        self.target_id = Some(id.into());
        self
    }

    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// Where the next page after this entry starts.
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor { at: self.at, id: self.id.clone() }
    }
}

/// A position in a newest-first audit listing: entries strictly older than (`at`, `id`) come next.
/// Both parts are needed because several entries can share a millisecond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCursor {
    pub at: i64,
    pub id: AuditId,
}

/// Which entries to list; every field left `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// An exact action (`auth.signed_in`), or a prefix ending in '.' (`auth.`) for a whole family.
    pub action: Option<String>,
    pub actor: Option<UserId>,
    /// Entries at or after this time (unix milliseconds).
    pub since: Option<i64>,
    /// Entries strictly before this time (unix milliseconds).
    pub until: Option<i64>,
}

const AUDIT_COLUMNS: &str = "id, at, actor_user_id, workspace_id, action, target_kind, target_id, \
     ip, user_agent, detail_json";

fn audit_from_row(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let detail: String = col(row, "detail_json")?;
    Ok(AuditEntry {
        id: col_parsed(row, "id", AuditId::parse)?,
        at: col(row, "at")?,
        actor: col_parsed_opt(row, "actor_user_id", UserId::parse)?,
        workspace: col_parsed_opt(row, "workspace_id", WorkspaceId::parse)?,
        action: col(row, "action")?,
        target_kind: col(row, "target_kind")?,
        target_id: col(row, "target_id")?,
        ip: col(row, "ip")?,
        user_agent: col(row, "user_agent")?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| StoreError::Corrupt(format!("column detail_json: {e}")))?,
    })
}

impl Store {
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log
                 (id, at, actor_user_id, workspace_id, action, target_kind, target_id, ip,
                  user_agent, detail_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(entry.id.as_str())
        .bind(entry.at)
        .bind(entry.actor.as_ref().map(UserId::as_str))
        .bind(entry.workspace.as_ref().map(WorkspaceId::as_str))
        .bind(entry.action.as_str())
        .bind(entry.target_kind.as_deref())
        .bind(entry.target_id.as_deref())
        .bind(entry.ip.as_deref())
        .bind(entry.user_agent.as_deref())
        .bind(entry.detail.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` entries of `workspace`, newest first, starting after `before` if given.
    pub async fn list_audit(
        &self,
        workspace: &WorkspaceId,
        limit: u32,
        before: Option<&AuditCursor>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        self.list_audit_filtered(workspace, &AuditFilter::default(), limit, before).await
    }

    /// Like [`Store::list_audit`], keeping only the entries that match `filter`.
    pub async fn list_audit_filtered(
        &self,
        workspace: &WorkspaceId,
        filter: &AuditFilter,
        limit: u32,
        before: Option<&AuditCursor>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        // Without a cursor, start from a position newer than any entry.
        let (at, id) = before.map_or((i64::MAX, ""), |c| (c.at, c.id.as_str()));
        // $2 appears twice and before $1: both backends bind `$N` by number, not by position.
        let mut conditions = vec!["(at < $2 OR (at = $2 AND id < $3))", "workspace_id = $1"];
        // Optional filters take the fixed numbers $5.. and are bound either way; an unused one is
        // simply not referenced (neither backend minds).
        if let Some(wanted) = &filter.action {
            conditions.push(if wanted.ends_with('.') {
                // substr, not LIKE: SQLite's LIKE ignores case, and both treat '_' as a wildcard.
                "substr(action, 1, length($5)) = $5"
            } else {
                "action = $5"
            });
        }
        if filter.actor.is_some() {
            conditions.push("actor_user_id = $6");
        }
        if filter.since.is_some() {
            conditions.push("at >= $7");
        }
        if filter.until.is_some() {
            conditions.push("at < $8");
        }
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE {}
             ORDER BY at DESC, id DESC LIMIT $4",
            conditions.join(" AND ")
        );
        let rows = sqlx::query(&sql)
            .bind(workspace.as_str())
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
            .bind(filter.action.as_deref())
            .bind(filter.actor.as_ref().map(UserId::as_str))
            .bind(filter.since)
            .bind(filter.until)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }
}
