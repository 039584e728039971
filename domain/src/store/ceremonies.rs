//! WebAuthn ceremony state between the challenge and the browser's answer. It stays on the server
//! (never in a cookie) and can be taken once: a replayed answer finds nothing.

use super::{Store, StoreError, col, col_parsed_opt};
use crate::ids::{CeremonyId, UserId};

/// Which WebAuthn ceremony a stored state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CeremonyKind {
    /// Creating a passkey (sign-up, or adding one to an account).
    Registration,
    /// Signing in with a passkey.
    Authentication,
}

impl CeremonyKind {
    /// The spelling stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyKind::Registration => "registration",
            CeremonyKind::Authentication => "authentication",
        }
    }
}

/// A ceremony taken back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    /// `None` for ceremonies that start without an account (sign-up, discoverable sign-in).
    pub user_id: Option<UserId>,
    /// webauthn-rs registration or authentication state, serialized.
    pub state_json: String,
    /// What the ceremony is for, e.g. the pending sign-up's email and name.
    pub context_json: String,
}

impl Store {
    /// Keeps a ceremony's state until `now + ttl_ms`, and returns the id to hand to the browser.
    pub async fn put_ceremony(
        &self,
        kind: CeremonyKind,
        user: Option<&UserId>,
        state_json: &str,
        context_json: &str,
        now: i64,
        ttl_ms: i64,
    ) -> Result<CeremonyId, StoreError> {
        let id = CeremonyId::new();
        sqlx::query(
            "INSERT INTO webauthn_ceremonies
                 (id, kind, user_id, state_json, context_json, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(kind.as_str())
        .bind(user.map(UserId::as_str))
        .bind(state_json)
        .bind(context_json)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Takes ceremony `id` of `kind`: the row is deleted in the same statement that reads it, so
    /// of two concurrent takes only one gets it. `None` when it is missing, already taken, of the
    /// other kind (it is then left alone) or expired (it is then deleted as well).
    pub async fn take_ceremony(
        &self,
        id: &CeremonyId,
        kind: CeremonyKind,
        now: i64,
    ) -> Result<Option<Ceremony>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM webauthn_ceremonies
             WHERE id = $1 AND (kind = $2 OR expires_at <= $3)
             RETURNING kind, user_id, state_json, context_json, expires_at",
        )
        .bind(id.as_str())
        .bind(kind.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored_kind: String = col(&row, "kind")?;
        let expires_at: i64 = col(&row, "expires_at")?;
        if stored_kind != kind.as_str() || expires_at <= now {
            return Ok(None);
        }
        Ok(Some(Ceremony {
            user_id: col_parsed_opt(&row, "user_id", UserId::parse)?,
            state_json: col(&row, "state_json")?,
            context_json: col(&row, "context_json")?,
        }))
    }

    /// Deletes every ceremony expired at `now`; returns how many. For a reconcile schedule: expired
    /// ceremonies are refused anyway, this only reclaims the rows.
    pub async fn purge_expired_ceremonies(&self, now: i64) -> Result<u64, StoreError> {
        let deleted = sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}
