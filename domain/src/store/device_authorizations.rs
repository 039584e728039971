//! Device authorizations (RFC 8628) behind `flare auth login`: the CLI holds a secret device code
//! (only its hash is stored) and polls; the person types the short user code into the browser and
//! approves or denies. An approved code is exchanged for tokens once.
//!
//! A code moves `pending` -> `approved` | `denied` | `expired`, and `approved` -> `consumed` (or
//! `expired`, if nobody collects it in time). Every move is one conditional UPDATE from the state it
//! was read in, so racing polls and decisions cannot both win.

use sqlx::any::AnyRow;

use super::{Store, StoreError, col, col_parsed, col_parsed_opt, conflict_on_unique};
use crate::ids::{DeviceAuthorizationId, UserId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub id: DeviceAuthorizationId,
    /// Normalized: eight characters, no dash.
    pub user_code: String,
    /// `pending`, `approved`, `denied`, `consumed` or `expired`.
    pub status: String,
    /// The least time between polls; grows by 5 s each time the client polls too soon.
    pub interval_secs: i64,
    /// Shown on the approval page, e.g. "flare 0.1.0 on alice-laptop".
    pub client_name: String,
    /// Where the CLI asked from, shown on the approval page.
    pub ip: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub approved_user_id: Option<UserId>,
}

/// What a poll of the token endpoint learns (RFC 8628 section 3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevicePoll {
    /// No such device code: `invalid_grant`.
    Unknown,
    /// Not decided yet: `authorization_pending`.
    Pending,
    /// Polled sooner than the interval allows: `slow_down`, and wait `interval_secs` from now on.
    SlowDown { interval_secs: i64 },
    /// `access_denied`.
    Denied,
    /// Expired, or already exchanged for tokens: `expired_token`.
    Expired,
    /// Approved, and this poll is the one that collects it: issue tokens for `user`.
    Approved { user: UserId, client_name: String },
}

/// RFC 8628 section 3.5: "the interval MUST be increased by 5 seconds for this and all subsequent
/// requests".
const SLOW_DOWN_STEP_SECS: i64 = 5;

/// How often a poll re-reads a code that changed between its read and its write. Each retry means a
/// racing poll or decision won; the next read sees the result, so more than two is rare.
const POLL_ATTEMPTS: usize = 4;

const DEVICE_AUTHORIZATION_COLUMNS: &str = "id, user_code, status, interval_secs, client_name, ip, \
     created_at, expires_at, approved_user_id";

fn device_authorization_from_row(row: &AnyRow) -> Result<DeviceAuthorization, StoreError> {
    Ok(DeviceAuthorization {
        id: col_parsed(row, "id", DeviceAuthorizationId::parse)?,
        user_code: col(row, "user_code")?,
        status: col(row, "status")?,
        interval_secs: col(row, "interval_secs")?,
        client_name: col(row, "client_name")?,
        ip: col(row, "ip")?,
        created_at: col(row, "created_at")?,
        expires_at: col(row, "expires_at")?,
        approved_user_id: col_parsed_opt(row, "approved_user_id", UserId::parse)?,
    })
}

impl Store {
    /// Starts a device authorization. `user_code` is the normalized code (no dash). A user code
    /// that another pending authorization holds is `Conflict { what: "user code" }`: draw a new one
    /// and try again. A pending code past its expiry no longer holds its user code.
    #[allow(clippy::too_many_arguments)] // One call site (the device endpoint); a struct would only rename them.
    pub async fn create_device_authorization(
        &self,
        device_code_hash: &[u8],
        user_code: &str,
        client_name: &str,
        ip: Option<&str>,
        interval_secs: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<DeviceAuthorization, StoreError> {
        // A code nobody polled since it expired is still `pending`, and the unique index covers
        // pending codes: settle it first, so that it does not block a fresh code forever.
        sqlx::query(
            "UPDATE device_authorizations SET status = 'expired'
             WHERE user_code = $1 AND status = 'pending' AND expires_at <= $2",
        )
        .bind(user_code)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let authorization = DeviceAuthorization {
            id: DeviceAuthorizationId::new(),
            user_code: user_code.to_owned(),
            status: "pending".to_owned(),
            interval_secs,
            client_name: client_name.to_owned(),
            ip: ip.map(str::to_owned),
            created_at: now,
            expires_at,
            approved_user_id: None,
        };
        // The device code hash is unique too, but 256 random bits do not collide: a unique
        // violation here is the user code.
        sqlx::query(
            "INSERT INTO device_authorizations
                 (id, device_code_hash, user_code, status, interval_secs, client_name, ip,
                  created_at, expires_at)
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8)",
        )
        .bind(authorization.id.as_str())
        .bind(device_code_hash)
        .bind(user_code)
        .bind(interval_secs)
        .bind(client_name)
        .bind(ip)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_on_unique("user code"))?;
        Ok(authorization)
    }

    /// The authorization a person can still decide under `user_code` (normalized), for the approval
    /// page; `None` when the code is unknown, decided or expired.
    pub async fn pending_device_authorization(
        &self,
        user_code: &str,
        now: i64,
    ) -> Result<Option<DeviceAuthorization>, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_AUTHORIZATION_COLUMNS} FROM device_authorizations
             WHERE user_code = $1 AND status = 'pending' AND expires_at > $2"
        );
        let row = sqlx::query(&sql).bind(user_code).bind(now).fetch_optional(&self.pool).await?;
        row.as_ref().map(device_authorization_from_row).transpose()
    }

    /// Approves (for `user`) or denies a pending authorization. One that is no longer pending, or
    /// expired, is `NotFound`: a code is decided once.
    pub async fn decide_device_authorization(
        &self,
        id: &DeviceAuthorizationId,
        user: &UserId,
        approve: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let (status, approved_user) =
            if approve { ("approved", Some(user.as_str())) } else { ("denied", None) };
        let updated = sqlx::query(
            "UPDATE device_authorizations SET status = $2, approved_user_id = $3, decided_at = $4
             WHERE id = $1 AND status = 'pending' AND expires_at > $4",
        )
        .bind(id.as_str())
        .bind(status)
        .bind(approved_user)
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 { Ok(()) } else { Err(StoreError::NotFound) }
    }

    /// One poll of the CLI for the code whose device code hashes to `device_code_hash`. A pending
    /// code records the poll, and a poll sooner than `interval_secs` after the previous one
    /// lengthens the interval by 5 s and answers `SlowDown`. An approved code answers `Approved`
    /// exactly once, even to polls that race; after that it is `Expired`.
    pub async fn poll_device_authorization(
        &self,
        device_code_hash: &[u8],
        now: i64,
    ) -> Result<DevicePoll, StoreError> {
        for _ in 0..POLL_ATTEMPTS {
            let row = sqlx::query(
                "SELECT id, status, interval_secs, client_name, approved_user_id, expires_at,
                        last_polled_at
                 FROM device_authorizations WHERE device_code_hash = $1",
            )
            .bind(device_code_hash)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else {
                return Ok(DevicePoll::Unknown);
            };
            let id = col_parsed(&row, "id", DeviceAuthorizationId::parse)?;
            let status: String = col(&row, "status")?;
            let expires_at: i64 = col(&row, "expires_at")?;
            match status.as_str() {
                "denied" => return Ok(DevicePoll::Denied),
                "consumed" | "expired" => return Ok(DevicePoll::Expired),
                "pending" | "approved" if expires_at <= now => {
                    // Approved but not collected in time counts as expired too: the device code
                    // is what expires.
                    sqlx::query(
                        "UPDATE device_authorizations SET status = 'expired'
                         WHERE id = $1 AND status IN ('pending', 'approved') AND expires_at <= $2",
                    )
                    .bind(id.as_str())
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                    return Ok(DevicePoll::Expired);
                }
                "approved" => {
                    let user = col_parsed_opt(&row, "approved_user_id", UserId::parse)?
                        .ok_or_else(|| {
                            StoreError::Corrupt("approved device code without a user".into())
                        })?;
                    // The compare-and-set that makes the exchange happen once.
                    let consumed = sqlx::query(
                        "UPDATE device_authorizations SET status = 'consumed', last_polled_at = $2
                         WHERE id = $1 AND status = 'approved' AND expires_at > $2",
                    )
                    .bind(id.as_str())
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    if consumed == 1 {
                        return Ok(DevicePoll::Approved {
                            user,
                            client_name: col(&row, "client_name")?,
                        });
                    }
                }
                "pending" => {
                    let interval_secs: i64 = col(&row, "interval_secs")?;
                    let last_polled_at: Option<i64> = col(&row, "last_polled_at")?;
                    let too_soon = last_polled_at
                        .is_some_and(|at| now - at < interval_secs.saturating_mul(1_000));
                    let next_interval =
                        if too_soon { interval_secs + SLOW_DOWN_STEP_SECS } else { interval_secs };
                    // Conditional on the poll state read above, so that two polls at once cannot
                    // both count as on time, and a decision made meanwhile is not missed.
                    let recorded = sqlx::query(
                        "UPDATE device_authorizations SET last_polled_at = $2, interval_secs = $3
                         WHERE id = $1 AND status = 'pending' AND interval_secs = $4
                           AND last_polled_at IS NOT DISTINCT FROM $5",
                    )
                    .bind(id.as_str())
                    .bind(now)
                    .bind(next_interval)
                    .bind(interval_secs)
                    .bind(last_polled_at)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    if recorded == 1 {
                        return Ok(if too_soon {
                            DevicePoll::SlowDown { interval_secs: next_interval }
                        } else {
                            DevicePoll::Pending
                        });
                    }
                }
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "device authorization status {other}"
                    )));
                }
            }
            // The code changed between the read and the write: read it again.
        }
        // Polls kept racing each other; telling the client to keep waiting is always safe.
        Ok(DevicePoll::Pending)
    }
}
