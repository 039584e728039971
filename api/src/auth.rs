//! Who is calling: browser sessions (cookie) and API tokens (`Authorization: Bearer`), the
//! CSRF + Origin check for cookie-authenticated writes, and the request metadata that goes
//! into audit events.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use domain::ids::{ApiTokenId, BrowserSessionId};
use domain::secrets;
use domain::store::{AuditEntry, User};

use crate::{AppError, AppState};

/// Idle timeout of a browser session (sliding).
pub const SESSION_IDLE_MS: i64 = 24 * 60 * 60 * 1000;
/// Absolute lifetime of a browser session.
pub const SESSION_ABSOLUTE_MS: i64 = 14 * 24 * 60 * 60 * 1000;
/// Largest form body the CSRF check buffers.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub via: Via,
}

#[derive(Debug, Clone)]
pub enum Via {
    Session { id: BrowserSessionId, csrf: String, must_add_passkey: bool },
    Token { id: ApiTokenId },
}

impl Principal {
    pub fn session_id(&self) -> Option<&BrowserSessionId> {
        match &self.via {
            Via::Session { id, .. } => Some(id),
            Via::Token { .. } => None,
        }
    }

    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Via::Session { csrf, .. } => Some(csrf),
            Via::Token { .. } => None,
        }
    }

    pub fn must_add_passkey(&self) -> bool {
        matches!(self.via, Via::Session { must_add_passkey: true, .. })
    }
}

/// IP and user agent of the request, for audit events and the sessions list.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl RequestMeta {
    pub fn from_parts(headers: &HeaderMap, ext: &axum::http::Extensions) -> Self {
        let ip = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let user_agent = headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(300).collect());
        Self { ip, user_agent }
    }

    /// An audit entry carrying this request's IP and user agent.
    pub fn audit(&self, action: &str) -> AuditEntry {
        let mut e = AuditEntry::new(action);
        if let Some(ip) = &self.ip {
            e = e.ip(ip.clone());
        }
        if let Some(ua) = &self.user_agent {
            e = e.user_agent(ua.clone());
        }
        e
    }
}

pub fn session_cookie_name(state: &AppState) -> &'static str {
    if state.config.public_url.scheme() == "https" { "__Host-bf_session" } else { "bf_session" }
}

/// `Set-Cookie` for a new browser session token.
pub fn session_cookie(state: &AppState, token: &str) -> HeaderValue {
    let secure = if state.config.public_url.scheme() == "https" { "; Secure" } else { "" };
    let value = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        session_cookie_name(state),
        SESSION_ABSOLUTE_MS / 1000
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(state: &AppState) -> HeaderValue {
    let secure = if state.config.public_url.scheme() == "https" { "; Secure" } else { "" };
    let value = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}",
        session_cookie_name(state)
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Authorization: Bearer` value, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Resolves the caller from a bearer token or the session cookie. Every request checks the
/// store, so a revoked session or token stops working on the very next request.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Principal>, AppError> {
    let now = domain::store::now_ms();
    // A runtime token opens one session's SSH WebSocket (checked there) and nothing else.
    if bearer(headers).is_some_and(|t| t.starts_with(sdk::RUNTIME_TOKEN_PREFIX)) {
        return Ok(None);
    }
    if let Some(token) = bearer(headers) {
        let Some(t) = state.store.api_token_by_hash(&secrets::hash(token), now).await? else {
            return Err(AppError::Unauthenticated(
                "the API token is not valid (revoked or expired?)",
            ));
        };
        let user = state
            .store
            .user_by_id(&t.user_id)
            .await?
            .ok_or(AppError::Unauthenticated("the API token's account no longer exists"))?;
        return Ok(Some(Principal { user, via: Via::Token { id: t.id } }));
    }
    let Some(token) = cookie(headers, session_cookie_name(state)) else {
        return Ok(None);
    };
    let Some(s) = state
        .store
        .browser_session_by_token_hash(&secrets::hash(token), now, SESSION_IDLE_MS)
        .await?
    else {
        return Ok(None);
    };
    let Some(user) = state.store.user_by_id(&s.user_id).await? else {
        return Ok(None);
    };
    Ok(Some(Principal {
        user,
        via: Via::Session { id: s.id, csrf: s.csrf_token, must_add_passkey: s.must_add_passkey },
    }))
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// CSRF and Origin protection for every state-changing request that could ride on ambient
/// browser credentials: unsafe methods must come from our own origin (Origin, else Referer),
/// and, when a session cookie is present, carry the session's CSRF token in `X-CSRF-Token` or
/// the form field `csrf`. Requests with a bearer token carry no ambient credential and pass.
pub async fn csrf_guard(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if !is_unsafe(req.method()) || bearer(req.headers()).is_some() {
        return next.run(req).await;
    }
    let own = state.config.public_url.origin().ascii_serialization();
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| url::Url::parse(r).ok())
                .map(|u| u.origin().ascii_serialization())
        });
    let has_cookie = cookie(req.headers(), session_cookie_name(&state)).is_some();
    // Browsers always send Origin on cross-site POSTs, so a foreign Origin is refused. A request
    // with neither Origin nor Referer and no session cookie is not from a browser page (curl,
    // the CLI's device flow) and carries no ambient credential.
    let anonymous_tool = origin.is_none() && !has_cookie;
    if !anonymous_tool && origin.as_deref() != Some(own.as_str()) {
        return AppError::Forbidden("cross-origin request refused (Origin must be this site)")
            .into_response();
    }
    // Signing up, in or out of band (recovery) must work from a browser that still holds a
    // session: those routes are protected by the Origin check above and the ceremony itself.
    let path = req.uri().path();
    let ceremony = path.starts_with("/api/v1/auth/") && path != "/api/v1/auth/signout";
    let Some(token) = cookie(req.headers(), session_cookie_name(&state))
        .filter(|_| !ceremony)
        .map(str::to_string)
    else {
        return next.run(req).await;
    };
    let session = match state
        .store
        .browser_session_by_token_hash(
            &secrets::hash(&token),
            domain::store::now_ms(),
            SESSION_IDLE_MS,
        )
        .await
    {
        Ok(Some(s)) => s,
        // An expired or revoked cookie authenticates nothing; the route decides.
        Ok(None) => return next.run(req).await,
        Err(e) => return AppError::from(e).into_response(),
    };
    let expected = session.csrf_token;
    let header_token =
        req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let (req, presented) = if let Some(h) = header_token {
        (req, Some(h))
    } else if is_form {
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(b) => b,
            Err(_) => {
                return AppError::Invalid {
                    field: "body",
                    message: format!("body: must be at most {MAX_FORM_BYTES} bytes"),
                }
                .into_response();
            }
        };
        let presented = url::form_urlencoded::parse(&bytes)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned());
        (Request::from_parts(parts, Body::from(bytes)), presented)
    } else {
        (req, None)
    };
    match presented {
        Some(p) if secrets::constant_time_eq(p.as_bytes(), expected.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => AppError::Forbidden("the CSRF token does not match; reload the page and retry")
            .into_response(),
        None => AppError::Forbidden("missing CSRF token (X-CSRF-Token header or csrf form field)")
            .into_response(),
    }
}
