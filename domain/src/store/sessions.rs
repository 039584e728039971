//! Reading the dev sessions of a workspace, for listings. Sessions are written by their `Session`
//! workflow alone (through activities), so this module only reads.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed};
use crate::ids::{SessionId, UserId, WorkspaceId};

/// The states in which a session holds (or is about to hold) a runtime, as an SQL list. Shared
/// with the usage summary so that "active" means the same thing everywhere.
pub(super) const ACTIVE_STATES_SQL: &str = "'provisioning', 'starting', 'running', 'sleeping'";

/// Which sessions [`Store::sessions_in_workspace`] lists. The default lists the active sessions
/// of everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Also list sessions that ended (`stopped`, `failed`). Deleted ones are never listed.
    pub include_ended: bool,
    /// Only this person's sessions.
    pub owner: Option<UserId>,
}

/// A session as listed, with the names of its template and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: SessionId,
    pub name: String,
    /// One of `sdk::SESSION_STATES`, never `deleted`.
    pub state: String,
    pub template_name: String,
    pub owner_id: UserId,
    pub owner_name: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_active_at: Option<i64>,
}

fn session_from_row(row: &AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        id: col_parsed(row, "id", SessionId::parse)?,
        name: col(row, "name")?,
        state: col(row, "state")?,
        template_name: col(row, "template_name")?,
        owner_id: col_parsed(row, "owner_user_id", UserId::parse)?,
        owner_name: col(row, "owner_name")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
        last_active_at: col(row, "last_active_at")?,
    })
}

impl Store {
    /// The sessions of `workspace` that match `filter`, most recently changed first. Deleted
    /// sessions are never listed: their names are free for reuse and they are gone for the user.
    pub async fn sessions_in_workspace(
        &self,
        workspace: &WorkspaceId,
        filter: SessionFilter,
    ) -> Result<Vec<SessionRow>, StoreError> {
        let states = if filter.include_ended {
            format!("{ACTIVE_STATES_SQL}, 'stopped', 'failed'")
        } else {
            ACTIVE_STATES_SQL.to_owned()
        };
        // $2 is bound either way and only referenced when filtering by owner (neither backend
        // minds an unreferenced parameter).
        let by_owner = if filter.owner.is_some() { "AND s.owner_user_id = $2" } else { "" };
        let sql = format!(
            "SELECT s.id, s.name, s.state, t.name AS template_name, s.owner_user_id,
                    u.display_name AS owner_name, s.created_at, s.updated_at, s.last_active_at
             FROM sessions s
             JOIN templates t ON t.id = s.template_id
             JOIN users u ON u.id = s.owner_user_id
             WHERE s.workspace_id = $1 AND s.state IN ({states}) {by_owner}
             ORDER BY s.updated_at DESC, s.id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(workspace.as_str())
            .bind(filter.owner.as_ref().map(UserId::as_str))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }
}
