//! A typed HTTP client for the BurstFlare API, used by `flare` and by the tests.
//!
//! Every call goes through one generic path, [`Client::request`]: it joins the path to the base
//! URL, sends the bearer token when the client has one, and turns a non-2xx answer into
//! [`ClientError::Api`] (the `{code, message, details}` body) or, for the OAuth endpoints,
//! [`ClientError::OAuth`]. The typed helpers below are one-liners over it.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use reqwest::Method;

use crate::{AddSshKey, HostKey, RenewedRuntimeToken, RuntimeToken, SshKey};
use crate::{
    ApiError, CreateInvite, CreatedInvite, DeviceCodeRequest, DeviceCodeResponse,
    DeviceTokenRequest, ErrorCode, HealthResponse, Me, MemberInfo, OAuthError, RefreshRequest,
    TokenPair, VersionResponse, WorkspaceSummary, routes,
};
use crate::{
    BuildLog, ConfirmedVersion, CreateTemplate, CreateVersion, TemplateBuild, TemplateDetail,
    TemplateSummary, TemplateVersion, UploadTicket,
};
use crate::{CatalogView, PromoteRequest, Promotion, PromotionPolicy, RollbackRequest};
use crate::{CreateSession, SessionDetail, SessionEvent, SessionSummary, SessionWhy};
use crate::{RestoreOutcome, Snapshot};

/// The `body` argument of [`Client::request`] for requests without one.
pub const NO_BODY: Option<&()> = None;

/// How long to wait for a TCP (and TLS) connection before calling the server unreachable.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "could not reach the BurstFlare server at {url} ({cause}); check --server (or FLARE_SERVER) \
         and that the server is running"
    )]
    Transport { url: String, cause: String },
    #[error("server answered {status}: {error}")]
    Api { status: u16, error: ApiError },
    /// An RFC 6749 error body (`{error, error_description}`) from the device and token endpoints.
    #[error("{}", oauth_message(.0))]
    OAuth(OAuthError),
    #[error("server answered {status} with a body this client does not understand: {body}")]
    UnexpectedBody { status: u16, body: String },
}

fn oauth_message(e: &OAuthError) -> String {
    match &e.error_description {
        Some(d) if !d.is_empty() => format!("{}: {d}", e.error),
        _ => e.error.clone(),
    }
}

impl ClientError {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::UnexpectedBody { status, .. } => Some(*status),
            Self::OAuth(_) | Self::InvalidUrl { .. } | Self::Transport { .. } => None,
        }
    }

    /// The `code` of an API error body.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// The server does not accept the credentials (401), whatever the body says.
    pub fn is_unauthenticated(&self) -> bool {
        self.status() == Some(401) || self.code() == Some(ErrorCode::Unauthenticated)
    }

    /// The resource does not exist or is not the caller's (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404) || self.code() == Some(ErrorCode::NotFound)
    }

    /// The `error` of an OAuth error body, e.g. `authorization_pending`.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            Self::OAuth(e) => Some(&e.error),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    base: url::Url,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer`; never printed.
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// `base` is the server's public URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl { url: base.to_string(), reason };
        let base = url::Url::parse(base).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("burstflare-sdk/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { base, http, token: None })
    }

    /// The same client, sending `token` as `Authorization: Bearer` on every request.
    pub fn with_token(mut self, token: String) -> Self {
        self.token = Some(token);
        self
    }

    /// The same client, without credentials.
    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// `path` on this server as a WebSocket URL (`http` becomes `ws`, `https` becomes `wss`).
    pub fn socket_url(&self, path: &str) -> Result<url::Url, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: format!("{}{path}", self.base),
            reason,
        };
        let mut url = self.base.join(path).map_err(|e| invalid(e.to_string()))?;
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme).map_err(|()| invalid(format!("cannot use scheme {scheme}")))?;
        Ok(url)
    }

    /// The bearer token this client sends, if any (for WebSocket requests made outside it).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends one request and decodes the JSON answer. A 2xx without a body decodes as JSON
    /// `null`, so `R = ()` (or `Option<_>`) also fits a 204. Pass [`NO_BODY`] for no body.
    pub async fn request<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, ClientError> {
        self.request_allowing(method, path, body, &[]).await
    }

    /// [`Client::request`] for endpoints that answer 204 No Content: any 2xx body is ignored.
    pub async fn request_empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        self.send(method, path, body, &[]).await.map(|_| ())
    }

    /// [`Client::request`] that also decodes the answers with a status in `also_ok` as `R`.
    pub async fn request_allowing<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        also_ok: &[u16],
    ) -> Result<R, ClientError> {
        let (status, bytes) = self.send(method, path, body, also_ok).await?;
        let json: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"null" } else { &bytes };
        serde_json::from_slice(json)
            .map_err(|_| ClientError::UnexpectedBody { status, body: excerpt(&bytes) })
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        also_ok: &[u16],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let url = self.base.join(path).map_err(|e| ClientError::InvalidUrl {
            url: format!("{}{path}", self.base),
            reason: e.to_string(),
        })?;
        let mut req = self.http.request(method, url).header("accept", "application/json");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|source| transport(&self.base, source))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|source| transport(&self.base, source))?;
        if (200..300).contains(&status) || also_ok.contains(&status) {
            Ok((status, bytes.to_vec()))
        } else {
            Err(error_from(status, &bytes))
        }
    }

    /// `GET /api/health`. A degraded server answers 503 with the same body, which is
    /// returned as `Ok` so callers can show which check failed.
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.request_allowing(Method::GET, routes::HEALTH, NO_BODY, &[503]).await
    }

    /// `GET /api/version`
    pub async fn version(&self) -> Result<VersionResponse, ClientError> {
        self.request(Method::GET, routes::VERSION, NO_BODY).await
    }

    /// `GET /api/v1/me`
    pub async fn me(&self) -> Result<Me, ClientError> {
        self.request(Method::GET, "/api/v1/me", NO_BODY).await
    }

    /// `GET /api/v1/workspaces`: the caller's workspaces with the caller's role in each.
    pub async fn workspaces(&self) -> Result<Vec<WorkspaceSummary>, ClientError> {
        self.request(Method::GET, "/api/v1/workspaces", NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}`
    pub async fn workspace(&self, ws: &str) -> Result<WorkspaceSummary, ClientError> {
        self.request(Method::GET, &workspace_path(ws, ""), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/members`
    pub async fn members(&self, ws: &str) -> Result<Vec<MemberInfo>, ClientError> {
        self.request(Method::GET, &workspace_path(ws, "/members"), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/invites`: the answer holds the invite link, shown once.
    pub async fn create_invite(
        &self,
        ws: &str,
        body: &CreateInvite,
    ) -> Result<CreatedInvite, ClientError> {
        self.request(Method::POST, &workspace_path(ws, "/invites"), Some(body)).await
    }

    /// `POST /api/v1/device/code`: starts a device login (RFC 8628).
    pub async fn device_code(
        &self,
        body: &DeviceCodeRequest,
    ) -> Result<DeviceCodeResponse, ClientError> {
        self.request(Method::POST, "/api/v1/device/code", Some(body)).await
    }

    /// `POST /api/v1/device/token`: one poll. Until the login is approved this fails with
    /// [`ClientError::OAuth`] `authorization_pending` (or `slow_down`, `access_denied`,
    /// `expired_token`, `invalid_grant`).
    pub async fn device_token(&self, body: &DeviceTokenRequest) -> Result<TokenPair, ClientError> {
        self.request(Method::POST, "/api/v1/device/token", Some(body)).await
    }

    /// `POST /api/v1/token/refresh`: rotates the refresh token. A used or revoked one is a 401.
    pub async fn refresh_token(&self, body: &RefreshRequest) -> Result<TokenPair, ClientError> {
        self.request(Method::POST, "/api/v1/token/refresh", Some(body)).await
    }

    /// `POST /api/v1/token/revoke`: ends the CLI login the refresh token belongs to.
    pub async fn revoke_token(&self, body: &RefreshRequest) -> Result<(), ClientError> {
        self.request_empty(Method::POST, "/api/v1/token/revoke", Some(body)).await
    }

    /// `GET /api/v1/workspaces/{ws}/templates`
    pub async fn templates(&self, ws: &str) -> Result<Vec<TemplateSummary>, ClientError> {
        self.request(Method::GET, &workspace_path(ws, "/templates"), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/templates`
    pub async fn create_template(
        &self,
        ws: &str,
        body: &CreateTemplate,
    ) -> Result<TemplateDetail, ClientError> {
        self.request(Method::POST, &workspace_path(ws, "/templates"), Some(body)).await
    }

    /// `GET /api/v1/workspaces/{ws}/templates/{name}`
    pub async fn template(&self, ws: &str, name: &str) -> Result<TemplateDetail, ClientError> {
        self.request(Method::GET, &template_path(ws, name, ""), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/templates/{name}/archive`: new sessions can no longer
    /// use it; running sessions are not touched.
    pub async fn archive_template(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<TemplateDetail, ClientError> {
        self.request(Method::POST, &template_path(ws, name, "/archive"), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/templates/{name}/versions`: newest first.
    pub async fn template_versions(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<Vec<TemplateVersion>, ClientError> {
        self.request(Method::GET, &template_path(ws, name, "/versions"), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/templates/{name}/versions/{version}`
    pub async fn template_version(
        &self,
        ws: &str,
        name: &str,
        version: &str,
    ) -> Result<TemplateVersion, ClientError> {
        let rest = format!("/versions/{}", encode_segment(version));
        self.request(Method::GET, &template_path(ws, name, &rest), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/templates/{name}/versions`: a new draft version and a
    /// presigned URL to upload its bundle to.
    pub async fn create_version(
        &self,
        ws: &str,
        name: &str,
        body: &CreateVersion,
    ) -> Result<UploadTicket, ClientError> {
        self.request(Method::POST, &template_path(ws, name, "/versions"), Some(body)).await
    }

    /// `POST …/versions/{version}/confirm`: the server checks the uploaded bundle (size, hash,
    /// contents) and queues its build.
    pub async fn confirm_version(
        &self,
        ws: &str,
        name: &str,
        version: &str,
    ) -> Result<ConfirmedVersion, ClientError> {
        let rest = format!("/versions/{}/confirm", encode_segment(version));
        self.request(Method::POST, &template_path(ws, name, &rest), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/templates/{name}/builds`: newest first.
    pub async fn template_builds(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<Vec<TemplateBuild>, ClientError> {
        self.request(Method::GET, &template_path(ws, name, "/builds"), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/sessions` (`ended`: also stopped and failed ones).
    pub async fn sessions(
        &self,
        ws: &str,
        ended: bool,
    ) -> Result<Vec<SessionSummary>, ClientError> {
        let rest = if ended { "/sessions?ended=true" } else { "/sessions" };
        self.request(Method::GET, &workspace_path(ws, rest), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/sessions[?wait=running]`: answers at once with the new
    /// session (state `provisioning`), or once it is running (or failed) with `wait`.
    pub async fn create_session(
        &self,
        ws: &str,
        body: &CreateSession,
        wait: bool,
    ) -> Result<SessionDetail, ClientError> {
        let rest = if wait { "/sessions?wait=running" } else { "/sessions" };
        self.request(Method::POST, &workspace_path(ws, rest), Some(body)).await
    }

    /// `GET /api/v1/workspaces/{ws}/sessions/{id}` (id or name).
    pub async fn session(&self, ws: &str, id: &str) -> Result<SessionDetail, ClientError> {
        self.request(Method::GET, &session_path(ws, id, ""), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/sessions/{id}/{op}` with `op` one of [`crate::SESSION_OPS`]:
    /// the workflow accepted the operation (or refused it: 409 with the reason). `wait` waits
    /// for the operation's end state.
    pub async fn session_op(
        &self,
        ws: &str,
        id: &str,
        op: &str,
        wait: bool,
    ) -> Result<SessionDetail, ClientError> {
        let rest = format!("/{}{}", encode_segment(op), if wait { "?wait=true" } else { "" });
        self.request(Method::POST, &session_path(ws, id, &rest), NO_BODY).await
    }

    /// `DELETE /api/v1/workspaces/{ws}/sessions/{id}`: stops and removes the container and
    /// frees the name. `wait` waits until it is deleted.
    pub async fn delete_session(
        &self,
        ws: &str,
        id: &str,
        wait: bool,
    ) -> Result<SessionDetail, ClientError> {
        let rest = if wait { "?wait=true" } else { "" };
        self.request(Method::DELETE, &session_path(ws, id, rest), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/sessions/{id}/events?after=SEQ`
    pub async fn session_events(
        &self,
        ws: &str,
        id: &str,
        after: u64,
    ) -> Result<Vec<SessionEvent>, ClientError> {
        self.request(Method::GET, &session_path(ws, id, &format!("/events?after={after}")), NO_BODY)
            .await
    }

    /// `GET /api/v1/workspaces/{ws}/sessions/{id}/why`
    pub async fn session_why(&self, ws: &str, id: &str) -> Result<SessionWhy, ClientError> {
        self.request(Method::GET, &session_path(ws, id, "/why"), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/sessions/{id}/snapshots`: newest first, deleted ones left out.
    pub async fn snapshots(&self, ws: &str, id: &str) -> Result<Vec<Snapshot>, ClientError> {
        self.request(Method::GET, &session_path(ws, id, "/snapshots"), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/sessions/{id}/snapshots/{snapshot}`
    pub async fn snapshot(
        &self,
        ws: &str,
        id: &str,
        snapshot: &str,
    ) -> Result<Snapshot, ClientError> {
        let rest = format!("/snapshots/{}", encode_segment(snapshot));
        self.request(Method::GET, &session_path(ws, id, &rest), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/sessions/{id}/snapshots`: takes a snapshot of a running
    /// session now ("Save now"). `wait` waits until it is verified or has failed.
    pub async fn save_snapshot(
        &self,
        ws: &str,
        id: &str,
        wait: bool,
    ) -> Result<Snapshot, ClientError> {
        let rest = if wait { "/snapshots?wait=true" } else { "/snapshots" };
        self.request(Method::POST, &session_path(ws, id, rest), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/sessions/{id}/snapshots/{snapshot}/restore`: a running
    /// session gets the snapshot's files now (after a safety snapshot of its current ones); any
    /// other session restores it at its next start.
    pub async fn restore_snapshot(
        &self,
        ws: &str,
        id: &str,
        snapshot: &str,
    ) -> Result<RestoreOutcome, ClientError> {
        let rest = format!("/snapshots/{}/restore", encode_segment(snapshot));
        self.request(Method::POST, &session_path(ws, id, &rest), NO_BODY).await
    }

    /// `DELETE /api/v1/workspaces/{ws}/sessions/{id}/snapshots/{snapshot}`: retires a snapshot
    /// (not the latest one).
    pub async fn delete_snapshot(
        &self,
        ws: &str,
        id: &str,
        snapshot: &str,
    ) -> Result<Snapshot, ClientError> {
        let rest = format!("/snapshots/{}", encode_segment(snapshot));
        self.request(Method::DELETE, &session_path(ws, id, &rest), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/catalog`: the latest runtime catalog revision with this
    /// workspace's entries.
    pub async fn catalog(&self, ws: &str) -> Result<CatalogView, ClientError> {
        self.request(Method::GET, &workspace_path(ws, "/catalog"), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/templates/{name}/promote` (202): starts a promotion
    /// (canary, approval when the workspace requires it, catalog, rollout). A promotion of the
    /// same template already running is a 409 naming it.
    pub async fn promote_template(
        &self,
        ws: &str,
        name: &str,
        body: &PromoteRequest,
    ) -> Result<Promotion, ClientError> {
        self.request(Method::POST, &template_path(ws, name, "/promote"), Some(body)).await
    }

    /// `POST /api/v1/workspaces/{ws}/templates/{name}/demote` (202): back to the version that was
    /// active before the current one.
    pub async fn demote_template(&self, ws: &str, name: &str) -> Result<Promotion, ClientError> {
        self.request(Method::POST, &template_path(ws, name, "/demote"), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/templates/{name}/rollback` (202): to any earlier built
    /// version, without canary or approval.
    pub async fn rollback_template(
        &self,
        ws: &str,
        name: &str,
        body: &RollbackRequest,
    ) -> Result<Promotion, ClientError> {
        self.request(Method::POST, &template_path(ws, name, "/rollback"), Some(body)).await
    }

    /// `GET /api/v1/workspaces/{ws}/templates/{name}/promotions`: newest first.
    pub async fn promotions(&self, ws: &str, name: &str) -> Result<Vec<Promotion>, ClientError> {
        self.request(Method::GET, &template_path(ws, name, "/promotions"), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/promotions/{id}`
    pub async fn promotion(&self, ws: &str, id: &str) -> Result<Promotion, ClientError> {
        self.request(Method::GET, &promotion_path(ws, id, ""), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/promotions/{id}/approve`: an owner or admin other than the
    /// requester lets a promotion that awaits approval go on.
    pub async fn approve_promotion(&self, ws: &str, id: &str) -> Result<Promotion, ClientError> {
        self.request(Method::POST, &promotion_path(ws, id, "/approve"), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/promotion-policy`
    pub async fn promotion_policy(&self, ws: &str) -> Result<PromotionPolicy, ClientError> {
        self.request(Method::GET, &workspace_path(ws, "/promotion-policy"), NO_BODY).await
    }

    /// `PUT /api/v1/workspaces/{ws}/promotion-policy` (owners and admins).
    pub async fn set_promotion_policy(
        &self,
        ws: &str,
        body: &PromotionPolicy,
    ) -> Result<PromotionPolicy, ClientError> {
        self.request(Method::PUT, &workspace_path(ws, "/promotion-policy"), Some(body)).await
    }

    /// `GET /api/v1/me/ssh-keys`: the caller's SSH public keys, oldest first.
    pub async fn ssh_keys(&self) -> Result<Vec<SshKey>, ClientError> {
        self.request(Method::GET, &format!("{}/me/ssh-keys", routes::API_V1), NO_BODY).await
    }

    /// `POST /api/v1/me/ssh-keys`: registers a key (the same key again answers with the existing
    /// entry).
    pub async fn add_ssh_key(&self, body: &AddSshKey) -> Result<SshKey, ClientError> {
        self.request(Method::POST, &format!("{}/me/ssh-keys", routes::API_V1), Some(body)).await
    }

    /// `DELETE /api/v1/me/ssh-keys/{id}`
    pub async fn remove_ssh_key(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("{}/me/ssh-keys/{}", routes::API_V1, encode_segment(id));
        self.request_empty(Method::DELETE, &path, NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/sessions/{id}/host-key`
    pub async fn session_host_key(&self, ws: &str, id: &str) -> Result<HostKey, ClientError> {
        self.request(Method::GET, &session_path(ws, id, "/host-key"), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/sessions/{id}/runtime-token`
    pub async fn runtime_token(&self, ws: &str, id: &str) -> Result<RuntimeToken, ClientError> {
        self.request(Method::POST, &session_path(ws, id, "/runtime-token"), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/sessions/{id}/runtime-token/{token}/renew`
    pub async fn renew_runtime_token(
        &self,
        ws: &str,
        id: &str,
        token_id: &str,
    ) -> Result<RenewedRuntimeToken, ClientError> {
        let rest = format!("/runtime-token/{}/renew", encode_segment(token_id));
        self.request(Method::POST, &session_path(ws, id, &rest), NO_BODY).await
    }

    /// `DELETE /api/v1/workspaces/{ws}/sessions/{id}/runtime-token/{token}`: live connections
    /// made with it are cut.
    pub async fn revoke_runtime_token(
        &self,
        ws: &str,
        id: &str,
        token_id: &str,
    ) -> Result<(), ClientError> {
        let rest = format!("/runtime-token/{}", encode_segment(token_id));
        self.request_empty(Method::DELETE, &session_path(ws, id, &rest), NO_BODY).await
    }

    /// The `ws://` (or `wss://`) URL of a session's SSH WebSocket,
    /// `GET /api/v1/workspaces/{ws}/sessions/{id}/ssh`; send the runtime token as
    /// `Authorization: Bearer`.
    pub fn ssh_socket_url(&self, ws: &str, id: &str) -> Result<url::Url, ClientError> {
        self.socket_url(&session_path(ws, id, "/ssh"))
    }

    /// `GET /api/v1/workspaces/{ws}/builds/{id}`
    pub async fn build(&self, ws: &str, id: &str) -> Result<TemplateBuild, ClientError> {
        self.request(Method::GET, &build_path(ws, id, ""), NO_BODY).await
    }

    /// `GET /api/v1/workspaces/{ws}/builds/{id}/log?from=N`
    pub async fn build_log(&self, ws: &str, id: &str, from: u64) -> Result<BuildLog, ClientError> {
        self.request(Method::GET, &build_path(ws, id, &format!("/log?from={from}")), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/builds/{id}/retry`: a new attempt of the same version.
    pub async fn retry_build(&self, ws: &str, id: &str) -> Result<TemplateBuild, ClientError> {
        self.request(Method::POST, &build_path(ws, id, "/retry"), NO_BODY).await
    }

    /// `POST /api/v1/workspaces/{ws}/builds/{id}/cancel`
    pub async fn cancel_build(&self, ws: &str, id: &str) -> Result<TemplateBuild, ClientError> {
        self.request(Method::POST, &build_path(ws, id, "/cancel"), NO_BODY).await
    }
}

/// `/api/v1/workspaces/{ws}{rest}` with `ws` percent-encoded as one path segment.
pub fn workspace_path(ws: &str, rest: &str) -> String {
    format!("{}/workspaces/{}{rest}", routes::API_V1, encode_segment(ws))
}

/// `/api/v1/workspaces/{ws}/templates/{name}{rest}`
pub fn template_path(ws: &str, name: &str, rest: &str) -> String {
    workspace_path(ws, &format!("/templates/{}{rest}", encode_segment(name)))
}

/// `/api/v1/workspaces/{ws}/sessions/{id}{rest}`
pub fn session_path(ws: &str, id: &str, rest: &str) -> String {
    workspace_path(ws, &format!("/sessions/{}{rest}", encode_segment(id)))
}

/// `/api/v1/workspaces/{ws}/promotions/{id}{rest}`
pub fn promotion_path(ws: &str, id: &str, rest: &str) -> String {
    workspace_path(ws, &format!("/promotions/{}{rest}", encode_segment(id)))
}

/// `/api/v1/workspaces/{ws}/builds/{id}{rest}`
pub fn build_path(ws: &str, id: &str, rest: &str) -> String {
    workspace_path(ws, &format!("/builds/{}{rest}", encode_segment(id)))
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so a value stays one segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error for a non-2xx answer: the API error body, else an OAuth error body, else the
/// start of whatever came back.
fn error_from(status: u16, body: &[u8]) -> ClientError {
    if let Ok(error) = serde_json::from_slice::<ApiError>(body) {
        return ClientError::Api { status, error };
    }
    if let Ok(error) = serde_json::from_slice::<OAuthError>(body) {
        return ClientError::OAuth(error);
    }
    ClientError::UnexpectedBody { status, body: excerpt(body) }
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(500).collect()
}

fn transport(base: &url::Url, source: reqwest::Error) -> ClientError {
    // reqwest's own message ("error sending request") hides the useful part: the root cause.
    let mut cause: &(dyn std::error::Error + 'static) = &source;
    while let Some(next) = cause.source() {
        cause = next;
    }
    ClientError::Transport {
        url: base.as_str().trim_end_matches('/').to_string(),
        cause: cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let c = Client::new("http://127.0.0.1:1")
            .unwrap_or_else(|e| unreachable!("{e}"))
            .with_token("bf_secret_value".into());
        let s = format!("{c:?}");
        assert!(!s.contains("bf_secret_value") && s.contains("<redacted>"), "{s}");
    }

    #[test]
    fn an_api_error_body_becomes_an_api_error() {
        let e = error_from(404, br#"{"code":"not_found","message":"workspace not found"}"#);
        assert!(e.is_not_found(), "{e:?}");
        assert!(matches!(e, ClientError::Api { status: 404, .. }));
    }

    #[test]
    fn an_oauth_error_body_becomes_an_oauth_error() {
        let e = error_from(400, br#"{"error":"slow_down","error_description":"wait"}"#);
        assert_eq!(e.oauth_error(), Some("slow_down"));
        assert_eq!(e.to_string(), "slow_down: wait");
    }

    #[test]
    fn a_body_that_is_neither_is_kept_for_the_message() {
        let e = error_from(502, b"<html>bad gateway</html>");
        assert!(
            matches!(e, ClientError::UnexpectedBody { status: 502, ref body } if body.contains("bad gateway"))
        );
    }

    #[test]
    fn workspace_slugs_stay_one_path_segment() {
        assert_eq!(workspace_path("acme", "/members"), "/api/v1/workspaces/acme/members");
        assert_eq!(workspace_path("a/../b c", ""), "/api/v1/workspaces/a%2F..%2Fb%20c");
    }
}
