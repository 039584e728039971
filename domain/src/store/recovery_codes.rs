//! Recovery codes: single-use codes to get back into an account that lost its passkeys. Only hashes
//! are stored.

use super::{Store, StoreError, conflict_on_unique, count};
use crate::ids::{RecoveryCodeId, UserId};

impl Store {
    /// Gives `user` a new set of recovery codes, all old ones (used or not) stop working: both in
    /// one transaction, so there is never a moment with neither set or both.
    pub async fn replace_recovery_codes(
        &self,
        user: &UserId,
        hashes: &[Vec<u8>],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        for hash in hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (id, user_id, code_hash, created_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(RecoveryCodeId::new().as_str())
            .bind(user.as_str())
            .bind(hash.as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique("recovery code"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spends one of `user`'s recovery codes: true if `code_hash` was an unused code of theirs, which
    /// it no longer is. The check and the spending are one UPDATE, so a code works once even when
    /// presented twice at the same moment.
    pub async fn use_recovery_code(
        &self,
        user: &UserId,
        code_hash: &[u8],
        now: i64,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user.as_str())
        .bind(code_hash)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    pub async fn count_unused_recovery_codes(&self, user: &UserId) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await?;
        count(row)
    }
}
