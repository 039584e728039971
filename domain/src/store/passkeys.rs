//! Passkeys: the WebAuthn credentials people sign in with, and the signature counters that expose
//! cloned authenticators.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed, conflict_on_unique, count, users};
use crate::ids::{PasskeyId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: PasskeyId,
    pub user_id: UserId,
    /// The authenticator's credential id, unique across all users.
    pub credential_id: Vec<u8>,
    pub name: String,
    /// webauthn-rs `Passkey`, serialized: the authoritative copy of the public key.
    pub passkey_json: String,
    pub sign_count: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const PASSKEY_COLUMNS: &str =
    "id, user_id, credential_id, name, passkey_json, sign_count, created_at, last_used_at";

fn passkey_from_row(row: &AnyRow) -> Result<PasskeyRecord, StoreError> {
    Ok(PasskeyRecord {
        id: col_parsed(row, "id", PasskeyId::parse)?,
        user_id: col_parsed(row, "user_id", UserId::parse)?,
        credential_id: col(row, "credential_id")?,
        name: col(row, "name")?,
        passkey_json: col(row, "passkey_json")?,
        sign_count: col(row, "sign_count")?,
        created_at: col(row, "created_at")?,
        last_used_at: col(row, "last_used_at")?,
    })
}

impl Store {
    /// Registers a passkey for `user`. A credential id already registered (by anyone) is
    /// `Conflict { what: "credential" }`.
    pub async fn add_passkey(
        &self,
        user: &UserId,
        credential_id: &[u8],
        name: &str,
        passkey_json: &str,
        sign_count: i64,
        now: i64,
    ) -> Result<PasskeyRecord, StoreError> {
        let passkey = PasskeyRecord {
            id: PasskeyId::new(),
            user_id: user.clone(),
            credential_id: credential_id.to_vec(),
            name: name.to_owned(),
            passkey_json: passkey_json.to_owned(),
            sign_count,
            created_at: now,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO passkeys (id, user_id, credential_id, name, passkey_json, sign_count, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(passkey.id.as_str())
        .bind(user.as_str())
        .bind(credential_id)
        .bind(name)
        .bind(passkey_json)
        .bind(sign_count)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(conflict_on_unique("credential"))?;
        Ok(passkey)
    }

    /// `user`'s passkeys, oldest first.
    pub async fn passkeys_for_user(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql).bind(user.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(passkey_from_row).collect()
    }

    /// The passkey an authenticator presented, by its credential id.
    pub async fn passkey_by_credential_id(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyRecord>, StoreError> {
        let sql = format!("SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1");
        let row = sqlx::query(&sql).bind(credential_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(passkey_from_row).transpose()
    }

    /// Records a successful sign-in with passkey `id`: its updated serialized state, counter and
    /// time. The counter must grow (or stay 0 for authenticators that do not count); a counter that
    /// does not is the mark of a cloned authenticator, so it is `Conflict { what: "sign_count" }`
    /// and nothing changes. The comparison happens in the UPDATE itself, so two sign-ins racing with
    /// the same counter cannot both pass.
    pub async fn record_passkey_use(
        &self,
        id: &PasskeyId,
        passkey_json: &str,
        new_count: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE passkeys SET passkey_json = $2, sign_count = $3, last_used_at = $4
             WHERE id = $1 AND (($3 = 0 AND sign_count = 0) OR $3 > sign_count)",
        )
        .bind(id.as_str())
        .bind(passkey_json)
        .bind(new_count)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        let exists = sqlx::query("SELECT id FROM passkeys WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        Err(if exists { StoreError::Conflict { what: "sign_count" } } else { StoreError::NotFound })
    }

    /// Renames one of `user`'s passkeys; someone else's is `NotFound`, like a missing one.
    pub async fn rename_passkey(
        &self,
        user: &UserId,
        id: &PasskeyId,
        name: &str,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.as_str())
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    /// Deletes one of `user`'s passkeys. Deleting the last one is `Conflict { what: "last passkey" }`
    /// unless the user still has an unused recovery code to get back in with.
    pub async fn delete_passkey(&self, user: &UserId, id: &PasskeyId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // Two deletions racing for a user's last two passkeys must not both see "one other left".
        users::lock_user(&mut tx, user).await?;
        let owned = sqlx::query("SELECT id FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !owned {
            return Err(StoreError::NotFound);
        }
        let passkeys = count(
            sqlx::query("SELECT COUNT(*) AS n FROM passkeys WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_one(&mut *tx)
                .await?,
        )?;
        if passkeys <= 1 {
            let codes = count(
                sqlx::query(
                    "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
                )
                .bind(user.as_str())
                .fetch_one(&mut *tx)
                .await?,
            )?;
            if codes == 0 {
                return Err(StoreError::Conflict { what: "last passkey" });
            }
        }
        sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
