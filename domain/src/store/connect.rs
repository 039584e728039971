//! Connecting to sessions: users' SSH public keys and runtime tokens (docs/ssh.md). Only a hash of
//! each runtime token is stored.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed};
use crate::connect::ParsedPublicKey;
use crate::ids::{RuntimeTokenId, SessionId, SshKeyId, UserId};

/// Most SSH keys one user may register.
pub const MAX_SSH_KEYS_PER_USER: u64 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKeyRecord {
    pub id: SshKeyId,
    pub user_id: UserId,
    pub name: String,
    pub algorithm: String,
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: i64,
}

const SSH_KEY_COLUMNS: &str = "id, user_id, name, algorithm, fingerprint, public_key, created_at";

fn ssh_key_from_row(row: &AnyRow) -> Result<SshKeyRecord, StoreError> {
    Ok(SshKeyRecord {
        id: col_parsed(row, "id", SshKeyId::parse)?,
        user_id: col_parsed(row, "user_id", UserId::parse)?,
        name: col(row, "name")?,
        algorithm: col(row, "algorithm")?,
        fingerprint: col(row, "fingerprint")?,
        public_key: col(row, "public_key")?,
        created_at: col(row, "created_at")?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeTokenRecord {
    pub id: RuntimeTokenId,
    pub user_id: UserId,
    pub session_id: SessionId,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl RuntimeTokenRecord {
    /// Neither revoked nor expired at `now`.
    pub fn active_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

const RUNTIME_TOKEN_COLUMNS: &str = "id, user_id, session_id, created_at, expires_at, revoked_at";

fn runtime_token_from_row(row: &AnyRow) -> Result<RuntimeTokenRecord, StoreError> {
    Ok(RuntimeTokenRecord {
        id: col_parsed(row, "id", RuntimeTokenId::parse)?,
        user_id: col_parsed(row, "user_id", UserId::parse)?,
        session_id: col_parsed(row, "session_id", SessionId::parse)?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        revoked_at: col(row, "revoked_at")?,
    })
}

impl Store {
    /// Registers `key` for `user` under `name`. The same key again (same fingerprint) answers
    /// with the existing entry and `false`; a user with [`MAX_SSH_KEYS_PER_USER`] keys is
    /// `Invalid`.
    pub async fn add_ssh_key(
        &self,
        user: &UserId,
        name: &str,
        key: &ParsedPublicKey,
        now: i64,
    ) -> Result<(SshKeyRecord, bool), StoreError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "SELECT {SSH_KEY_COLUMNS} FROM ssh_keys WHERE user_id = $1 AND fingerprint = $2"
        );
        let existing = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(&key.fingerprint)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = existing {
            return Ok((ssh_key_from_row(&row)?, false));
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ssh_keys WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_one(&mut *tx)
            .await?;
        if u64::try_from(count).unwrap_or(u64::MAX) >= MAX_SSH_KEYS_PER_USER {
            return Err(StoreError::Invalid(format!(
                "public_key: at most {MAX_SSH_KEYS_PER_USER} SSH keys per user; remove one first"
            )));
        }
        let record = SshKeyRecord {
            id: SshKeyId::new(),
            user_id: user.clone(),
            name: name.to_owned(),
            algorithm: key.algorithm.clone(),
            fingerprint: key.fingerprint.clone(),
            public_key: key.public_openssh.clone(),
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO ssh_keys (id, user_id, name, algorithm, fingerprint, public_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(record.id.as_str())
        .bind(user.as_str())
        .bind(name)
        .bind(&record.algorithm)
        .bind(&record.fingerprint)
        .bind(&record.public_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((record, true))
    }

    /// `user`'s SSH keys, oldest first.
    pub async fn ssh_keys(&self, user: &UserId) -> Result<Vec<SshKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {SSH_KEY_COLUMNS} FROM ssh_keys WHERE user_id = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql).bind(user.as_str()).fetch_all(&self.pool).await?;
        rows.iter().map(ssh_key_from_row).collect()
    }

    /// Removes one of `user`'s keys; someone else's (or an unknown one) is `NotFound`.
    pub async fn remove_ssh_key(
        &self,
        user: &UserId,
        id: &SshKeyId,
    ) -> Result<SshKeyRecord, StoreError> {
        let sql = format!("SELECT {SSH_KEY_COLUMNS} FROM ssh_keys WHERE id = $1 AND user_id = $2");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        let record = ssh_key_from_row(&row)?;
        sqlx::query("DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2")
            .bind(id.as_str())
            .bind(user.as_str())
            .execute(&self.pool)
            .await?;
        Ok(record)
    }

    /// Issues a runtime token for `user` on `session`, identified by the hash of its secret.
    pub async fn create_runtime_token(
        &self,
        user: &UserId,
        session: &SessionId,
        token_hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<RuntimeTokenRecord, StoreError> {
        let record = RuntimeTokenRecord {
            id: RuntimeTokenId::new(),
            user_id: user.clone(),
            session_id: session.clone(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO runtime_tokens (id, user_id, session_id, token_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.id.as_str())
        .bind(user.as_str())
        .bind(session.as_str())
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(record)
    }

    /// The token whose secret hashes to `token_hash`, if it is neither revoked nor expired at
    /// `now`.
    pub async fn runtime_token_by_hash(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<RuntimeTokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {RUNTIME_TOKEN_COLUMNS} FROM runtime_tokens
             WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2"
        );
        let row = sqlx::query(&sql).bind(token_hash).bind(now).fetch_optional(&self.pool).await?;
        row.as_ref().map(runtime_token_from_row).transpose()
    }

    /// A token by id, whatever its state.
    pub async fn runtime_token(
        &self,
        id: &RuntimeTokenId,
    ) -> Result<Option<RuntimeTokenRecord>, StoreError> {
        let sql = format!("SELECT {RUNTIME_TOKEN_COLUMNS} FROM runtime_tokens WHERE id = $1");
        let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(runtime_token_from_row).transpose()
    }

    /// Moves the expiry of `user`'s active token `id` on `session` to `expires_at` (never
    /// backwards). A token that is someone else's, of another session, revoked or expired is
    /// `NotFound`: renewing cannot bring a dead token back.
    pub async fn renew_runtime_token(
        &self,
        user: &UserId,
        session: &SessionId,
        id: &RuntimeTokenId,
        now: i64,
        expires_at: i64,
    ) -> Result<RuntimeTokenRecord, StoreError> {
        let done = sqlx::query(
            "UPDATE runtime_tokens SET expires_at = $5
             WHERE id = $1 AND user_id = $2 AND session_id = $3
               AND revoked_at IS NULL AND expires_at > $4 AND expires_at < $5",
        )
        .bind(id.as_str())
        .bind(user.as_str())
        .bind(session.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        let token = self.runtime_token(id).await?.ok_or(StoreError::NotFound)?;
        let mine = token.user_id == *user && token.session_id == *session;
        if !mine || (done.rows_affected() == 0 && !token.active_at(now)) {
            return Err(StoreError::NotFound);
        }
        Ok(token)
    }

    /// Revokes `user`'s token `id` on `session`; live connections made with it are cut by their
    /// watchers. Revoking twice is fine; someone else's token is `NotFound`.
    pub async fn revoke_runtime_token(
        &self,
        user: &UserId,
        session: &SessionId,
        id: &RuntimeTokenId,
        now: i64,
    ) -> Result<RuntimeTokenRecord, StoreError> {
        sqlx::query(
            "UPDATE runtime_tokens SET revoked_at = $4
             WHERE id = $1 AND user_id = $2 AND session_id = $3 AND revoked_at IS NULL",
        )
        .bind(id.as_str())
        .bind(user.as_str())
        .bind(session.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        match self.runtime_token(id).await? {
            Some(t) if t.user_id == *user && t.session_id == *session => Ok(t),
            _ => Err(StoreError::NotFound),
        }
    }

    /// Deletes tokens that expired before `before` (for the reconciler); returns how many.
    pub async fn purge_runtime_tokens(&self, before: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM runtime_tokens WHERE expires_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
