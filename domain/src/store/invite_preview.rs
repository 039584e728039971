//! What an invite link shows before it is accepted.

use super::{Store, StoreError, col};
use crate::ids::Role;

/// A pending invite as its link shows it: where to, and with which role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitePreview {
    pub workspace_name: String,
    pub role: Role,
}

impl Store {
    /// The pending (not accepted, revoked or expired) invite with this token hash.
    pub async fn invite_preview(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<InvitePreview>, StoreError> {
        let row = sqlx::query(
            "SELECT w.name AS workspace_name, i.role AS role FROM invites i
             JOIN workspaces w ON w.id = i.workspace_id
             WHERE i.token_hash = $1 AND i.accepted_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = col(&row, "role")?;
        Ok(Some(InvitePreview {
            workspace_name: col(&row, "workspace_name")?,
            role: Role::parse(&role).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        }))
    }
}
