//! Account operations shared by the JSON API and the web pages: sign-up, sign-in, recovery,
//! passkeys, browser sessions, API tokens and recovery codes. Each mutating operation writes one
//! audit event (account events go to the user's personal workspace, so its owner sees them).

use axum::http::HeaderValue;
use serde::{Deserialize, Serialize};

use domain::ids::{DisplayName, Email, UserId, WorkspaceId};
use domain::passkeys::{self, CEREMONY_TTL_MS};
use domain::secrets::{self, SecretKind};
use domain::store::{CeremonyKind, User, now_ms};

use crate::auth::{Principal, RequestMeta, SESSION_ABSOLUTE_MS, SESSION_IDLE_MS};
use crate::{AppError, AppState};

/// What a sign-up ceremony remembers between start and finish (server-side only).
#[derive(Serialize, Deserialize)]
struct SignupContext {
    user_id: String,
    email: String,
    display_name: String,
}

#[derive(Serialize, Deserialize)]
struct PasskeyContext {
    name: String,
}

fn parse_passkeys(
    stored: &[domain::store::PasskeyRecord],
) -> Result<Vec<passkeys::Passkey>, AppError> {
    stored
        .iter()
        .map(|p| passkeys::passkey_from_json(&p.passkey_json))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AppError::Internal(e.into()))
}

pub fn user_info(u: &User) -> sdk::UserInfo {
    sdk::UserInfo {
        id: u.id.to_string(),
        email: u.email.to_string(),
        display_name: u.display_name.to_string(),
    }
}

fn uuid_of(id: &UserId) -> Result<uuid::Uuid, AppError> {
    uuid::Uuid::parse_str(id.as_str()).map_err(|e| AppError::Internal(e.into()))
}

fn rejected(e: passkeys::PasskeyError) -> AppError {
    match e {
        passkeys::PasskeyError::Rejected(reason) => {
            tracing::info!(%reason, "passkey response rejected");
            AppError::Unauthenticated("the passkey response was not accepted")
        }
        other => AppError::Internal(other.into()),
    }
}

async fn personal_workspace(
    state: &AppState,
    user: &UserId,
) -> Result<Option<WorkspaceId>, AppError> {
    Ok(state
        .store
        .workspaces_for_user(user)
        .await?
        .into_iter()
        .find(|w| w.workspace.personal)
        .map(|w| w.workspace.id))
}

/// Appends an account event for `user` (in their personal workspace).
pub async fn audit_account(
    state: &AppState,
    meta: &RequestMeta,
    user: &UserId,
    action: &str,
    target: Option<(&str, String)>,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    let mut e = meta.audit(action).actor(user).detail(detail);
    if let Some(ws) = personal_workspace(state, user).await? {
        e = e.workspace(&ws);
    }
    if let Some((kind, id)) = target {
        e = e.target(kind, id);
    }
    state.store.append_audit(&e).await?;
    Ok(())
}

async fn bot_check(
    state: &AppState,
    meta: &RequestMeta,
    token: Option<&str>,
) -> Result<(), AppError> {
    use domain::botcheck::BotCheckError;
    state.bot_check.verify(token, meta.ip.as_deref()).await.map_err(|e| match e {
        BotCheckError::Unavailable(reason) => {
            tracing::warn!(%reason, "bot check unavailable");
            AppError::Unavailable("the bot check service is unavailable; try again in a minute")
        }
        // Our own secret refused: an operator must fix the configuration, not the user.
        BotCheckError::Rejected { codes } if codes.iter().any(|c| c.ends_with("-secret")) => {
            AppError::Internal(anyhow::anyhow!("Turnstile refused our secret: {codes:?}"))
        }
        other => AppError::invalid("bot_check", format!("bot_check: {other}")),
    })
}

pub async fn signup_start(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::SignupStart,
) -> Result<sdk::CeremonyChallenge, AppError> {
    let email = Email::parse(&req.email)?;
    let name = DisplayName::parse(&req.display_name)?;
    bot_check(state, meta, req.bot_check.as_deref()).await?;
    if state.store.user_by_email(&email).await?.is_some() {
        return Err(AppError::Conflict(
            "email: an account with this email exists; sign in instead".into(),
        ));
    }
    let user_id = UserId::new();
    let (ccr, st) = state
        .passkeys
        .start_registration(uuid_of(&user_id)?, email.as_str(), name.as_str(), &[])
        .map_err(|e| AppError::Internal(e.into()))?;
    let ctx = SignupContext {
        user_id: user_id.to_string(),
        email: email.to_string(),
        display_name: name.to_string(),
    };
    let id = state
        .store
        .put_ceremony(
            CeremonyKind::Registration,
            None,
            &st,
            &serde_json::to_string(&ctx).map_err(|e| AppError::Internal(e.into()))?,
            now_ms(),
            CEREMONY_TTL_MS,
        )
        .await?;
    Ok(sdk::CeremonyChallenge { ceremony_id: id.to_string(), options: json(&ccr)? })
}

fn json<T: Serialize>(v: &T) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(v).map_err(|e| AppError::Internal(e.into()))
}

fn ceremony_id(s: &str) -> Result<domain::ids::CeremonyId, AppError> {
    domain::ids::CeremonyId::parse(s).map_err(|_| {
        AppError::Unauthenticated("this sign-in attempt expired or was already used; start again")
    })
}

/// A new browser session for `user`: returns the `Set-Cookie` value.
pub async fn start_session(
    state: &AppState,
    meta: &RequestMeta,
    user: &UserId,
    must_add_passkey: bool,
) -> Result<HeaderValue, AppError> {
    let (token, hash) = secrets::generate(SecretKind::BrowserSession);
    let (csrf, _) = secrets::generate(SecretKind::Csrf);
    state
        .store
        .create_browser_session(
            user,
            &hash,
            &csrf,
            now_ms(),
            SESSION_IDLE_MS,
            SESSION_ABSOLUTE_MS,
            meta.ip.as_deref(),
            meta.user_agent.as_deref(),
            must_add_passkey,
        )
        .await?;
    Ok(crate::auth::session_cookie(state, &token))
}

pub async fn signup_finish(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::CeremonyFinish,
) -> Result<(sdk::SignupDone, HeaderValue), AppError> {
    let id = ceremony_id(&req.ceremony_id)?;
    let ceremony =
        state.store.take_ceremony(&id, CeremonyKind::Registration, now_ms()).await?.ok_or(
            AppError::Unauthenticated(
                "this sign-up attempt expired or was already used; start again",
            ),
        )?;
    let ctx: SignupContext =
        serde_json::from_str(&ceremony.context_json).map_err(|e| AppError::Internal(e.into()))?;
    let passkey = state
        .passkeys
        .finish_registration(&req.credential, &ceremony.state_json)
        .map_err(rejected)?;
    let user_id = UserId::parse(&ctx.user_id)?;
    let email = Email::parse(&ctx.email)?;
    let name = DisplayName::parse(&ctx.display_name)?;
    let codes = secrets::recovery_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|(_, h)| h.clone()).collect();
    let passkey_json =
        passkeys::passkey_to_json(&passkey).map_err(|e| AppError::Internal(e.into()))?;
    let (user, _ws) = state
        .store
        .sign_up(
            &user_id,
            &email,
            &name,
            domain::store::NewPasskey {
                credential_id: passkey.cred_id().as_ref(),
                name: "First passkey",
                passkey_json: &passkey_json,
            },
            &hashes,
            now_ms(),
        )
        .await?;
    audit_account(
        state,
        meta,
        &user.id,
        "auth.signup",
        Some(("user", user.id.to_string())),
        serde_json::json!({}),
    )
    .await?;
    let cookie = start_session(state, meta, &user.id, false).await?;
    audit_account(
        state,
        meta,
        &user.id,
        "auth.signin",
        None,
        serde_json::json!({ "method": "passkey" }),
    )
    .await?;
    Ok((
        sdk::SignupDone {
            user: user_info(&user),
            recovery_codes: codes.into_iter().map(|(c, _)| c).collect(),
        },
        cookie,
    ))
}

pub async fn signin_start(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::SigninStart,
) -> Result<sdk::CeremonyChallenge, AppError> {
    let email = Email::parse(&req.email)?;
    bot_check(state, meta, req.bot_check.as_deref()).await?;
    let user = state.store.user_by_email(&email).await?;
    let stored = match &user {
        Some(u) => state.store.passkeys_for_user(&u.id).await?,
        None => Vec::new(),
    };
    let Some(user) = user.filter(|_| !stored.is_empty()) else {
        let e = meta
            .audit("auth.signin_failed")
            .detail(serde_json::json!({ "reason": "unknown email" }));
        state.store.append_audit(&e).await?;
        return Err(AppError::invalid("email", "email: no account with a passkey uses this email"));
    };
    let keys = parse_passkeys(&stored)?;
    let (rcr, st) =
        state.passkeys.start_authentication(&keys).map_err(|e| AppError::Internal(e.into()))?;
    let id = state
        .store
        .put_ceremony(
            CeremonyKind::Authentication,
            Some(&user.id),
            &st,
            "{}",
            now_ms(),
            CEREMONY_TTL_MS,
        )
        .await?;
    Ok(sdk::CeremonyChallenge { ceremony_id: id.to_string(), options: json(&rcr)? })
}

pub async fn signin_finish(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::CeremonyFinish,
) -> Result<(sdk::UserInfo, HeaderValue), AppError> {
    let id = ceremony_id(&req.ceremony_id)?;
    let Some(ceremony) =
        state.store.take_ceremony(&id, CeremonyKind::Authentication, now_ms()).await?
    else {
        let e = meta
            .audit("auth.signin_failed")
            .detail(serde_json::json!({ "reason": "unknown or used ceremony" }));
        state.store.append_audit(&e).await?;
        return Err(AppError::Unauthenticated(
            "this sign-in attempt expired or was already used; start again",
        ));
    };
    let user_id = ceremony.user_id.ok_or(AppError::NotFound)?;
    let user = state.store.user_by_id(&user_id).await?.ok_or(AppError::NotFound)?;
    let stored = state.store.passkeys_for_user(&user.id).await?;
    let keys = parse_passkeys(&stored)?;
    let fail = |reason: &'static str| {
        let e = meta
            .audit("auth.signin_failed")
            .actor(&user.id)
            .detail(serde_json::json!({ "reason": reason }));
        (e, reason)
    };
    let asserted =
        match state.passkeys.finish_authentication(&req.credential, &ceremony.state_json, &keys) {
            Ok(a) => a,
            Err(e) => {
                let (mut entry, _) = fail("passkey response rejected");
                if let Some(ws) = personal_workspace(state, &user.id).await? {
                    entry = entry.workspace(&ws);
                }
                state.store.append_audit(&entry).await?;
                return Err(rejected(e));
            }
        };
    let record = stored
        .iter()
        .find(|p| p.credential_id == asserted.credential_id)
        .ok_or(AppError::Unauthenticated("this passkey is not registered to the account"))?;
    let passkey_json = match &asserted.updated {
        Some(p) => passkeys::passkey_to_json(p).map_err(|e| AppError::Internal(e.into()))?,
        None => record.passkey_json.clone(),
    };
    if let Err(e) = state
        .store
        .record_passkey_use(&record.id, &passkey_json, i64::from(asserted.counter), now_ms())
        .await
    {
        let (mut entry, _) = fail("sign counter went backwards (cloned authenticator?)");
        if let Some(ws) = personal_workspace(state, &user.id).await? {
            entry = entry.workspace(&ws);
        }
        state.store.append_audit(&entry).await?;
        return match e {
            domain::StoreError::Conflict { .. } => Err(AppError::Unauthenticated(
                "the passkey's sign counter went backwards; sign-in refused",
            )),
            other => Err(other.into()),
        };
    }
    let cookie = start_session(state, meta, &user.id, false).await?;
    audit_account(
        state,
        meta,
        &user.id,
        "auth.signin",
        Some(("passkey", record.id.to_string())),
        serde_json::json!({ "method": "passkey" }),
    )
    .await?;
    Ok((user_info(&user), cookie))
}

pub async fn recover(
    state: &AppState,
    meta: &RequestMeta,
    req: &sdk::RecoverRequest,
) -> Result<(sdk::UserInfo, HeaderValue), AppError> {
    let generic = AppError::Unauthenticated("the email or the recovery code is not valid");
    let email = Email::parse(&req.email)?;
    let user = state.store.user_by_email(&email).await?;
    let used = match (&user, secrets::recovery_code_hash(&req.code)) {
        (Some(u), Some(hash)) => state.store.use_recovery_code(&u.id, &hash, now_ms()).await?,
        _ => false,
    };
    let Some(user) = user.clone().filter(|_| used) else {
        let mut e = meta.audit("auth.recover_failed").detail(serde_json::json!({}));
        if let Some(u) = &user {
            e = e.actor(&u.id);
            if let Some(ws) = personal_workspace(state, &u.id).await? {
                e = e.workspace(&ws);
            }
        }
        state.store.append_audit(&e).await?;
        return Err(generic);
    };
    let cookie = start_session(state, meta, &user.id, true).await?;
    audit_account(
        state,
        meta,
        &user.id,
        "auth.recover",
        None,
        serde_json::json!({ "method": "recovery_code" }),
    )
    .await?;
    Ok((user_info(&user), cookie))
}

pub async fn signout(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
) -> Result<(), AppError> {
    if let Some(id) = principal.session_id() {
        // Revoking by id keeps the token itself out of this code path.
        state.store.revoke_browser_session(&principal.user.id, id, now_ms()).await?;
        audit_account(
            state,
            meta,
            &principal.user.id,
            "auth.signout",
            Some(("browser_session", id.to_string())),
            serde_json::json!({}),
        )
        .await?;
    }
    Ok(())
}

pub async fn passkey_add_start(
    state: &AppState,
    principal: &Principal,
    req: &sdk::PasskeyName,
) -> Result<sdk::CeremonyChallenge, AppError> {
    let name = passkey_name(&req.name)?;
    let stored = state.store.passkeys_for_user(&principal.user.id).await?;
    let keys = parse_passkeys(&stored)?;
    let u = &principal.user;
    let (ccr, st) = state
        .passkeys
        .start_registration(uuid_of(&u.id)?, u.email.as_str(), u.display_name.as_str(), &keys)
        .map_err(|e| AppError::Internal(e.into()))?;
    let ctx = serde_json::to_string(&PasskeyContext { name })
        .map_err(|e| AppError::Internal(e.into()))?;
    let id = state
        .store
        .put_ceremony(CeremonyKind::Registration, Some(&u.id), &st, &ctx, now_ms(), CEREMONY_TTL_MS)
        .await?;
    Ok(sdk::CeremonyChallenge { ceremony_id: id.to_string(), options: json(&ccr)? })
}

pub fn passkey_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "name: must be 1 to 60 characters, no control characters",
        ));
    }
    Ok(name.to_string())
}

pub async fn passkey_add_finish(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    req: &sdk::CeremonyFinish,
) -> Result<sdk::PasskeyInfo, AppError> {
    let id = ceremony_id(&req.ceremony_id)?;
    let ceremony = state
        .store
        .take_ceremony(&id, CeremonyKind::Registration, now_ms())
        .await?
        .filter(|c| c.user_id.as_ref() == Some(&principal.user.id))
        .ok_or(AppError::Unauthenticated(
            "this passkey registration expired or was already used; start again",
        ))?;
    let ctx: PasskeyContext =
        serde_json::from_str(&ceremony.context_json).map_err(|e| AppError::Internal(e.into()))?;
    let passkey = state
        .passkeys
        .finish_registration(&req.credential, &ceremony.state_json)
        .map_err(rejected)?;
    let passkey_json =
        passkeys::passkey_to_json(&passkey).map_err(|e| AppError::Internal(e.into()))?;
    let rec = state
        .store
        .add_passkey(
            &principal.user.id,
            passkey.cred_id().as_ref(),
            &ctx.name,
            &passkey_json,
            0,
            now_ms(),
        )
        .await?;
    state.store.clear_must_add_passkey(&principal.user.id).await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "passkey.add",
        Some(("passkey", rec.id.to_string())),
        serde_json::json!({ "name": rec.name }),
    )
    .await?;
    Ok(passkey_info(&rec))
}

pub fn passkey_info(p: &domain::store::PasskeyRecord) -> sdk::PasskeyInfo {
    sdk::PasskeyInfo {
        id: p.id.to_string(),
        name: p.name.clone(),
        created_at: p.created_at,
        last_used_at: p.last_used_at,
    }
}

pub async fn passkey_rename(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: &str,
    name: &str,
) -> Result<(), AppError> {
    let id = domain::ids::PasskeyId::parse(id).map_err(|_| AppError::NotFound)?;
    let name = passkey_name(name)?;
    state.store.rename_passkey(&principal.user.id, &id, &name).await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "passkey.rename",
        Some(("passkey", id.to_string())),
        serde_json::json!({ "name": name }),
    )
    .await
}

pub async fn passkey_delete(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: &str,
) -> Result<(), AppError> {
    let id = domain::ids::PasskeyId::parse(id).map_err(|_| AppError::NotFound)?;
    state.store.delete_passkey(&principal.user.id, &id).await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "passkey.remove",
        Some(("passkey", id.to_string())),
        serde_json::json!({}),
    )
    .await
}

pub async fn sessions(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<sdk::BrowserSessionInfo>, AppError> {
    let current = principal.session_id();
    Ok(state
        .store
        .list_browser_sessions(&principal.user.id, now_ms())
        .await?
        .into_iter()
        .map(|s| sdk::BrowserSessionInfo {
            current: Some(&s.id) == current,
            id: s.id.to_string(),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            ip: s.ip,
            user_agent: s.user_agent,
        })
        .collect())
}

pub async fn session_revoke(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: &str,
) -> Result<(), AppError> {
    let id = domain::ids::BrowserSessionId::parse(id).map_err(|_| AppError::NotFound)?;
    state.store.revoke_browser_session(&principal.user.id, &id, now_ms()).await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "session.revoke",
        Some(("browser_session", id.to_string())),
        serde_json::json!({}),
    )
    .await
}

pub async fn tokens(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<sdk::TokenInfo>, AppError> {
    Ok(state
        .store
        .list_api_tokens(&principal.user.id, now_ms())
        .await?
        .iter()
        .map(token_info)
        .collect())
}

fn token_info(t: &domain::store::ApiToken) -> sdk::TokenInfo {
    sdk::TokenInfo {
        id: t.id.to_string(),
        name: t.name.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        last_used_at: t.last_used_at,
    }
}

pub async fn token_create(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    req: &sdk::CreateToken,
) -> Result<sdk::CreatedToken, AppError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 60 || name.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "name",
            "name: must be 1 to 60 characters, no control characters",
        ));
    }
    let days = req.expires_in_days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(AppError::invalid(
            "expires_in_days",
            "expires_in_days: must be between 1 and 366",
        ));
    }
    let (secret, hash) = secrets::generate(SecretKind::ApiToken);
    let now = now_ms();
    let t = state
        .store
        .create_api_token(
            &principal.user.id,
            name,
            &hash,
            now,
            Some(now + i64::from(days) * 86_400_000),
        )
        .await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "token.create",
        Some(("api_token", t.id.to_string())),
        serde_json::json!({ "name": t.name, "expires_in_days": days }),
    )
    .await?;
    Ok(sdk::CreatedToken { token: token_info(&t), secret })
}

pub async fn token_revoke(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: &str,
) -> Result<(), AppError> {
    let id = domain::ids::ApiTokenId::parse(id).map_err(|_| AppError::NotFound)?;
    state.store.revoke_api_token(&principal.user.id, &id, now_ms()).await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "token.revoke",
        Some(("api_token", id.to_string())),
        serde_json::json!({}),
    )
    .await
}

pub async fn recovery_regenerate(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
) -> Result<sdk::RecoveryCodes, AppError> {
    let codes = secrets::recovery_codes();
    let hashes: Vec<Vec<u8>> = codes.iter().map(|(_, h)| h.clone()).collect();
    state.store.replace_recovery_codes(&principal.user.id, &hashes, now_ms()).await?;
    audit_account(
        state,
        meta,
        &principal.user.id,
        "recovery_codes.regenerate",
        None,
        serde_json::json!({ "count": hashes.len() }),
    )
    .await?;
    Ok(sdk::RecoveryCodes { codes: codes.into_iter().map(|(c, _)| c).collect() })
}

pub async fn me(state: &AppState, principal: &Principal) -> Result<sdk::Me, AppError> {
    let workspaces = state
        .store
        .workspaces_for_user(&principal.user.id)
        .await?
        .into_iter()
        .map(|w| sdk::WorkspaceSummary {
            id: w.workspace.id.to_string(),
            slug: w.workspace.slug.to_string(),
            name: w.workspace.name.to_string(),
            personal: w.workspace.personal,
            role: w.role.as_str().to_string(),
        })
        .collect();
    Ok(sdk::Me {
        user: user_info(&principal.user),
        workspaces,
        must_add_passkey: principal.must_add_passkey(),
    })
}
