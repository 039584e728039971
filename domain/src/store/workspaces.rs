//! Workspaces and who belongs to them.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};
use uuid::Uuid;

use super::{Store, StoreError, User, col, col_parsed, conflict_on_unique, count, users};
use crate::ids::{DisplayName, PlanId, Role, Slug, UserId, WorkspaceId};

/// The `free` plan seeded by the first migration (`migrations/*/0001_initial.sql`).
pub const FREE_PLAN_ID: &str = "00000000-0000-7000-8000-000000000001";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: DisplayName,
    pub slug: Slug,
    /// Created with its owner at sign-up; every user has exactly one.
    pub personal: bool,
    pub owner: UserId,
    pub plan: PlanId,
    pub created_at: i64,
}

/// A member of a workspace, as listed to the other members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: User,
    pub role: Role,
    pub joined_at: i64,
}

/// A workspace as seen by one of its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserWorkspace {
    pub workspace: Workspace,
    pub role: Role,
}

const WORKSPACE_COLUMNS: &str =
    "w.id, w.name, w.slug, w.personal, w.owner_user_id, w.plan_id, w.created_at";

fn workspace_from_row(row: &AnyRow) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        id: col_parsed(row, "id", WorkspaceId::parse)?,
        name: col_parsed(row, "name", DisplayName::parse)?,
        slug: col_parsed(row, "slug", Slug::parse)?,
        personal: col::<i64>(row, "personal")? != 0,
        owner: col_parsed(row, "owner_user_id", UserId::parse)?,
        plan: col_parsed(row, "plan_id", PlanId::parse)?,
        created_at: col(row, "created_at")?,
    })
}

/// How many random suffixes to try when the slug derived from the email is taken.
const SLUG_ATTEMPTS: usize = 5;

/// Creates `user`'s personal workspace and owner membership inside the sign-up transaction. The slug
/// comes from the email's local part, with a random suffix if that is taken.
pub(super) async fn insert_personal(
    tx: &mut Transaction<'static, Any>,
    user: &User,
    now: i64,
) -> Result<Workspace, StoreError> {
    let base = Slug::suggest(user.email.local_part(), Slug::MAX_CHARS - 7)
        .map_or_else(|| "user".to_owned(), String::from);
    let mut workspace = Workspace {
        id: WorkspaceId::new(),
        name: DisplayName::parse("Personal")?,
        slug: Slug::parse(&base)?,
        personal: true,
        owner: user.id.clone(),
        plan: PlanId::parse(FREE_PLAN_ID)?,
        created_at: now,
    };
    for attempt in 0..=SLUG_ATTEMPTS {
        if attempt > 0 {
            let suffix = Uuid::new_v4().simple().to_string();
            workspace.slug = Slug::parse(&format!("{base}-{}", &suffix[..6]))?;
        }
        // DO NOTHING rather than catching the error: on PostgreSQL a failed statement aborts the
        // whole transaction, and the retry has to happen inside it.
        let inserted = sqlx::query(
            "INSERT INTO workspaces
                 (id, name, slug, personal, owner_user_id, plan_id, created_at, updated_at)
             VALUES ($1, $2, $3, 1, $4, $5, $6, $6)
             ON CONFLICT (slug) DO NOTHING",
        )
        .bind(workspace.id.as_str())
        .bind(workspace.name.as_str())
        .bind(workspace.slug.as_str())
        .bind(workspace.owner.as_str())
        .bind(workspace.plan.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(conflict_on_unique("personal workspace"))?
        .rows_affected()
            == 1;
        if inserted {
            sqlx::query(
                "INSERT INTO memberships (workspace_id, user_id, role, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(workspace.id.as_str())
            .bind(user.id.as_str())
            .bind(Role::Owner.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            return Ok(workspace);
        }
    }
    Err(StoreError::Conflict { what: "workspace slug" })
}

/// The workspace `id` unless it was deleted, inside a transaction.
pub(super) async fn live_by_id(
    tx: &mut Transaction<'static, Any>,
    id: &WorkspaceId,
) -> Result<Option<Workspace>, StoreError> {
    let sql = format!(
        "SELECT {WORKSPACE_COLUMNS} FROM workspaces w WHERE w.id = $1 AND w.deleted_at IS NULL"
    );
    let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&mut **tx).await?;
    row.as_ref().map(workspace_from_row).transpose()
}

/// Serializes changes to `workspace`'s memberships until `tx` ends, so that a rule spanning several
/// rows ("at least one owner") holds when two changes race: a no-op write takes the workspace row's
/// lock on PostgreSQL and the database write lock on SQLite (where it must be the transaction's
/// first statement, so that later reads see the latest data). `NotFound` when the workspace is
/// missing or deleted.
async fn lock_live_workspace(
    tx: &mut Transaction<'static, Any>,
    workspace: &WorkspaceId,
) -> Result<(), StoreError> {
    let locked = sqlx::query(
        "UPDATE workspaces SET updated_at = updated_at WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(workspace.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if locked == 1 { Ok(()) } else { Err(StoreError::NotFound) }
}

/// `user`'s role in `workspace` inside a transaction; `NotFound` if they are not a member.
async fn role_in(
    tx: &mut Transaction<'static, Any>,
    workspace: &WorkspaceId,
    user: &UserId,
) -> Result<Role, StoreError> {
    let row = sqlx::query("SELECT role FROM memberships WHERE workspace_id = $1 AND user_id = $2")
        .bind(workspace.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    col_parsed(&row, "role", Role::parse)
}

/// Refuses to take the owner role away from `user` if nobody else in `workspace` has it.
async fn ensure_another_owner(
    tx: &mut Transaction<'static, Any>,
    workspace: &WorkspaceId,
    user: &UserId,
) -> Result<(), StoreError> {
    let others = count(
        sqlx::query(
            "SELECT COUNT(*) AS n FROM memberships
             WHERE workspace_id = $1 AND role = 'owner' AND user_id <> $2",
        )
        .bind(workspace.as_str())
        .bind(user.as_str())
        .fetch_one(&mut **tx)
        .await?,
    )?;
    if others == 0 { Err(StoreError::Conflict { what: "last owner" }) } else { Ok(()) }
}

impl Store {
    /// Creates a shared (not personal) workspace on the free plan, with `owner` as its first owner,
    /// in one transaction. A slug already in use is `Conflict { what: "slug" }`.
    pub async fn create_workspace(
        &self,
        owner: &UserId,
        name: &DisplayName,
        slug: &Slug,
        now: i64,
    ) -> Result<Workspace, StoreError> {
        let workspace = Workspace {
            id: WorkspaceId::new(),
            name: name.clone(),
            slug: slug.clone(),
            personal: false,
            owner: owner.clone(),
            plan: PlanId::parse(FREE_PLAN_ID)?,
            created_at: now,
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO workspaces
                 (id, name, slug, personal, owner_user_id, plan_id, created_at, updated_at)
             VALUES ($1, $2, $3, 0, $4, $5, $6, $6)",
        )
        .bind(workspace.id.as_str())
        .bind(workspace.name.as_str())
        .bind(workspace.slug.as_str())
        .bind(owner.as_str())
        .bind(workspace.plan.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_on_unique("slug"))?;
        sqlx::query(
            "INSERT INTO memberships (workspace_id, user_id, role, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(workspace.id.as_str())
        .bind(owner.as_str())
        .bind(Role::Owner.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(workspace)
    }

    /// The workspace with this slug, unless it was deleted.
    pub async fn workspace_by_slug(&self, slug: &Slug) -> Result<Option<Workspace>, StoreError> {
        let sql = format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces w WHERE w.slug = $1 AND w.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql).bind(slug.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(workspace_from_row).transpose()
    }

    /// The workspace with this id, unless it was deleted.
    pub async fn workspace_by_id(&self, id: &WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        let sql = format!(
            "SELECT {WORKSPACE_COLUMNS} FROM workspaces w WHERE w.id = $1 AND w.deleted_at IS NULL"
        );
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(workspace_from_row).transpose()
    }

    /// Gives `workspace` a new display name (its slug stays). `NotFound` when it is missing or deleted.
    pub async fn rename_workspace(
        &self,
        workspace: &WorkspaceId,
        name: &DisplayName,
        now: i64,
    ) -> Result<Workspace, StoreError> {
        let mut tx = self.pool.begin().await?;
        let renamed = sqlx::query(
            "UPDATE workspaces SET name = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(workspace.as_str())
        .bind(name.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if renamed != 1 {
            return Err(StoreError::NotFound);
        }
        let workspace = live_by_id(&mut tx, workspace).await?.ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(workspace)
    }

    /// Everyone in `workspace` with their role, in the order they joined.
    pub async fn members(&self, workspace: &WorkspaceId) -> Result<Vec<Member>, StoreError> {
        let sql = format!(
            "SELECT {}, m.role, m.created_at AS joined_at
             FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.workspace_id = $1
             ORDER BY m.created_at, u.id",
            users::USER_COLUMNS_OF_U
        );
        let rows = sqlx::query(&sql).bind(workspace.as_str()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    user: users::user_from_row(row)?,
                    role: col_parsed(row, "role", Role::parse)?,
                    joined_at: col(row, "joined_at")?,
                })
            })
            .collect()
    }

    /// Changes a member's role. `NotFound` if `user` is not a member; `Conflict { what: "last owner" }`
    /// if it would leave the workspace without an owner.
    pub async fn set_member_role(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
        role: Role,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_live_workspace(&mut tx, workspace).await?;
        let current = role_in(&mut tx, workspace, user).await?;
        if current == role {
            return Ok(());
        }
        if current == Role::Owner {
            ensure_another_owner(&mut tx, workspace, user).await?;
        }
        sqlx::query("UPDATE memberships SET role = $3 WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace.as_str())
            .bind(user.as_str())
            .bind(role.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes `user` from `workspace`. `NotFound` if they are not a member;
    /// `Conflict { what: "last owner" }` if they are its only owner.
    pub async fn remove_member(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_live_workspace(&mut tx, workspace).await?;
        if role_in(&mut tx, workspace, user).await? == Role::Owner {
            ensure_another_owner(&mut tx, workspace, user).await?;
        }
        sqlx::query("DELETE FROM memberships WHERE workspace_id = $1 AND user_id = $2")
            .bind(workspace.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The workspaces `user` belongs to with their role in each, personal workspace first.
    pub async fn workspaces_for_user(
        &self,
        user: &UserId,
    ) -> Result<Vec<UserWorkspace>, StoreError> {
        let sql = format!(
            "SELECT {WORKSPACE_COLUMNS}, m.role
             FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
             WHERE m.user_id = $1 AND w.deleted_at IS NULL
             ORDER BY w.personal DESC, w.name, w.id"
        );
        let rows = sqlx::query(&sql).bind(user.as_str()).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(UserWorkspace {
                    workspace: workspace_from_row(row)?,
                    role: col_parsed(row, "role", Role::parse)?,
                })
            })
            .collect()
    }

    /// `user`'s role in `workspace`, or `None` if they are not a member (or it was deleted).
    pub async fn membership(
        &self,
        workspace: &WorkspaceId,
        user: &UserId,
    ) -> Result<Option<Role>, StoreError> {
        let row = sqlx::query(
            "SELECT m.role
             FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
             WHERE m.workspace_id = $1 AND m.user_id = $2 AND w.deleted_at IS NULL",
        )
        .bind(workspace.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| col_parsed(&row, "role", Role::parse)).transpose()
    }
}
