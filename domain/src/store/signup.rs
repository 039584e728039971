//! Sign-up: everything a new account needs, created together or not at all.

use super::{Store, StoreError, User, Workspace, conflict_on_unique, users};
use crate::ids::{DisplayName, Email, PasskeyId, RecoveryCodeId, UserId};

/// The first passkey of a new account.
#[derive(Debug, Clone)]
pub struct NewPasskey<'a> {
    pub credential_id: &'a [u8],
    pub name: &'a str,
    pub passkey_json: &'a str,
}

impl Store {
    /// Creates the user (with the id its passkey was registered under), the personal workspace
    /// and owner membership, the first passkey and the recovery codes, in one transaction: a
    /// failure at any step leaves no half-made account behind. A taken email is
    /// `Conflict { what: "email" }`, an already registered credential `Conflict { what: "credential" }`.
    pub async fn sign_up(
        &self,
        id: &UserId,
        email: &Email,
        display_name: &DisplayName,
        passkey: NewPasskey<'_>,
        recovery_hashes: &[Vec<u8>],
        now: i64,
    ) -> Result<(User, Workspace), StoreError> {
        let user = User {
            id: id.clone(),
            email: email.clone(),
            display_name: display_name.clone(),
            created_at: now,
        };
        let mut tx = self.pool.begin().await?;
        let workspace = users::insert_with_personal_workspace(&mut tx, &user).await?;
        sqlx::query(
            "INSERT INTO passkeys (id, user_id, credential_id, name, passkey_json, sign_count, created_at)
             VALUES ($1, $2, $3, $4, $5, 0, $6)",
        )
        .bind(PasskeyId::new().as_str())
        .bind(user.id.as_str())
        .bind(passkey.credential_id)
        .bind(passkey.name)
        .bind(passkey.passkey_json)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict_on_unique("credential"))?;
        for hash in recovery_hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (id, user_id, code_hash, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(RecoveryCodeId::new().as_str())
            .bind(user.id.as_str())
            .bind(hash.as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((user, workspace))
    }
}
