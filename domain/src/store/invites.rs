//! Invitations to join a workspace. The link carries a secret token; only its hash is stored, and it
//! can be accepted once.

use sqlx::any::AnyRow;

use super::{Store, StoreError, Workspace, col, col_parsed, col_parsed_opt, workspaces};
use crate::ids::{Email, InviteId, Role, UserId, WorkspaceId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub id: InviteId,
    pub workspace_id: WorkspaceId,
    /// Who it was sent to.
    pub email: Email,
    /// Admin, member or viewer: ownership is transferred, never granted by invitation.
    pub role: Role,
    /// `None` when the inviter's account is gone.
    pub invited_by: Option<UserId>,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const INVITE_COLUMNS: &str = "id, workspace_id, email, role, invited_by_user_id, created_at, \
     expires_at, accepted_at, revoked_at";

/// The conditions under which an invite can still be accepted at `$2`.
const PENDING_AT_2: &str = "accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2";

fn invite_from_row(row: &AnyRow) -> Result<Invite, StoreError> {
    Ok(Invite {
        id: col_parsed(row, "id", InviteId::parse)?,
        workspace_id: col_parsed(row, "workspace_id", WorkspaceId::parse)?,
        email: col_parsed(row, "email", Email::parse)?,
        role: col_parsed(row, "role", Role::parse)?,
        invited_by: col_parsed_opt(row, "invited_by_user_id", UserId::parse)?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        accepted_at: col(row, "accepted_at")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

impl Store {
    /// Invites `email` to `workspace` as `role`, through a link whose token hashes to `token_hash`.
    /// Inviting as owner is `Invalid`: ownership is transferred, not granted.
    #[allow(clippy::too_many_arguments)] // Each is a column the caller decides; a struct would only rename them.
    pub async fn create_invite(
        &self,
        workspace: &WorkspaceId,
        email: &Email,
        role: Role,
        token_hash: &[u8],
        invited_by: Option<&UserId>,
        now: i64,
        expires_at: i64,
    ) -> Result<Invite, StoreError> {
        if role == Role::Owner {
            return Err(StoreError::Invalid("role: invites grant admin, member or viewer".into()));
        }
        let invite = Invite {
            id: InviteId::new(),
            workspace_id: workspace.clone(),
            email: email.clone(),
            role,
            invited_by: invited_by.cloned(),
            created_at: now,
            expires_at,
            accepted_at: None,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO invites
                 (id, workspace_id, token_hash, email, role, invited_by_user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(invite.id.as_str())
        .bind(workspace.as_str())
        .bind(token_hash)
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(invited_by.map(UserId::as_str))
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(invite)
    }

    /// `workspace`'s invites that can still be accepted, newest first.
    pub async fn list_invites(
        &self,
        workspace: &WorkspaceId,
        now: i64,
    ) -> Result<Vec<Invite>, StoreError> {
        let sql = format!(
            "SELECT {INVITE_COLUMNS} FROM invites
             WHERE workspace_id = $1 AND {PENDING_AT_2}
             ORDER BY created_at DESC, id DESC"
        );
        let rows =
            sqlx::query(&sql).bind(workspace.as_str()).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(invite_from_row).collect()
    }

    /// Withdraws a pending invite of `workspace`. One of another workspace, or one no longer pending,
    /// is `NotFound`.
    pub async fn revoke_invite(
        &self,
        workspace: &WorkspaceId,
        id: &InviteId,
        now: i64,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE invites SET revoked_at = $2
             WHERE id = $1 AND workspace_id = $3 AND {PENDING_AT_2}"
        );
        let updated = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(now)
            .bind(workspace.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    /// Accepts the invite whose token hashes to `token_hash` on behalf of `user`, who joins its
    /// workspace. An unknown, used, revoked or expired token is `NotFound`; a user who is already a
    /// member gets `Conflict { what: "membership" }` and the invite stays usable. Spending the
    /// invite and adding the member are one transaction, and the spending is a single conditional
    /// UPDATE, so an invite admits one person even when accepted twice at once.
    pub async fn accept_invite(
        &self,
        token_hash: &[u8],
        user: &UserId,
        now: i64,
    ) -> Result<(Workspace, Role), StoreError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE invites SET accepted_at = $2, accepted_by_user_id = $3
             WHERE token_hash = $1 AND {PENDING_AT_2}
             RETURNING workspace_id, role"
        );
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .bind(now)
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let workspace_id = col_parsed(&row, "workspace_id", WorkspaceId::parse)?;
        let role = col_parsed(&row, "role", Role::parse)?;
        let workspace =
            workspaces::live_by_id(&mut tx, &workspace_id).await?.ok_or(StoreError::NotFound)?;
        // DO NOTHING rather than catching the error: on PostgreSQL a failed statement aborts the
        // transaction. Returning early drops `tx`, which rolls the acceptance back.
        let joined = sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (workspace_id, user_id) DO NOTHING",
        )
        .bind(workspace_id.as_str())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if joined != 1 {
            return Err(StoreError::Conflict { what: "membership" });
        }
        tx.commit().await?;
        Ok((workspace, role))
    }
}
