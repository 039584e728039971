//! Device authorization for the CLI (RFC 8628) and its tokens: a short-lived access token and a
//! refresh token that rotates on every use; presenting a used refresh token revokes the whole
//! login ("family"), access tokens included.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use domain::ids::RefreshFamilyId;
use domain::secrets::{self, SecretKind};
use domain::store::{DevicePoll, Rotation, now_ms};

use crate::auth::{Principal, RequestMeta};
use crate::identity::audit_account;
use crate::{AppError, AppState};

/// An RFC 6749 §5.2 error from the token endpoint.
pub struct OAuthFailure(StatusCode, &'static str, &'static str);

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let body = sdk::OAuthError {
            error: self.1.to_string(),
            error_description: Some(self.2.to_string()),
        };
        (self.0, Json(body)).into_response()
    }
}

fn bad(error: &'static str, description: &'static str) -> OAuthFailure {
    OAuthFailure(StatusCode::BAD_REQUEST, error, description)
}

pub async fn code(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::DeviceCodeRequest,
) -> Result<sdk::DeviceCodeResponse, AppError> {
    let client = req.client_name.trim();
    if client.is_empty() || client.chars().count() > 100 || client.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "client_name",
            "client_name: must be 1 to 100 characters, no control characters",
        ));
    }
    let cfg = &state.config.auth;
    let now = now_ms();
    let (device_code, hash) = secrets::generate(SecretKind::DeviceCode);
    // A user code may clash with another pending one; a new one almost never does.
    let mut attempt = 0;
    let user_code = loop {
        let code = secrets::user_code();
        match state
            .store
            .create_device_authorization(
                &hash,
                &code,
                client,
                meta.ip.as_deref(),
                cfg.device_poll_interval_secs as i64,
                now,
                now + cfg.device_code_ttl_secs as i64 * 1000,
            )
            .await
        {
            Ok(_) => break code,
            Err(domain::StoreError::Conflict { .. }) if attempt < 5 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let base = state.config.public_url.as_str().trim_end_matches('/');
    let shown = secrets::display_user_code(&user_code);
    Ok(sdk::DeviceCodeResponse {
        device_code,
        verification_uri: format!("{base}/device"),
        verification_uri_complete: format!("{base}/device?code={shown}"),
        user_code: shown,
        expires_in: cfg.device_code_ttl_secs,
        interval: cfg.device_poll_interval_secs,
    })
}

/// Where a token pair comes from: a new login, or the rotation of a refresh token.
enum Grant<'a> {
    New { user: &'a domain::ids::UserId, client: &'a str },
    Rotate { old_hash: &'a [u8] },
}

/// Issues an access + refresh token pair; a rotation that is refused comes back as `Err`.
async fn issue(
    state: &AppState,
    grant: Grant<'_>,
) -> Result<Result<(sdk::TokenPair, RefreshFamilyId), Rotation>, AppError> {
    let cfg = &state.config.auth;
    let now = now_ms();
    let (refresh, refresh_hash) = secrets::generate(SecretKind::RefreshToken);
    let refresh_expires = now + cfg.refresh_token_ttl_days as i64 * 86_400_000;
    let (user, family, client) = match grant {
        Grant::New { user, client } => {
            let family = RefreshFamilyId::new();
            state
                .store
                .create_refresh_token(user, &family, &refresh_hash, client, now, refresh_expires)
                .await?;
            (user.clone(), family, client.to_string())
        }
        Grant::Rotate { old_hash } => match state
            .store
            .rotate_refresh_token(old_hash, &refresh_hash, now, refresh_expires)
            .await?
        {
            Rotation::Rotated { user, family, client_name } => (user, family, client_name),
            other => return Ok(Err(other)),
        },
    };
    let (access, access_hash) = secrets::generate(SecretKind::AccessToken);
    state
        .store
        .create_family_access_token(
            &user,
            &family,
            &format!("CLI: {client}"),
            &access_hash,
            now,
            now + cfg.access_token_ttl_secs as i64 * 1000,
        )
        .await?;
    let pair = sdk::TokenPair {
        access_token: access,
        refresh_token: refresh,
        token_type: "Bearer".into(),
        expires_in: cfg.access_token_ttl_secs,
    };
    Ok(Ok((pair, family)))
}

pub async fn token(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::DeviceTokenRequest,
) -> Result<Response, AppError> {
    if req.grant_type != sdk::DEVICE_GRANT_TYPE {
        return Ok(bad(
            "unsupported_grant_type",
            "grant_type must be urn:ietf:params:oauth:grant-type:device_code",
        )
        .into_response());
    }
    let poll =
        state.store.poll_device_authorization(&secrets::hash(&req.device_code), now_ms()).await?;
    Ok(match poll {
        DevicePoll::Unknown => bad("invalid_grant", "unknown device code").into_response(),
        DevicePoll::Pending => {
            bad("authorization_pending", "waiting for approval in the browser").into_response()
        }
        DevicePoll::SlowDown { .. } => {
            bad("slow_down", "polling too fast: wait 5 more seconds between polls").into_response()
        }
        DevicePoll::Denied => {
            bad("access_denied", "the request was denied in the browser").into_response()
        }
        DevicePoll::Expired => {
            bad("expired_token", "the code expired; run `flare auth login` again").into_response()
        }
        DevicePoll::Approved { user, client_name } => {
            match issue(state, Grant::New { user: &user, client: &client_name }).await? {
                Ok((pair, family)) => {
                    audit_account(
                        state,
                        meta,
                        &user,
                        "auth.signin",
                        Some(("cli_session", family.to_string())),
                        serde_json::json!({ "method": "device", "client": client_name }),
                    )
                    .await?;
                    Json(pair).into_response()
                }
                Err(_) => {
                    return Err(AppError::Internal(anyhow::anyhow!(
                        "new refresh family could not be issued"
                    )));
                }
            }
        }
    })
}

pub async fn refresh(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::RefreshRequest,
) -> Result<sdk::TokenPair, AppError> {
    let old = secrets::hash(req.refresh_token.trim());
    match issue(state, Grant::Rotate { old_hash: &old }).await? {
        Ok((pair, _)) => Ok(pair),
        Err(Rotation::Reused { user, family }) => {
            audit_account(
                state,
                meta,
                &user,
                "cli_session.reuse_revoked",
                Some(("cli_session", family.to_string())),
                serde_json::json!({ "reason": "a used refresh token was presented" }),
            )
            .await?;
            Err(AppError::Unauthenticated(
                "this refresh token was already used, so this CLI login was revoked; run `flare auth login`",
            ))
        }
        Err(Rotation::Concurrent) => Err(AppError::Conflict(
            "refresh_token: another process of this CLI refreshed it a moment ago; re-read the stored tokens"
                .into(),
        )),
        Err(_) => Err(AppError::Unauthenticated(
            "the refresh token is not valid (expired or revoked); run `flare auth login`",
        )),
    }
}

pub async fn revoke(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::RefreshRequest,
) -> Result<(), AppError> {
    if let Some((user, family)) = state
        .store
        .revoke_refresh_family_by_token(&secrets::hash(req.refresh_token.trim()), now_ms())
        .await?
    {
        audit_account(
            state,
            meta,
            &user,
            "auth.cli_logout",
            Some(("cli_session", family.to_string())),
            serde_json::json!({}),
        )
        .await?;
    }
    Ok(())
}

pub async fn cli_sessions(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<sdk::CliSessionInfo>, AppError> {
    Ok(state
        .store
        .list_cli_sessions(&principal.user.id, now_ms())
        .await?
        .into_iter()
        .map(|c| sdk::CliSessionInfo {
            id: c.family.to_string(),
            client_name: c.client_name,
            created_at: c.created_at,
            last_used_at: c.last_used_at,
        })
        .collect())
}

pub async fn cli_session_revoke(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: &str,
) -> Result<(), AppError> {
    let family = RefreshFamilyId::parse(id).map_err(|_| AppError::NotFound)?;
    state.store.revoke_refresh_family(&principal.user.id, &family, now_ms()).await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "cli_session.revoke",
        Some(("cli_session", family.to_string())),
        serde_json::json!({}),
    )
    .await
}

/// Wrong user codes are limited per signed-in user, so guessing is slow while the person who
/// types their own code (once or twice) is never locked out by someone else.
#[derive(Default)]
pub struct CodeAttempts {
    seen: std::sync::Mutex<HashMap<String, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(600);
const MAX_MISSES: u32 = 10;

impl CodeAttempts {
    pub fn blocked(&self, who: &str) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(who).is_some_and(|(start, n)| start.elapsed() < WINDOW && *n >= MAX_MISSES)
    }

    pub fn miss(&self, who: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, (start, _)| start.elapsed() < WINDOW);
        let entry = seen.entry(who.to_string()).or_insert((Instant::now(), 0));
        entry.1 += 1;
    }
}

/// Looks a typed code up for the approval page.
pub async fn lookup(
    state: &AppState,
    principal: &Principal,
    typed: &str,
) -> Result<domain::store::DeviceAuthorization, AppError> {
    let who = principal.user.id.to_string();
    if state.code_attempts.blocked(&who) {
        return Err(AppError::RateLimited("too many wrong codes; wait 10 minutes and try again"));
    }
    let found = match secrets::normalize_user_code(typed) {
        Some(code) => state.store.pending_device_authorization(&code, now_ms()).await?,
        None => None,
    };
    found.ok_or_else(|| {
        state.code_attempts.miss(&who);
        AppError::invalid("code", "code: no pending sign-in has this code (typo, or it expired?)")
    })
}

pub async fn decide(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    typed: &str,
    approve: bool,
) -> Result<(), AppError> {
    let pending = lookup(state, principal, typed).await?;
    state
        .store
        .decide_device_authorization(&pending.id, &principal.user.id, approve, now_ms())
        .await?;
    let action = if approve { "device.approve" } else { "device.deny" };
    audit_account(
        state,
        meta,
        &principal.user.id,
        action,
        Some(("device_authorization", pending.id.to_string())),
        serde_json::json!({ "client": pending.client_name, "client_ip": pending.ip }),
    )
    .await
}
