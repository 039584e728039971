//! CLI refresh tokens, which rotate on every use. The tokens descended from one login form a family
//! (one CLI session); the short-lived access tokens minted along the way are `api_tokens` rows that
//! name the family. Presenting a token that was already used means two parties hold it, so it
//! revokes the whole family, access tokens included. Only hashes are stored.

use sqlx::any::AnyRow;
use sqlx::{Any, Transaction};

use super::{ApiToken, Store, StoreError, col, col_parsed, conflict_on_unique};
use crate::ids::{ApiTokenId, RefreshFamilyId, RefreshTokenId, UserId};

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was good and is now spent; its successor (the new hash) is live in the same family.
    Rotated { user: UserId, family: RefreshFamilyId, client_name: String },
    /// The token had been used before, or its family revoked: the whole family is revoked now.
    Reused { user: UserId, family: RefreshFamilyId },
    /// Unknown or expired. Nothing changed.
    Invalid,
    /// Spent moments ago (within [`CONCURRENT_REFRESH_GRACE_MS`]) by a rotation that is not
    /// revoked: another process of the same CLI refreshed at the same time. Nothing changed;
    /// that client should re-read the tokens the winner stored.
    Concurrent,
}

/// How long after a rotation presenting the spent token again counts as a concurrent refresh
/// by the same CLI rather than as theft. Two `flare` processes refreshing at once must not sign
/// each other out; a copy used later still revokes the family.
pub const CONCURRENT_REFRESH_GRACE_MS: i64 = 10_000;

/// A signed-in CLI: one refresh token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliSession {
    pub family: RefreshFamilyId,
    pub client_name: String,
    /// When the login happened.
    pub created_at: i64,
    /// The latest refresh or access token use; the access token part is up to a minute stale.
    pub last_used_at: Option<i64>,
}

fn cli_session_from_row(row: &AnyRow) -> Result<CliSession, StoreError> {
    let refreshed_at: Option<i64> = col(row, "refreshed_at")?;
    let access_used_at: Option<i64> = col(row, "access_used_at")?;
    Ok(CliSession {
        family: col_parsed(row, "family_id", RefreshFamilyId::parse)?,
        client_name: col(row, "client_name")?,
        created_at: col(row, "started_at")?,
        last_used_at: refreshed_at.max(access_used_at),
    })
}

/// Revokes every refresh token of `family` and every access token minted from it. Returns how many
/// refresh tokens this revoked.
async fn revoke_family(
    tx: &mut Transaction<'static, Any>,
    family: &RefreshFamilyId,
    now: i64,
) -> Result<u64, StoreError> {
    let mut revoked = 0;
    // On PostgreSQL, a rotation in flight when the first pass starts holds the old token's row;
    // the pass waits for it, but the successor it inserts is newer than the pass's snapshot. The
    // next pass sees it. Passes end once one finds nothing: the tokens already revoked stay locked
    // until commit, so no further rotation can start from them.
    loop {
        let updated = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family.as_str())
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 0 {
            break;
        }
        revoked += updated;
    }
    sqlx::query(
        "UPDATE api_tokens SET revoked_at = $2 WHERE refresh_family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(revoked)
}

impl Store {
    /// Issues a refresh token in `family`: the first of a new family at login.
    pub async fn create_refresh_token(
        &self,
        user: &UserId,
        family: &RefreshFamilyId,
        token_hash: &[u8],
        client_name: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<RefreshTokenId, StoreError> {
        let id = RefreshTokenId::new();
        sqlx::query(
            "INSERT INTO refresh_tokens
                 (id, family_id, user_id, token_hash, client_name, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(family.as_str())
        .bind(user.as_str())
        .bind(token_hash)
        .bind(client_name)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_on_unique("refresh token"))?;
        Ok(id)
    }

    /// Mints an access token of `family`, revoked together with it. A family that is not `user`'s,
    /// or has no live refresh token left (revoked, expired), is `NotFound`: a revoked login cannot
    /// mint more.
    pub async fn create_family_access_token(
        &self,
        user: &UserId,
        family: &RefreshFamilyId,
        name: &str,
        token_hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<ApiToken, StoreError> {
        let token = ApiToken {
            id: ApiTokenId::new(),
            user_id: user.clone(),
            name: name.to_owned(),
            created_at: now,
            expires_at: Some(expires_at),
            last_used_at: None,
        };
        let inserted = sqlx::query(
            "INSERT INTO api_tokens
                 (id, user_id, name, token_hash, refresh_family_id, created_at, expires_at)
             SELECT $1, $2, $3, $4, $5, $6, $7
             WHERE EXISTS (
                 SELECT 1 FROM refresh_tokens
                 WHERE family_id = $5 AND user_id = $2 AND revoked_at IS NULL AND expires_at > $6
             )",
        )
        .bind(token.id.as_str())
        .bind(user.as_str())
        .bind(name)
        .bind(token_hash)
        .bind(family.as_str())
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_on_unique("access token"))?
        .rows_affected();
        if inserted == 1 { Ok(token) } else { Err(StoreError::NotFound) }
    }

    /// Spends the refresh token hashing to `old_hash` and issues its successor `new_hash` in the
    /// same family, expiring at `expires_at`. A token used before (or of a revoked family) revokes
    /// the whole family, access tokens included, and is `Reused`; an unknown or expired one is
    /// `Invalid`. Of two rotations of the same token at once, exactly one is `Rotated`.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now: i64,
        expires_at: i64,
    ) -> Result<Rotation, StoreError> {
        let mut tx = self.pool.begin().await?;
        // The compare-and-set: whoever flips used_at owns the rotation. Being a write, it also
        // takes SQLite's write lock first, so the reads below see the latest data.
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2
             WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2
             RETURNING user_id, family_id, client_name",
        )
        .bind(old_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = spent {
            let user = col_parsed(&row, "user_id", UserId::parse)?;
            let family = col_parsed(&row, "family_id", RefreshFamilyId::parse)?;
            let client_name: String = col(&row, "client_name")?;
            // A failure here drops `tx`, which rolls the spending back.
            sqlx::query(
                "INSERT INTO refresh_tokens
                     (id, family_id, user_id, token_hash, client_name, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(RefreshTokenId::new().as_str())
            .bind(family.as_str())
            .bind(user.as_str())
            .bind(new_hash)
            .bind(client_name.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique("refresh token"))?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user, family, client_name });
        }

        let row = sqlx::query(
            "SELECT user_id, family_id, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let used_at: Option<i64> = col(&row, "used_at")?;
        let revoked_at: Option<i64> = col(&row, "revoked_at")?;
        if used_at.is_none() && revoked_at.is_none() {
            let expires_at: i64 = col(&row, "expires_at")?;
            // Neither spent nor revoked, yet the compare-and-set missed it: it expired, or a
            // concurrent rotation spent it and has not committed yet (this read predates it).
            return Ok(if expires_at > now { Rotation::Concurrent } else { Rotation::Invalid });
        }
        if revoked_at.is_none() && used_at.is_some_and(|at| now - at < CONCURRENT_REFRESH_GRACE_MS)
        {
            return Ok(Rotation::Concurrent);
        }
        let user = col_parsed(&row, "user_id", UserId::parse)?;
        let family = col_parsed(&row, "family_id", RefreshFamilyId::parse)?;
        revoke_family(&mut tx, &family, now).await?;
        tx.commit().await?;
        Ok(Rotation::Reused { user, family })
    }

    /// Signs one of `user`'s CLIs out: revokes the family and its access tokens. Someone else's
    /// family, or one already revoked, is `NotFound`.
    pub async fn revoke_refresh_family(
        &self,
        user: &UserId,
        family: &RefreshFamilyId,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let owned = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $3
             WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(family.as_str())
        .bind(user.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if owned == 0 {
            return Err(StoreError::NotFound);
        }
        revoke_family(&mut tx, family, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Logout from the CLI: revokes the family of the refresh token hashing to `token_hash` (used
    /// or not, expired or not). Idempotent. Returns whose family it ended, or `None` when the token
    /// is unknown or its family was already revoked, so that a logout is recorded once.
    pub async fn revoke_refresh_family_by_token(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<(UserId, RefreshFamilyId)>, StoreError> {
        // A token's user and family never change: reading them outside the transaction is safe.
        let row =
            sqlx::query("SELECT user_id, family_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user = col_parsed(&row, "user_id", UserId::parse)?;
        let family = col_parsed(&row, "family_id", RefreshFamilyId::parse)?;
        let mut tx = self.pool.begin().await?;
        let revoked = revoke_family(&mut tx, &family, now).await?;
        tx.commit().await?;
        Ok((revoked > 0).then_some((user, family)))
    }

    /// `user`'s signed-in CLIs: families with a refresh token that is neither revoked nor expired,
    /// newest login first.
    pub async fn list_cli_sessions(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<Vec<CliSession>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.family_id, MIN(r.client_name) AS client_name, MIN(r.created_at) AS started_at,
                    MAX(r.used_at) AS refreshed_at,
                    (SELECT MAX(a.last_used_at) FROM api_tokens a
                     WHERE a.refresh_family_id = r.family_id) AS access_used_at
             FROM refresh_tokens r
             WHERE r.user_id = $1
             GROUP BY r.family_id
             HAVING MAX(CASE WHEN r.revoked_at IS NULL AND r.expires_at > $2 THEN 1 ELSE 0 END) = 1
             ORDER BY started_at DESC, r.family_id DESC",
        )
        .bind(user.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cli_session_from_row).collect()
    }
}
