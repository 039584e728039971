//! API tokens: bearer tokens for the CLI and scripts. Only a hash of each token is stored.

use sqlx::any::AnyRow;

use super::{Store, StoreError, TOUCH_INTERVAL_MS, col, col_parsed};
use crate::ids::{ApiTokenId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: ApiTokenId,
    pub user_id: UserId,
    pub name: String,
    pub created_at: i64,
    /// `None` for a token that lives until revoked.
    pub expires_at: Option<i64>,
    /// Up to a minute stale: it is written at most once a minute.
    pub last_used_at: Option<i64>,
}

const API_TOKEN_COLUMNS: &str = "id, user_id, name, created_at, expires_at, last_used_at";

/// The conditions under which a token is still good at `$2`.
const ACTIVE_AT_2: &str = "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)";

fn api_token_from_row(row: &AnyRow) -> Result<ApiToken, StoreError> {
    Ok(ApiToken {
        id: col_parsed(row, "id", ApiTokenId::parse)?,
        user_id: col_parsed(row, "user_id", UserId::parse)?,
        name: col(row, "name")?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        last_used_at: col(row, "last_used_at")?,
    })
}

impl Store {
    /// Issues a token for `user`, identified from now on by the hash of its secret.
    pub async fn create_api_token(
        &self,
        user: &UserId,
        name: &str,
        token_hash: &[u8],
        now: i64,
        expires_at: Option<i64>,
    ) -> Result<ApiToken, StoreError> {
        let token = ApiToken {
            id: ApiTokenId::new(),
            user_id: user.clone(),
            name: name.to_owned(),
            created_at: now,
            expires_at,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token.id.as_str())
        .bind(user.as_str())
        .bind(name)
        .bind(token_hash)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// The live token whose secret hashes to `token_hash`, or `None` when it is unknown, revoked or
    /// expired. Records the use, at most once a minute per token to keep reads cheap.
    pub async fn api_token_by_hash(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND {ACTIVE_AT_2}"
        );
        let row = sqlx::query(&sql).bind(token_hash).bind(now).fetch_optional(&self.pool).await?;
        let Some(mut token) = row.as_ref().map(api_token_from_row).transpose()? else {
            return Ok(None);
        };
        if token.last_used_at.is_none_or(|at| now - at > TOUCH_INTERVAL_MS) {
            token.last_used_at = Some(now);
            // The guard keeps concurrent requests from each writing, or moving it backwards.
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $2
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(token.id.as_str())
            .bind(now)
            .bind(now - TOUCH_INTERVAL_MS)
            .execute(&self.pool)
            .await?;
        }
        Ok(Some(token))
    }

    /// `user`'s live tokens, newest first.
    pub async fn list_api_tokens(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<Vec<ApiToken>, StoreError> {
        let sql = format!(
            "SELECT {API_TOKEN_COLUMNS} FROM api_tokens
             WHERE user_id = $1 AND {ACTIVE_AT_2} AND refresh_family_id IS NULL
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(&sql).bind(user.as_str()).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(api_token_from_row).collect()
    }

    /// Revokes one of `user`'s tokens, effective on its next use. Someone else's token, or one
    /// already revoked, is `NotFound`.
    pub async fn revoke_api_token(
        &self,
        user: &UserId,
        id: &ApiTokenId,
        now: i64,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3
             WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(id.as_str())
        .bind(user.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }
}
