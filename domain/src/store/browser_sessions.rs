//! Browser sign-in sessions behind the session cookie. Only a hash of the cookie's token is stored.
//!
//! A session ends at the first of: revocation, `idle_expires_at` (pushed forward while it is used)
//! and `absolute_expires_at` (fixed at sign-in).

use sqlx::any::AnyRow;

use super::{Store, StoreError, TOUCH_INTERVAL_MS, col, col_parsed};
use crate::ids::{BrowserSessionId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSession {
    pub id: BrowserSessionId,
    pub user_id: UserId,
    /// Rendered into forms and checked on every unsafe request.
    pub csrf_token: String,
    pub created_at: i64,
    /// Up to a minute stale: it is written at most once a minute.
    pub last_seen_at: i64,
    pub idle_expires_at: i64,
    pub absolute_expires_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Signed in with a recovery code: the session may do nothing but add a passkey.
    pub must_add_passkey: bool,
}

const BROWSER_SESSION_COLUMNS: &str = "id, user_id, csrf_token, created_at, last_seen_at, \
     idle_expires_at, absolute_expires_at, ip, user_agent, must_add_passkey";

/// The conditions under which a session is still good at `$2`.
const ACTIVE_AT_2: &str =
    "revoked_at IS NULL AND idle_expires_at > $2 AND absolute_expires_at > $2";

fn browser_session_from_row(row: &AnyRow) -> Result<BrowserSession, StoreError> {
    Ok(BrowserSession {
        id: col_parsed(row, "id", BrowserSessionId::parse)?,
        user_id: col_parsed(row, "user_id", UserId::parse)?,
        csrf_token: col(row, "csrf_token")?,
        created_at: col(row, "created_at")?,
        last_seen_at: col(row, "last_seen_at")?,
        idle_expires_at: col(row, "idle_expires_at")?,
        absolute_expires_at: col(row, "absolute_expires_at")?,
        ip: col(row, "ip")?,
        user_agent: col(row, "user_agent")?,
        must_add_passkey: col::<i64>(row, "must_add_passkey")? != 0,
    })
}

impl Store {
    /// Starts a session for `user`, identified from now on by the hash of its cookie token.
    #[allow(clippy::too_many_arguments)] // One call site (sign-in); a struct would only rename them.
    pub async fn create_browser_session(
        &self,
        user: &UserId,
        token_hash: &[u8],
        csrf_token: &str,
        now: i64,
        idle_ttl_ms: i64,
        absolute_ttl_ms: i64,
        ip: Option<&str>,
        user_agent: Option<&str>,
        must_add_passkey: bool,
    ) -> Result<BrowserSession, StoreError> {
        let absolute_expires_at = now.saturating_add(absolute_ttl_ms);
        let session = BrowserSession {
            id: BrowserSessionId::new(),
            user_id: user.clone(),
            csrf_token: csrf_token.to_owned(),
            created_at: now,
            last_seen_at: now,
            idle_expires_at: now.saturating_add(idle_ttl_ms).min(absolute_expires_at),
            absolute_expires_at,
            ip: ip.map(str::to_owned),
            user_agent: user_agent.map(str::to_owned),
            must_add_passkey,
        };
        sqlx::query(
            "INSERT INTO browser_sessions
                 (id, user_id, token_hash, csrf_token, created_at, last_seen_at, idle_expires_at,
                  absolute_expires_at, ip, user_agent, must_add_passkey)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10)",
        )
        .bind(session.id.as_str())
        .bind(user.as_str())
        .bind(token_hash)
        .bind(csrf_token)
        .bind(now)
        .bind(session.idle_expires_at)
        .bind(absolute_expires_at)
        .bind(ip)
        .bind(user_agent)
        .bind(i64::from(must_add_passkey))
        .execute(&self.pool)
        .await?;
        Ok(session)
    }

    /// The live session whose cookie token hashes to `token_hash`, or `None` when it is unknown,
    /// revoked or expired. Using a session pushes its idle expiry to `now + idle_ttl_ms` (never
    /// past the absolute expiry); to keep reads cheap, that write happens at most once a minute.
    pub async fn browser_session_by_token_hash(
        &self,
        token_hash: &[u8],
        now: i64,
        idle_ttl_ms: i64,
    ) -> Result<Option<BrowserSession>, StoreError> {
        let sql = format!(
            "SELECT {BROWSER_SESSION_COLUMNS} FROM browser_sessions
             WHERE token_hash = $1 AND {ACTIVE_AT_2}"
        );
        let row = sqlx::query(&sql).bind(token_hash).bind(now).fetch_optional(&self.pool).await?;
        let Some(mut session) = row.as_ref().map(browser_session_from_row).transpose()? else {
            return Ok(None);
        };
        if now - session.last_seen_at > TOUCH_INTERVAL_MS {
            session.last_seen_at = now;
            session.idle_expires_at =
                now.saturating_add(idle_ttl_ms).min(session.absolute_expires_at);
            // The last_seen_at guard keeps concurrent requests from each writing (or from moving
            // it backwards when they finish out of order).
            sqlx::query(
                "UPDATE browser_sessions SET last_seen_at = $2, idle_expires_at = $3
                 WHERE id = $1 AND last_seen_at < $4",
            )
            .bind(session.id.as_str())
            .bind(now)
            .bind(session.idle_expires_at)
            .bind(now - TOUCH_INTERVAL_MS)
            .execute(&self.pool)
            .await?;
        }
        Ok(Some(session))
    }

    /// `user`'s live sessions, newest first.
    pub async fn list_browser_sessions(
        &self,
        user: &UserId,
        now: i64,
    ) -> Result<Vec<BrowserSession>, StoreError> {
        let sql = format!(
            "SELECT {BROWSER_SESSION_COLUMNS} FROM browser_sessions
             WHERE user_id = $1 AND {ACTIVE_AT_2}
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(&sql).bind(user.as_str()).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(browser_session_from_row).collect()
    }

    /// Ends one of `user`'s sessions, effective on its next request. Someone else's session, or one
    /// already revoked, is `NotFound`.
    pub async fn revoke_browser_session(
        &self,
        user: &UserId,
        id: &BrowserSessionId,
        now: i64,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE browser_sessions SET revoked_at = $3
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

    /// Signs out the session behind a cookie. Idempotent: an unknown or already revoked token is fine.
    pub async fn revoke_browser_session_by_token_hash(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE browser_sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lifts the recovery restriction from all of `user`'s sessions, once they have a passkey again.
    pub async fn clear_must_add_passkey(&self, user: &UserId) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE browser_sessions SET must_add_passkey = 0
             WHERE user_id = $1 AND must_add_passkey = 1",
        )
        .bind(user.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
