//! Connecting to sessions (docs/ssh.md): users' SSH keys, runtime tokens, the session host key,
//! and the two WebSocket proxies, SSH (`…/ssh`, runtime token) and the browser terminal
//! (`…/terminal`, session cookie + Origin).
//!
//! A connection is forwarded to the session's node tunnel and on to the agent (see `tunnel`),
//! then watched: every `[runtime] recheck_ms` it re-checks the credential it was opened with, the
//! caller's membership and role, and that the session still runs the same container. When any of
//! them fails the connection is cut. Opening and closing are audited with bytes and duration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method as M, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use base64::Engine as _;
use domain::ids::{RuntimeTokenId, Slug, SshKeyId};
use domain::policy::{self, Permission};
use domain::secrets::{self, SecretKind};
use domain::store::{SessionRecord, User, Workspace, now_ms};
use secrecy::ExposeSecret;

use crate::auth::{Principal, RequestMeta};
use crate::routes::{Access, RouteDef, WorkspaceCtx};
use crate::tunnel::{self, Hop, Traffic};
use crate::v1::{Body, Meta};
use crate::{AppError, AppState};

const MAX_KEY_NAME_CHARS: usize = 64;

pub fn routes() -> Vec<RouteDef> {
    use Access::{Public, User, Workspace as W};
    // Paths under one session, as the `&'static str` the route table keeps.
    macro_rules! p {
        ($rest:literal) => {
            concat!("/api/v1/workspaces/{ws}/sessions/{id}", $rest)
        };
    }
    vec![
        RouteDef::new(M::GET, "/api/v1/me/ssh-keys", User, get(keys_list)),
        RouteDef::new(M::POST, "/api/v1/me/ssh-keys", User, post(key_add)),
        RouteDef::new(M::DELETE, "/api/v1/me/ssh-keys/{key}", User, delete(key_remove)),
        RouteDef::new(M::GET, p!("/host-key"), W(Permission::ViewWorkspace), get(host_key)),
        RouteDef::new(M::POST, p!("/runtime-token"), W(Permission::UseSessions), post(token_issue)),
        RouteDef::new(
            M::POST,
            p!("/runtime-token/{token}/renew"),
            W(Permission::UseSessions),
            post(token_renew),
        ),
        RouteDef::new(
            M::DELETE,
            p!("/runtime-token/{token}"),
            W(Permission::UseSessions),
            delete(token_revoke),
        ),
        // Authenticated by the runtime token itself (not an API token), checked in the handler.
        RouteDef::new(M::GET, p!("/ssh"), Public, get(ssh_socket)),
        RouteDef::new(M::GET, p!("/terminal"), W(Permission::UseSessions), get(terminal_socket)),
    ]
}

pub(crate) fn key_view(k: &domain::store::SshKeyRecord) -> sdk::SshKey {
    sdk::SshKey {
        id: k.id.to_string(),
        name: k.name.clone(),
        algorithm: k.algorithm.clone(),
        fingerprint: k.fingerprint.clone(),
        public_key: k.public_key.clone(),
        created_at: k.created_at,
    }
}

async fn keys_list(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Vec<sdk::SshKey>>, AppError> {
    let keys = s.store.ssh_keys(&p.user.id).await?;
    Ok(Json(keys.iter().map(key_view).collect()))
}

/// Registers `public_key` for the caller as `name`. The same key again returns the existing
/// entry, unchanged and not audited again: the flag says whether it was created.
pub(crate) async fn add_key(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    name: &str,
    public_key: &str,
) -> Result<(sdk::SshKey, bool), AppError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_KEY_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(AppError::invalid(
            "name",
            format!("name: must be 1 to {MAX_KEY_NAME_CHARS} characters, no control characters"),
        ));
    }
    let parsed = domain::connect::parse_public_key(public_key)
        .map_err(|message| AppError::invalid("public_key", message))?;
    let (key, created) =
        state.store.add_ssh_key(&principal.user.id, name, &parsed, now_ms()).await?;
    if created {
        crate::identity::audit_account(
            state,
            meta,
            &principal.user.id,
            "ssh_key.add",
            Some(("ssh_key", key.id.to_string())),
            serde_json::json!({ "name": key.name, "fingerprint": key.fingerprint }),
        )
        .await?;
    }
    Ok((key_view(&key), created))
}

/// Removes the caller's key `id` (not found for a malformed or another user's id).
pub(crate) async fn remove_key(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    id: &str,
) -> Result<(), AppError> {
    let id = SshKeyId::parse(id).map_err(|_| AppError::NotFound)?;
    let key = state.store.remove_ssh_key(&principal.user.id, &id).await?;
    crate::identity::audit_account(
        state,
        meta,
        &principal.user.id,
        "ssh_key.remove",
        Some(("ssh_key", key.id.to_string())),
        serde_json::json!({ "name": key.name, "fingerprint": key.fingerprint }),
    )
    .await
}

async fn key_add(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Body(b): Body<sdk::AddSshKey>,
) -> Result<(StatusCode, Json<sdk::SshKey>), AppError> {
    let (key, created) = add_key(&s, &m, &p, &b.name, &b.public_key).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(key)))
}

async fn key_remove(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    remove_key(&s, &m, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn runtime_secret(state: &AppState) -> Result<&[u8], AppError> {
    let secret = state.config.runtime.secret.expose_secret().as_bytes();
    if secret.is_empty() {
        return Err(AppError::Unavailable(
            "connecting to sessions is switched off: the server has no runtime.secret (see \
             docs/configuration.md)",
        ));
    }
    Ok(secret)
}

fn host_key_view(
    state: &AppState,
    ws: &Workspace,
    s: &SessionRecord,
) -> Result<sdk::HostKey, AppError> {
    let key = domain::connect::host_key(runtime_secret(state)?, s.id.as_str())
        .map_err(|e| anyhow::anyhow!(e))?;
    let alias = sdk::ssh_host_alias(&s.name, ws.slug.as_str());
    Ok(sdk::HostKey {
        known_hosts: format!("{alias} {}", key.public_openssh),
        host_alias: alias,
        algorithm: "ssh-ed25519".into(),
        public_key: key.public_openssh,
        fingerprint: key.fingerprint,
    })
}

async fn session_of(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<SessionRecord, AppError> {
    let s = state.store.session_in_workspace(&ctx.workspace.id, id).await?;
    s.filter(|s| s.state != "deleted").ok_or(AppError::NotFound)
}

/// Only a session's owner connects to it (their keys, their files).
fn own(p: &Principal, s: &SessionRecord) -> Result<(), AppError> {
    if s.owner == p.user.id {
        Ok(())
    } else {
        Err(AppError::Forbidden("only the session's owner can connect to it"))
    }
}

async fn host_key(
    State(s): State<AppState>,
    Extension(ctx): Extension<WorkspaceCtx>,
    Path((_ws, id)): Path<(String, String)>,
) -> Result<Json<sdk::HostKey>, AppError> {
    let session = session_of(&s, &ctx, &id).await?;
    Ok(Json(host_key_view(&s, &ctx.workspace, &session)?))
}

/// The user SSH logs in as: the template's `user`, else `root` (the agent's own user in most
/// images; the agent accepts any name).
async fn ssh_user(state: &AppState, s: &SessionRecord) -> String {
    let manifest = state
        .store
        .version_by_id(&s.version_id)
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str::<sdk::bundle::Manifest>(&v.manifest_json).ok());
    manifest.and_then(|m| m.user).unwrap_or_else(|| "root".to_owned())
}

async fn token_issue(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<WorkspaceCtx>,
    Path((_ws, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<sdk::RuntimeToken>), AppError> {
    let session = session_of(&s, &ctx, &id).await?;
    own(&p, &session)?;
    let host_key = host_key_view(&s, &ctx.workspace, &session)?;
    let ttl = s.config.runtime.token_ttl_secs;
    let (token, hash) = secrets::generate(SecretKind::RuntimeToken);
    let now = now_ms();
    let expires_at = now + i64::try_from(ttl * 1000).unwrap_or(i64::MAX / 2);
    let t = s.store.create_runtime_token(&p.user.id, &session.id, &hash, now, expires_at).await?;
    let e = m
        .audit("session.runtime_token.issue")
        .actor(&p.user.id)
        .workspace(&ctx.workspace.id)
        .target("session", session.id.to_string())
        .detail(serde_json::json!({ "token": t.id.to_string(), "expires_at": expires_at }));
    s.store.append_audit(&e).await?;
    let body = sdk::RuntimeToken {
        id: t.id.to_string(),
        token,
        session_id: session.id.to_string(),
        expires_at,
        ttl_secs: ttl,
        host_key,
        ssh_user: ssh_user(&s, &session).await,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

async fn token_renew(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<WorkspaceCtx>,
    Path((_ws, id, token)): Path<(String, String, String)>,
) -> Result<Json<sdk::RenewedRuntimeToken>, AppError> {
    let session = session_of(&s, &ctx, &id).await?;
    let token = RuntimeTokenId::parse(&token).map_err(|_| AppError::NotFound)?;
    let now = now_ms();
    let ttl_ms = i64::try_from(s.config.runtime.token_ttl_secs * 1000).unwrap_or(i64::MAX / 2);
    let t = s.store.renew_runtime_token(&p.user.id, &session.id, &token, now, now + ttl_ms).await?;
    Ok(Json(sdk::RenewedRuntimeToken { id: t.id.to_string(), expires_at: t.expires_at }))
}

async fn token_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<WorkspaceCtx>,
    Path((_ws, id, token)): Path<(String, String, String)>,
) -> Result<StatusCode, AppError> {
    let session = session_of(&s, &ctx, &id).await?;
    let token = RuntimeTokenId::parse(&token).map_err(|_| AppError::NotFound)?;
    let t = s.store.revoke_runtime_token(&p.user.id, &session.id, &token, now_ms()).await?;
    let e = m
        .audit("session.runtime_token.revoke")
        .actor(&p.user.id)
        .workspace(&ctx.workspace.id)
        .target("session", session.id.to_string())
        .detail(serde_json::json!({ "token": t.id.to_string() }));
    s.store.append_audit(&e).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a connection was opened with, re-checked while it lives.
#[derive(Clone)]
enum Credential {
    Runtime(RuntimeTokenId),
    /// The request's own credentials (cookie or API token), re-authenticated each time.
    Request(HeaderMap),
}

#[derive(Clone)]
struct Conn {
    kind: &'static str,
    id: String,
    user: User,
    workspace: Workspace,
    session: SessionRecord,
    credential: Credential,
    meta: RequestMeta,
}

async fn ssh_socket(
    State(state): State<AppState>,
    Path((ws, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    match ssh_open(&state, &ws, &id, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn ssh_open(
    state: &AppState,
    ws: &str,
    id: &str,
    mut req: Request,
) -> Result<Response, AppError> {
    let meta = RequestMeta::from_parts(req.headers(), req.extensions());
    let presented = crate::auth::bearer(req.headers()).unwrap_or("");
    if !presented.starts_with(sdk::RUNTIME_TOKEN_PREFIX) {
        return Err(AppError::Unauthenticated(
            "send a runtime token (POST …/runtime-token) as Authorization: Bearer",
        ));
    }
    let now = now_ms();
    let token = state.store.runtime_token_by_hash(&secrets::hash(presented), now).await?.ok_or(
        AppError::Unauthenticated(
            "the runtime token is not valid (expired or revoked): get a new one",
        ),
    )?;
    let user = state.store.user_by_id(&token.user_id).await?.ok_or(AppError::NotFound)?;
    let slug = Slug::parse(ws).map_err(|_| AppError::NotFound)?;
    let workspace = state.store.workspace_by_slug(&slug).await?.ok_or(AppError::NotFound)?;
    let role = state.store.membership(&workspace.id, &user.id).await?.ok_or(AppError::NotFound)?;
    let session =
        state.store.session_in_workspace(&workspace.id, id).await?.ok_or(AppError::NotFound)?;
    // A token opens only the session it was issued for.
    if session.id != token.session_id {
        return Err(AppError::NotFound);
    }
    if !policy::allows(role, Permission::UseSessions) {
        return Err(AppError::Forbidden("your role in this workspace does not allow this"));
    }
    if session.owner != user.id {
        return Err(AppError::Forbidden("only the session's owner can connect to it"));
    }
    if !tunnel::is_websocket_upgrade(req.headers()) {
        return Err(AppError::invalid("upgrade", "upgrade: expected a WebSocket upgrade request"));
    }
    let keys = state.store.ssh_keys(&user.id).await?;
    if keys.is_empty() {
        return Err(AppError::Conflict(
            "you have no SSH keys registered: add one with `flare ssh-key add` (flare ssh does it \
             for you)"
                .into(),
        ));
    }
    let lines: Vec<&str> = keys.iter().map(|k| k.public_key.as_str()).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(lines.join("\n"));
    let mut extra = HeaderMap::new();
    extra.insert(
        "x-burstflare-authorized-keys",
        HeaderValue::from_str(&encoded).map_err(|e| anyhow::anyhow!(e))?,
    );
    let client = tunnel::take_upgrade(&mut req).ok_or_else(|| {
        AppError::invalid("upgrade", "upgrade: this connection cannot be upgraded")
    })?;
    let conn = Conn {
        kind: "ssh",
        id: uuid::Uuid::now_v7().to_string(),
        user,
        workspace,
        session,
        credential: Credential::Runtime(token.id),
        meta,
    };
    open(state, conn, req.headers(), client, "", extra).await
}

#[derive(serde::Deserialize)]
struct TerminalQuery {
    cols: Option<String>,
    rows: Option<String>,
    tid: Option<String>,
}

fn dimension(name: &'static str, v: Option<&str>, default: u16) -> Result<u16, AppError> {
    match v {
        None => Ok(default),
        Some(v) => v.parse::<u16>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
            AppError::invalid(name, format!("{name}: must be a number from 1 to 1000"))
        }),
    }
}

async fn terminal_socket(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(ctx): Extension<WorkspaceCtx>,
    Path((_ws, id)): Path<(String, String)>,
    Query(q): Query<TerminalQuery>,
    req: Request,
) -> Response {
    match terminal_open(&state, p, ctx, &id, q, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn terminal_open(
    state: &AppState,
    p: Principal,
    ctx: WorkspaceCtx,
    id: &str,
    q: TerminalQuery,
    mut req: Request,
) -> Result<Response, AppError> {
    let session = session_of(state, &ctx, id).await?;
    own(&p, &session)?;
    if !tunnel::is_websocket_upgrade(req.headers()) {
        return Err(AppError::invalid("upgrade", "upgrade: expected a WebSocket upgrade request"));
    }
    // Cross-site WebSocket hijacking: browsers send the page's Origin on every WebSocket; a
    // cookie-authenticated upgrade must come from our own pages.
    let own_origin = state.config.public_url.origin().ascii_serialization();
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let cookie_auth = p.session_id().is_some();
    match origin {
        Some(o) if o != own_origin => {
            return Err(AppError::Forbidden(
                "cross-origin WebSocket refused (Origin must be this site)",
            ));
        }
        None if cookie_auth => {
            return Err(AppError::Forbidden("a browser WebSocket must carry an Origin header"));
        }
        _ => {}
    }
    let cols = dimension("cols", q.cols.as_deref(), 80)?;
    let rows = dimension("rows", q.rows.as_deref(), 24)?;
    let mut query = format!("?cols={cols}&rows={rows}");
    if let Some(tid) = &q.tid {
        let ok = (1..=64).contains(&tid.len())
            && tid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(AppError::invalid(
                "tid",
                "tid: 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
            ));
        }
        query.push_str(&format!("&tid={tid}"));
    }
    let client = tunnel::take_upgrade(&mut req).ok_or_else(|| {
        AppError::invalid("upgrade", "upgrade: this connection cannot be upgraded")
    })?;
    let meta = RequestMeta::from_parts(req.headers(), req.extensions());
    // Re-authenticating needs only the credentials, not the handshake.
    let mut credentials = HeaderMap::new();
    for name in [header::COOKIE, header::AUTHORIZATION] {
        for v in req.headers().get_all(&name) {
            credentials.append(name.clone(), v.clone());
        }
    }
    let conn = Conn {
        kind: "terminal",
        id: uuid::Uuid::now_v7().to_string(),
        user: p.user.clone(),
        workspace: ctx.workspace.clone(),
        session,
        credential: Credential::Request(credentials),
        meta,
    };
    open(state, conn, req.headers(), client, &query, HeaderMap::new()).await
}

/// Forwards the upgrade to the session's node, audits the opening, and splices in the
/// background under the access watcher.
async fn open(
    state: &AppState,
    conn: Conn,
    client_headers: &HeaderMap,
    client: hyper::upgrade::OnUpgrade,
    query: &str,
    mut headers: HeaderMap,
) -> Result<Response, AppError> {
    let s = &conn.session;
    if s.state != "running" {
        return Err(AppError::Conflict(format!(
            "the session is {}: start it first (`flare session start {}`; flare ssh starts it for you)",
            s.state, s.name
        )));
    }
    let secret = runtime_secret(state)?;
    let node_id =
        s.node_id.as_deref().ok_or(AppError::Unavailable("the session has no node yet"))?;
    let node = state
        .store
        .node_by_id(node_id)
        .await?
        .ok_or(AppError::Unavailable("the session's node is not registered"))?;
    let tunnel_url = node
        .tunnel_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .ok_or(AppError::Unavailable("the session's node has not reported its tunnel yet"))?;
    if tunnel_url.scheme() != "http" {
        return Err(AppError::Unavailable(
            "the session's node tunnel is not plain http on a private network (node.tunnel_url)",
        ));
    }
    let authority = match (tunnel_url.host_str(), tunnel_url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        _ => return Err(AppError::Unavailable("the session's node tunnel URL has no host")),
    };
    let token = domain::connect::agent_token(secret, s.id.as_str(), s.generation);
    let bearer =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| anyhow::anyhow!(e))?;
    headers.insert(header::AUTHORIZATION, bearer);
    let user_header =
        HeaderValue::from_str(conn.user.id.as_str()).map_err(|e| anyhow::anyhow!(e))?;
    headers.insert("x-burstflare-user", user_header);
    let conn_header = HeaderValue::from_str(&conn.id).map_err(|e| anyhow::anyhow!(e))?;
    headers.insert("x-burstflare-connection", conn_header);
    let agent_kind = if conn.kind == "ssh" { "ssh" } else { "pty" };
    let base = tunnel_url.path().trim_end_matches('/');
    let hop = Hop {
        authority,
        path_and_query: format!("{base}/v1/sessions/{}/{}/{agent_kind}{query}", s.id, s.generation),
        headers,
    };
    let (answer, upstream) = match tunnel::open(client_headers, hop).await {
        Ok(v) => v,
        Err(e) => return Ok(e.into_response()),
    };
    audit_conn(state, &conn, "session.connect.open", serde_json::json!({})).await?;
    let state = state.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let traffic = Arc::new(Traffic::default());
        let reason = tunnel::splice(client, upstream, traffic.clone(), watch(&state, &conn)).await;
        let (up, down) = traffic.totals();
        let detail = serde_json::json!({
            "bytes_in": up,
            "bytes_out": down,
            "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "reason": reason,
        });
        if let Err(e) = audit_conn(&state, &conn, "session.connect.close", detail).await {
            tracing::warn!("auditing the end of connection {}: {e}", conn.id);
        }
    });
    Ok(answer)
}

async fn audit_conn(
    state: &AppState,
    conn: &Conn,
    action: &str,
    mut detail: serde_json::Value,
) -> Result<(), AppError> {
    if let Some(map) = detail.as_object_mut() {
        map.insert("kind".into(), conn.kind.into());
        map.insert("connection".into(), conn.id.clone().into());
        map.insert("session_name".into(), conn.session.name.clone().into());
    }
    let e = conn
        .meta
        .audit(action)
        .actor(&conn.user.id)
        .workspace(&conn.workspace.id)
        .target("session", conn.session.id.to_string())
        .detail(detail);
    state.store.append_audit(&e).await?;
    Ok(())
}

/// Resolves (with the reason) once the connection's access is gone.
async fn watch(state: &AppState, conn: &Conn) -> String {
    let every = Duration::from_millis(state.config.runtime.recheck_ms);
    loop {
        tokio::time::sleep(every).await;
        match still_allowed(state, conn).await {
            Ok(None) => {}
            Ok(Some(reason)) => return reason,
            // A database hiccup is not a reason to cut anyone off; the next check decides.
            Err(e) => tracing::warn!("re-checking connection {}: {e}", conn.id),
        }
    }
}

async fn still_allowed(state: &AppState, conn: &Conn) -> Result<Option<String>, AppError> {
    let now = now_ms();
    match &conn.credential {
        Credential::Runtime(id) => match state.store.runtime_token(id).await? {
            Some(t) if t.revoked_at.is_some() => return Ok(Some("runtime token revoked".into())),
            Some(t) if t.expires_at <= now => return Ok(Some("runtime token expired".into())),
            Some(_) => {}
            None => return Ok(Some("runtime token gone".into())),
        },
        Credential::Request(headers) => match crate::auth::authenticate(state, headers).await {
            Ok(Some(p)) if p.user.id == conn.user.id => {}
            _ => return Ok(Some("signed out or credentials revoked".into())),
        },
    }
    match state.store.membership(&conn.workspace.id, &conn.user.id).await? {
        None => return Ok(Some("no longer a member of the workspace".into())),
        Some(role) if !policy::allows(role, Permission::UseSessions) => {
            return Ok(Some("role no longer allows using sessions".into()));
        }
        Some(_) => {}
    }
    match state.store.session_by_id(&conn.session.id).await? {
        Some(s) if s.state == "running" && s.generation == conn.session.generation => Ok(None),
        Some(s) => Ok(Some(format!("session is {}", s.state))),
        None => Ok(Some("session deleted".into())),
    }
}
