//! People who can sign in.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{
    Store, StoreError, Workspace, col, col_parsed, conflict_on_unique, now_ms, workspaces,
};
use crate::ids::{DisplayName, Email, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub display_name: DisplayName,
    pub created_at: i64,
}

const USER_COLUMNS: &str = "id, email, display_name, created_at";

/// [`USER_COLUMNS`] of a query that names the users table `u`.
pub(super) const USER_COLUMNS_OF_U: &str = "u.id, u.email, u.display_name, u.created_at";

pub(super) fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    Ok(User {
        id: col_parsed(row, "id", UserId::parse)?,
        email: col_parsed(row, "email", Email::parse)?,
        display_name: col_parsed(row, "display_name", DisplayName::parse)?,
        created_at: col(row, "created_at")?,
    })
}

/// Serializes changes to `user`'s credentials until `tx` ends, so that a rule spanning several rows
/// ("keep a way to sign in") holds when two changes race: a no-op write takes the user row's lock on
/// PostgreSQL and the database write lock on SQLite (where it must be the transaction's first
/// statement, so that later reads see the latest data).
pub(super) async fn lock_user(
    tx: &mut Transaction<'static, Any>,
    user: &UserId,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
        .bind(user.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Signs a person up: the user, their personal workspace and their owner membership are created
    /// together or not at all. An email already in use is `Conflict { what: "email" }`.
    pub async fn create_user_with_personal_workspace(
        &self,
        email: &Email,
        display_name: &DisplayName,
    ) -> Result<(User, Workspace), StoreError> {
        let now = now_ms();
        let user = User {
            id: UserId::new(),
            email: email.clone(),
            display_name: display_name.clone(),
            created_at: now,
        };
        let mut tx = self.pool.begin().await?;
        let workspace = insert_with_personal_workspace(&mut tx, &user).await?;
        tx.commit().await?;
        Ok((user, workspace))
    }

    pub async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row = sqlx::query(&sql).bind(email.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// How many accounts exist; zero means the next sign-up is the first (bootstrap) one.
    pub async fn count_users(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.pool).await?;
        let n: i64 = col(&row, "n")?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative user count {n}")))
    }
}

/// Inserts `user` and their personal workspace (with the owner membership) inside `tx`.
/// A taken email is `Conflict { what: "email" }`.
pub(super) async fn insert_with_personal_workspace(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: &User,
) -> Result<Workspace, StoreError> {
    sqlx::query(
        "INSERT INTO users (id, email, display_name, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(user.id.as_str())
    .bind(user.email.as_str())
    .bind(user.display_name.as_str())
    .bind(user.created_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict_on_unique("email"))?;
    workspaces::insert_personal(tx, user, user.created_at).await
}
