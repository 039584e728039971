//! HTML pages: thin handlers that call the same operations as the JSON API (`identity`,
//! `workspaces`) and render `web::pages`. Forms post here (CSRF-checked by `auth::csrf_guard`),
//! results come back as a redirect with a flash message, except secrets shown once, which are
//! rendered directly.

use axum::Extension;
use axum::extract::{Form, MatchedPath, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use domain::policy::{self, Permission};
use serde::Deserialize;

use crate::auth::Principal;
use crate::routes::{Access, RouteDef, WorkspaceCtx};
use crate::v1::Meta;
use crate::{AppError, AppState, health, identity, workspaces};

const FLASH_COOKIE: &str = "bf_flash";

pub fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(web::pages::error_page(404, "This page does not exist.").into_string()),
    )
        .into_response()
}

/// Everything the layout needs about the caller.
struct Viewer {
    me: Option<sdk::Me>,
    csrf: Option<String>,
    flash: Option<(web::FlashKind, String)>,
}

impl Viewer {
    async fn load(
        state: &AppState,
        principal: Option<&Principal>,
        headers: &HeaderMap,
    ) -> Result<Self, AppError> {
        let me = match principal {
            Some(p) => Some(identity::me(state, p).await?),
            None => None,
        };
        let flash = crate::auth::cookie(headers, FLASH_COOKIE).and_then(|raw| {
            let decoded: String = url::form_urlencoded::parse(format!("f={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())?;
            let (kind, msg) = decoded.split_once(':')?;
            let kind = if kind == "ok" { web::FlashKind::Success } else { web::FlashKind::Error };
            Some((kind, msg.chars().take(300).collect()))
        });
        Ok(Self { me, csrf: principal.and_then(|p| p.csrf().map(str::to_string)), flash })
    }

    fn ctx<'a>(&'a self, state: &'a AppState, current: Option<&'a str>) -> web::PageContext<'a> {
        let workspaces = self.me.as_ref().map(|m| m.workspaces.as_slice()).unwrap_or(&[]);
        web::PageContext {
            user: self.me.as_ref().map(|m| &m.user),
            workspaces,
            current_workspace: current.and_then(|slug| workspaces.iter().find(|w| w.slug == slug)),
            csrf: self.csrf.as_deref(),
            flash: self.flash.as_ref().map(|(kind, message)| web::Flash { kind: *kind, message }),
            bot_check_site_key: state.bot_check.site_key(),
            must_add_passkey: self.me.as_ref().is_some_and(|m| m.must_add_passkey),
        }
    }
}

/// A page; clears the flash cookie it may have displayed.
fn page(status: StatusCode, markup: maud::Markup, had_flash: bool) -> Response {
    let mut resp = (status, Html(markup.into_string())).into_response();
    if had_flash {
        resp.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static("bf_flash=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
        );
    }
    resp
}

/// Redirect after a form post, with a flash message for the next page.
fn done(to: &str, ok: bool, message: &str) -> Response {
    let value: String = url::form_urlencoded::byte_serialize(
        format!("{}:{message}", if ok { "ok" } else { "err" }).as_bytes(),
    )
    .collect();
    let mut resp = Redirect::to(to).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{FLASH_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
    )) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// The answer to a form post that changes something: back to `back` with `message`, or with
/// the error.
fn after(result: Result<(), AppError>, back: &str, message: &str) -> Response {
    match result {
        Ok(()) => done(back, true, message),
        Err(e) => failed(back, e),
    }
}

/// A failed form post: back to `to` with the error, or the 404 page.
fn failed(to: &str, e: AppError) -> Response {
    match e {
        AppError::NotFound => not_found_page(),
        AppError::Internal(_) => e.into_response(),
        other => {
            let (_, body) = other.status_and_body();
            done(to, false, &body.message)
        }
    }
}

fn render_error(e: AppError) -> Response {
    match e {
        AppError::NotFound => not_found_page(),
        other => other.into_response(),
    }
}

async fn home(
    State(s): State<AppState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Response {
    let v = match Viewer::load(&s, p.as_deref(), &headers).await {
        Ok(v) => v,
        Err(e) => return render_error(e),
    };
    // Signed in: the dashboard of the first workspace (the personal one).
    if let Some(ws) = v.me.as_ref().and_then(|m| m.workspaces.first()) {
        return Redirect::to(&format!("/w/{}", ws.slug)).into_response();
    }
    let report = health::cached(&s).await;
    page(
        StatusCode::OK,
        web::pages::home_with(&v.ctx(&s, None), &crate::http::version(), &report),
        v.flash.is_some(),
    )
}

#[derive(Deserialize)]
struct ReturnTo {
    return_to: Option<String>,
}

async fn signup_page(
    State(s): State<AppState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Response {
    match Viewer::load(&s, p.as_deref(), &headers).await {
        Ok(v) => page(StatusCode::OK, web::pages::signup(&v.ctx(&s, None)), v.flash.is_some()),
        Err(e) => render_error(e),
    }
}

async fn signin_page(
    State(s): State<AppState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
    Query(q): Query<ReturnTo>,
) -> Response {
    match Viewer::load(&s, p.as_deref(), &headers).await {
        Ok(v) => page(
            StatusCode::OK,
            web::pages::signin(
                &v.ctx(&s, None),
                q.return_to.as_deref().and_then(web::safe_return_to),
            ),
            v.flash.is_some(),
        ),
        Err(e) => render_error(e),
    }
}

/// The passkey forms post here only when JavaScript is off.
async fn needs_js(uri: axum::http::Uri) -> Response {
    done(uri.path(), false, "Passkeys need JavaScript: enable it for this site and try again.")
}

async fn recover_page(
    State(s): State<AppState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Response {
    match Viewer::load(&s, p.as_deref(), &headers).await {
        Ok(v) => {
            page(StatusCode::OK, web::pages::recover(&v.ctx(&s, None), None), v.flash.is_some())
        }
        Err(e) => render_error(e),
    }
}

#[derive(Deserialize)]
struct RecoverForm {
    email: String,
    code: String,
}

async fn recover_post(
    State(s): State<AppState>,
    Meta(m): Meta,
    Form(f): Form<RecoverForm>,
) -> Response {
    let req = sdk::RecoverRequest { email: f.email, code: f.code };
    match identity::recover(&s, &m, &req).await {
        Ok((_, cookie)) => {
            let mut resp = done(
                "/account#passkeys",
                true,
                "Signed in with a recovery code. Add a passkey now.",
            );
            resp.headers_mut().append(header::SET_COOKIE, cookie);
            resp
        }
        Err(AppError::Internal(e)) => AppError::Internal(e).into_response(),
        Err(e) => {
            let (status, body) = e.status_and_body();
            let v = Viewer { me: None, csrf: None, flash: None };
            page(status, web::pages::recover(&v.ctx(&s, None), Some(&body.message)), false)
        }
    }
}

async fn signout_post(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
) -> Response {
    if let Err(e) = identity::signout(&s, &m, &p).await {
        return failed("/", e);
    }
    let mut resp = done("/", true, "Signed out.");
    resp.headers_mut().append(header::SET_COOKIE, crate::auth::clear_session_cookie(&s));
    resp
}

async fn account_page(
    s: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    shown: Option<web::pages::ShownOnce<'_>>,
) -> Result<Response, AppError> {
    let v = Viewer::load(s, Some(p), headers).await?;
    let passkeys: Vec<sdk::PasskeyInfo> =
        s.store.passkeys_for_user(&p.user.id).await?.iter().map(identity::passkey_info).collect();
    let sessions = identity::sessions(s, p).await?;
    let tokens = identity::tokens(s, p).await?;
    let ssh_keys: Vec<sdk::SshKey> =
        s.store.ssh_keys(&p.user.id).await?.iter().map(crate::connect::key_view).collect();
    let cli = crate::device::cli_sessions(s, p).await?;
    let unused = s.store.count_unused_recovery_codes(&p.user.id).await?;
    let markup = web::pages::account(
        &v.ctx(s, None),
        &passkeys,
        &sessions,
        &tokens,
        &ssh_keys,
        &cli,
        unused,
        shown,
    );
    Ok(page(StatusCode::OK, markup, v.flash.is_some()))
}

async fn account(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    account_page(&s, &p, &headers, None).await.unwrap_or_else(render_error)
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

async fn passkey_rename(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Form(f): Form<NameForm>,
) -> Response {
    after(
        identity::passkey_rename(&s, &m, &p, &id, &f.name).await,
        "/account#passkeys",
        "Passkey renamed.",
    )
}

async fn passkey_delete(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    after(identity::passkey_delete(&s, &m, &p, &id).await, "/account#passkeys", "Passkey removed.")
}

async fn session_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    after(
        identity::session_revoke(&s, &m, &p, &id).await,
        "/account#sessions",
        "Session revoked: it is signed out now.",
    )
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
    expires_in_days: Option<String>,
}

async fn token_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    let days = match f.expires_in_days.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => match d.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                return done(
                    "/account#tokens",
                    false,
                    "expires_in_days: must be between 1 and 366",
                );
            }
        },
        None => None,
    };
    let req = sdk::CreateToken { name: f.name, expires_in_days: days };
    match identity::token_create(&s, &m, &p, &req).await {
        Ok(created) => {
            let shown =
                web::pages::ShownOnce::Token { name: &created.token.name, secret: &created.secret };
            account_page(&s, &p, &headers, Some(shown)).await.unwrap_or_else(render_error)
        }
        Err(e) => failed("/account#tokens", e),
    }
}

async fn token_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    after(identity::token_revoke(&s, &m, &p, &id).await, "/account#tokens", "Token revoked.")
}

#[derive(Deserialize)]
struct SshKeyForm {
    name: String,
    public_key: String,
}

async fn ssh_key_add(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Form(f): Form<SshKeyForm>,
) -> Response {
    match crate::connect::add_key(&s, &m, &p, &f.name, &f.public_key).await {
        Ok((key, true)) => {
            done("/account#ssh-keys", true, &format!("SSH key “{}” added.", key.name))
        }
        Ok((key, false)) => done(
            "/account#ssh-keys",
            true,
            &format!("This key is already registered, as “{}”.", key.name),
        ),
        Err(e) => failed("/account#ssh-keys", e),
    }
}

async fn ssh_key_delete(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    after(
        crate::connect::remove_key(&s, &m, &p, &id).await,
        "/account#ssh-keys",
        "SSH key removed.",
    )
}

async fn cli_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    after(
        crate::device::cli_session_revoke(&s, &m, &p, &id).await,
        "/account#cli",
        "CLI session revoked: it is signed out now.",
    )
}

async fn recovery_regenerate(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    match identity::recovery_regenerate(&s, &m, &p).await {
        Ok(codes) => {
            account_page(&s, &p, &headers, Some(web::pages::ShownOnce::RecoveryCodes(&codes.codes)))
                .await
                .unwrap_or_else(render_error)
        }
        Err(e) => failed("/account#recovery", e),
    }
}

#[derive(Deserialize)]
struct SwitchQuery {
    ws: String,
}

async fn switch(Query(q): Query<SwitchQuery>) -> Response {
    let slug: String = url::form_urlencoded::byte_serialize(q.ws.as_bytes()).collect();
    Redirect::to(&format!("/w/{slug}")).into_response()
}

async fn new_workspace(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    match Viewer::load(&s, Some(&p), &headers).await {
        Ok(v) => page(
            StatusCode::OK,
            web::pages::new_workspace(&v.ctx(&s, None), None),
            v.flash.is_some(),
        ),
        Err(e) => render_error(e),
    }
}

#[derive(Deserialize)]
struct WorkspaceForm {
    name: String,
    slug: String,
}

async fn workspace_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Form(f): Form<WorkspaceForm>,
) -> Response {
    match workspaces::create(&s, &m, &p, &sdk::CreateWorkspace { name: f.name, slug: f.slug }).await
    {
        Ok(ws) => done(&format!("/w/{}/members", ws.slug), true, "Workspace created."),
        Err(e) => failed("/workspaces/new", e),
    }
}

async fn members_page(
    s: &AppState,
    p: &Principal,
    c: &WorkspaceCtx,
    headers: &HeaderMap,
    link: Option<&str>,
) -> Result<Response, AppError> {
    let v = Viewer::load(s, Some(p), headers).await?;
    let ws = workspaces::summary(&c.workspace, c.role);
    let members = workspaces::members(s, c).await?;
    let can_manage = policy::allows(c.role, Permission::ManageMembers);
    let invites = if policy::allows(c.role, Permission::InviteMembers) {
        workspaces::invites(s, c).await?
    } else {
        Vec::new()
    };
    let markup = web::pages::members(
        &v.ctx(s, Some(ws.slug.as_str())),
        &ws,
        &members,
        &invites,
        can_manage,
        link,
    );
    Ok(page(StatusCode::OK, markup, v.flash.is_some()))
}

async fn members(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
) -> Response {
    members_page(&s, &p, &c, &headers, None).await.unwrap_or_else(render_error)
}

#[derive(Deserialize)]
struct RoleForm {
    role: String,
}

fn members_url(c: &WorkspaceCtx) -> String {
    format!("/w/{}/members", c.workspace.slug)
}

async fn member_role(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, user)): Path<(String, String)>,
    Form(f): Form<RoleForm>,
) -> Response {
    after(
        workspaces::set_role(&s, &m, &p, &c, &user, &f.role).await,
        &members_url(&c),
        "Role changed.",
    )
}

async fn member_remove(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, user)): Path<(String, String)>,
) -> Response {
    after(workspaces::remove(&s, &m, &p, &c, &user).await, &members_url(&c), "Member removed.")
}

#[derive(Deserialize)]
struct InviteForm {
    email: String,
    role: String,
    expires_in_days: Option<String>,
}

async fn invite_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Form(f): Form<InviteForm>,
) -> Response {
    let days = f
        .expires_in_days
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u32>().unwrap_or(0));
    let req = sdk::CreateInvite { email: f.email, role: f.role, expires_in_days: days };
    match workspaces::invite(&s, &m, &p, &c, &req).await {
        Ok(created) => members_page(&s, &p, &c, &headers, Some(&created.link))
            .await
            .unwrap_or_else(render_error),
        Err(e) => failed(&members_url(&c), e),
    }
}

async fn invite_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    after(workspaces::invite_revoke(&s, &m, &p, &c, &id).await, &members_url(&c), "Invite revoked.")
}

async fn leave(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
) -> Response {
    match workspaces::leave(&s, &m, &p, &c).await {
        Ok(()) => done("/", true, "You left the workspace."),
        Err(e) => failed(&members_url(&c), e),
    }
}

async fn audit(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Query(q): Query<crate::v1::AuditQuery>,
) -> Response {
    let result = async {
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let page_data = workspaces::audit_page(
            &s,
            &c,
            q.action.as_deref(),
            q.actor.as_deref(),
            q.before.as_deref(),
            q.limit,
        )
        .await?;
        let ws = workspaces::summary(&c.workspace, c.role);
        let markup = web::pages::audit(
            &v.ctx(&s, Some(ws.slug.as_str())),
            &ws,
            &page_data,
            q.action.as_deref(),
            q.actor.as_deref(),
        );
        Ok::<_, AppError>(page(StatusCode::OK, markup, v.flash.is_some()))
    }
    .await;
    result.unwrap_or_else(render_error)
}

async fn invite_page(
    State(s): State<AppState>,
    p: Option<Extension<Principal>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Response {
    let result = async {
        let preview = s
            .store
            .invite_preview(&domain::secrets::hash(&token), domain::store::now_ms())
            .await?
            .ok_or(AppError::NotFound)?;
        let v = Viewer::load(&s, p.as_deref(), &headers).await?;
        let markup = web::pages::invite(
            &v.ctx(&s, None),
            &preview.workspace_name,
            preview.role.as_str(),
            &token,
            p.is_some(),
        );
        Ok::<_, AppError>(page(StatusCode::OK, markup, v.flash.is_some()))
    }
    .await;
    result.unwrap_or_else(render_error)
}

async fn invite_accept(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(token): Path<String>,
) -> Response {
    match workspaces::accept(&s, &m, &p, &token).await {
        Ok(ws) => done(&format!("/w/{}/members", ws.slug), true, "Welcome to the workspace."),
        Err(e) => failed("/", e),
    }
}

async fn dashboard(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let d = workspaces::dashboard(&s, &c).await?;
        Ok::<_, AppError>(page(
            StatusCode::OK,
            web::pages::dashboard(&v.ctx(&s, Some(c.workspace.slug.as_str())), &d),
            v.flash.is_some(),
        ))
    }
    .await;
    result.unwrap_or_else(render_error)
}

#[derive(Deserialize)]
struct SessionsFilter {
    #[serde(default)]
    show_ended: bool,
}

/// What the caller may do to sessions in this workspace; which session and state decide the rest.
fn session_rights(c: &WorkspaceCtx) -> web::pages::SessionRights {
    web::pages::SessionRights {
        use_sessions: policy::allows(c.role, Permission::UseSessions),
        manage_any: policy::allows(c.role, Permission::ManageAnySession),
    }
}

/// The templates new sessions can start from: not archived, with a built version; each with
/// the version a session gets (the promoted one, else the newest built one).
async fn startable_templates(
    s: &AppState,
    c: &WorkspaceCtx,
) -> Result<Vec<web::pages::StartableTemplate>, AppError> {
    let mut out = Vec::new();
    for t in workspaces::templates(s, c).await?.into_iter().filter(|t| !t.archived) {
        let d = crate::templates::detail(s, c, &t.name).await?;
        let built = d.latest_built_version.map(|v| v.version);
        if let Some(version) = d.active_version.or(built) {
            out.push(web::pages::StartableTemplate { name: t.name, version });
        }
    }
    Ok(out)
}

async fn sessions(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Query(q): Query<SessionsFilter>,
) -> Response {
    let result = async {
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let list = workspaces::sessions(&s, &c, q.show_ended).await?;
        let ws = workspaces::summary(&c.workspace, c.role);
        let rights = session_rights(&c);
        let startable =
            if rights.use_sessions { startable_templates(&s, &c).await? } else { Vec::new() };
        // A fresh key per rendering: the same form submitted twice starts one session.
        let key = uuid::Uuid::new_v4().to_string();
        let new = web::pages::NewSession { templates: &startable, idempotency_key: &key };
        Ok::<_, AppError>(page(
            StatusCode::OK,
            web::pages::sessions(
                &v.ctx(&s, Some(ws.slug.as_str())),
                &ws,
                &list,
                q.show_ended,
                rights,
                rights.use_sessions.then_some(&new),
            ),
            v.flash.is_some(),
        ))
    }
    .await;
    result.unwrap_or_else(render_error)
}

fn sessions_url(c: &WorkspaceCtx) -> String {
    format!("/w/{}/sessions", web::encode_path_segment(c.workspace.slug.as_str()))
}

fn session_url(c: &WorkspaceCtx, id: &str) -> String {
    web::pages::session_path(c.workspace.slug.as_str(), id)
}

/// Where a session form goes back to: its `next` when that is a page of this workspace (a
/// local path under `/w/{slug}/`, without dot segments), else the session's page.
fn session_back(c: &WorkspaceCtx, id: &str, next: &str) -> String {
    let prefix = format!("{}/", sessions_url(c));
    let path = next.split(['?', '#']).next().unwrap_or_default();
    let dotted = path.to_ascii_lowercase().contains("%2e")
        || path.split('/').any(|seg| seg == "." || seg == "..");
    match web::safe_return_to(next) {
        Some(n) if !dotted && (n.starts_with(&prefix) || path == sessions_url(c)) => n.to_string(),
        _ => session_url(c, id),
    }
}

#[derive(Deserialize)]
struct NewSessionForm {
    template: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    idempotency_key: String,
}

async fn session_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Form(f): Form<NewSessionForm>,
) -> Response {
    let name = f.name.trim();
    let key = f.idempotency_key.trim();
    let req = sdk::CreateSession {
        template: f.template.trim().to_string(),
        version: None,
        name: (!name.is_empty()).then(|| name.to_string()),
        idempotency_key: (!key.is_empty()).then(|| key.to_string()),
    };
    match crate::sessions::create(&s, &m, &p, &c, &req, false).await {
        Ok(d) => done(
            &session_url(&c, &d.id),
            true,
            &format!("Session {} created: it is starting.", d.name),
        ),
        // A template that is gone (or never was): say so on the list, not with a 404 page.
        Err(AppError::NotFound) => done(
            &sessions_url(&c),
            false,
            &format!("template: no template named {} in this workspace", req.template),
        ),
        Err(e) => failed(&sessions_url(&c), e),
    }
}

async fn session_page(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let result = async {
        let d = crate::sessions::get(&s, &p, &c, &id).await?;
        // The newest events: read on from the start, keeping the last ones (a bounded number
        // of reads; the script fetches anything newer).
        let mut events: Vec<sdk::SessionEvent> = Vec::new();
        let mut after = 0;
        for _ in 0..40 {
            let batch = crate::sessions::events(&s, &p, &c, &d.id, after).await?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            events.extend(batch);
            let keep = web::pages::MAX_EVENTS_SHOWN;
            if events.len() > keep {
                events.drain(..events.len() - keep);
            }
        }
        // What the workflow says: the page still shows the session when it cannot be asked.
        let why = match crate::sessions::why(&s, &p, &c, &d.id).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::debug!(session = %d.id, "asking the session's workflow for its page: {e:?}");
                None
            }
        };
        // Its snapshots, until it is deleted (a deleted session has none to show).
        let snapshots = if d.state == "deleted" {
            None
        } else {
            match crate::snapshots::list(&s, &c, &d.id).await {
                Ok(list) => Some(list),
                Err(AppError::NotFound) => None,
                Err(e) => return Err(e),
            }
        };
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let ws = workspaces::summary(&c.workspace, c.role);
        let card = snapshots.as_deref().map(|list| web::pages::SessionSnapshots { list });
        let markup = web::pages::session_detail_with_snapshots(
            &v.ctx(&s, Some(ws.slug.as_str())),
            &ws,
            &d,
            why.as_ref(),
            &events,
            session_rights(&c),
            card.as_ref(),
        );
        Ok::<_, AppError>(page(StatusCode::OK, markup, v.flash.is_some()))
    }
    .await;
    result.unwrap_or_else(render_error)
}

/// `GET /w/{ws}/sessions/{id}/terminal`: the browser terminal of one's own session. Someone
/// else's session answers like one that does not exist: only its owner may open a shell in it.
async fn session_terminal_page(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let result = async {
        let d = crate::sessions::get(&s, &p, &c, &id).await?;
        if d.owner.id != p.user.id.to_string() {
            return Err(AppError::NotFound);
        }
        // The idle and lifetime deadlines, while it runs; the page still opens without them.
        let why = if d.state == "running" {
            match crate::sessions::why(&s, &p, &c, &d.id).await {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::debug!(session = %d.id, "asking the session's workflow for its terminal page: {e:?}");
                    None
                }
            }
        } else {
            None
        };
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let ws = workspaces::summary(&c.workspace, c.role);
        let markup = web::pages::terminal(
            &v.ctx(&s, Some(ws.slug.as_str())),
            &ws,
            &d,
            why.as_ref(),
            session_rights(&c),
        );
        Ok::<_, AppError>(page(StatusCode::OK, markup, v.flash.is_some()))
    }
    .await;
    result.unwrap_or_else(render_error)
}

#[derive(Deserialize)]
struct SessionOpForm {
    #[serde(default)]
    next: String,
}

/// `POST /w/{ws}/sessions/{id}/{start|stop|sleep|restart|delete}`: the operation is the last
/// segment of the route. The service checks the session is the caller's, or that they may
/// manage anyone's; the workflow refuses an operation its state does not allow.
async fn session_op(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    route: MatchedPath,
    Path((_, id)): Path<(String, String)>,
    Form(f): Form<SessionOpForm>,
) -> Response {
    let op = route.as_str().rsplit('/').next().unwrap_or_default();
    let back = session_back(&c, &id, &f.next);
    let result = if op == "delete" {
        crate::sessions::delete(&s, &m, &p, &c, &id, false).await
    } else {
        crate::sessions::op(&s, &m, &p, &c, &id, op, false).await
    };
    match result {
        Ok(d) => {
            let message = match op {
                "start" => format!("Starting {}.", d.name),
                "stop" => format!("Stopping {}.", d.name),
                "sleep" => format!("Putting {} to sleep.", d.name),
                "restart" => format!("Restarting {}.", d.name),
                _ => format!("Deleting {}.", d.name),
            };
            done(&back, true, &message)
        }
        Err(e) => failed(&back, e),
    }
}

/// Where the snapshot forms come back to: the session page's Snapshots card.
fn snapshots_back(c: &WorkspaceCtx, id: &str) -> String {
    format!("{}#snapshots", session_url(c, id))
}

/// How long a restore form waits for the restore before answering that it is still running
/// (it goes on either way: it runs as a workflow).
const RESTORE_PAGE_WAIT: std::time::Duration = std::time::Duration::from_secs(45);

/// `POST /w/{ws}/sessions/{id}/snapshots`: "Save now". Answers once the snapshot is started
/// (pending); the refusals (not running, nothing to persist, too soon) come back as the flash.
async fn snapshot_save(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let back = snapshots_back(&c, &id);
    match crate::snapshots::save(&s, &m, &p, &c, &id, false).await {
        Ok(snap) if snap.status == "failed" => done(
            &back,
            false,
            &format!("The snapshot failed: {}", snap.error.as_deref().unwrap_or("no reason given")),
        ),
        Ok(snap) => done(
            &back,
            true,
            &format!(
                "Saving a snapshot: it is {}. Reload this page to see when it is verified.",
                snap.status
            ),
        ),
        Err(e) => failed(&back, e),
    }
}

/// `POST /w/{ws}/sessions/{id}/snapshots/{snapshot}/restore`: restores a verified snapshot,
/// now into a running session (after a safety snapshot), else at its next start. A restore
/// into a running session is waited for up to [`RESTORE_PAGE_WAIT`]; after that the page says
/// it is still running.
async fn snapshot_restore(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id, snap)): Path<(String, String, String)>,
) -> Response {
    let back = snapshots_back(&c, &id);
    // In a task of its own, so that neither a long wait nor the browser going away cuts it short.
    let task = tokio::spawn({
        let c = c.clone();
        async move { crate::snapshots::restore(&s, &m, &p, &c, &id, &snap).await }
    });
    let result = match tokio::time::timeout(RESTORE_PAGE_WAIT, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(AppError::Internal(anyhow::anyhow!("the restore task: {join}"))),
        Err(_) => {
            return done(
                &back,
                true,
                "The restore is still running: the session's files are replaced when it is done. \
                 Reload this page in a minute.",
            );
        }
    };
    match result {
        Ok(r) if r.applied == "now" => {
            let message = match &r.safety_snapshot {
                Some(safety) => format!(
                    "Snapshot restored: the session has its files now. Its previous files were \
                     saved as snapshot {safety} (pre-restore)."
                ),
                None => "Snapshot restored: the session has its files now.".to_string(),
            };
            done(&back, true, &message)
        }
        Ok(_) => done(
            &back,
            true,
            "Snapshot selected: its files are restored when the session next starts.",
        ),
        Err(e) => failed(&back, e),
    }
}

/// `POST /w/{ws}/sessions/{id}/snapshots/{snapshot}/delete`: retires a snapshot that is not
/// the session's latest.
async fn snapshot_delete(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id, snap)): Path<(String, String, String)>,
) -> Response {
    let back = snapshots_back(&c, &id);
    after(
        crate::snapshots::delete(&s, &m, &p, &c, &id, &snap).await.map(|_| ()),
        &back,
        "Snapshot deleted.",
    )
}

#[derive(Deserialize)]
struct NewTemplateForm {
    name: String,
    #[serde(default)]
    description: String,
}

/// The template catalog; `form` is a failed "New template" attempt to show again with `status`.
async fn templates_page(
    s: &AppState,
    p: &Principal,
    c: &WorkspaceCtx,
    headers: &HeaderMap,
    status: StatusCode,
    form: Option<&web::pages::NewTemplate<'_>>,
) -> Result<Response, AppError> {
    let v = Viewer::load(s, Some(p), headers).await?;
    let list = workspaces::templates(s, c).await?;
    let ws = workspaces::summary(&c.workspace, c.role);
    let can_manage = policy::allows(c.role, Permission::ManageTemplates);
    let markup =
        web::pages::templates(&v.ctx(s, Some(ws.slug.as_str())), &ws, &list, can_manage, form);
    Ok(page(status, markup, v.flash.is_some()))
}

async fn templates(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
) -> Response {
    templates_page(&s, &p, &c, &headers, StatusCode::OK, None).await.unwrap_or_else(render_error)
}

fn template_url(c: &WorkspaceCtx, name: &str) -> String {
    web::pages::template_path(c.workspace.slug.as_str(), name)
}

fn build_url(c: &WorkspaceCtx, id: &str) -> String {
    web::pages::build_path(c.workspace.slug.as_str(), id)
}

async fn template_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Form(f): Form<NewTemplateForm>,
) -> Response {
    let req = sdk::CreateTemplate { name: f.name.trim().to_string(), description: f.description };
    match crate::templates::create(&s, &m, &p, &c, &req).await {
        Ok(t) => done(
            &template_url(&c, &t.name),
            true,
            "Template created. Upload its first version with the command below.",
        ),
        Err(e @ (AppError::Internal(_) | AppError::NotFound)) => render_error(e),
        Err(e) => {
            let field = match &e {
                AppError::Invalid { field, .. } => Some(field.to_string()),
                AppError::InvalidField { field, .. } => Some(field.clone()),
                // A taken name is the only conflict creating a template has.
                AppError::Conflict(_) => Some("name".to_string()),
                _ => None,
            };
            let (status, body) = e.status_and_body();
            let form = web::pages::NewTemplate {
                name: &req.name,
                description: &req.description,
                error: Some(&body.message),
                field: field.as_deref(),
            };
            templates_page(&s, &p, &c, &headers, status, Some(&form))
                .await
                .unwrap_or_else(render_error)
        }
    }
}

async fn template_detail(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Path((_, name)): Path<(String, String)>,
) -> Response {
    let result = async {
        let t = crate::templates::detail(&s, &c, &name).await?;
        let versions = crate::templates::versions(&s, &c, &name).await?;
        let builds = crate::templates::builds(&s, &c, &name).await?;
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let ws = workspaces::summary(&c.workspace, c.role);
        let can_manage = policy::allows(c.role, Permission::ManageTemplates);
        let runs = crate::promotions::list(&s, &c, &name).await?;
        let catalog = crate::promotions::catalog(&s, &c).await?;
        let entry = catalog.entries.iter().find(|e| e.template_id == t.id);
        let promotion_policy = crate::promotions::policy(&s, &c).await?;
        let card = web::pages::TemplatePromotions {
            runs: &runs,
            entry,
            revision: catalog.revision,
            policy: &promotion_policy,
            can_promote: policy::allows(c.role, Permission::PromoteTemplates),
        };
        let markup = web::pages::template_detail_with_promotions(
            &v.ctx(&s, Some(ws.slug.as_str())),
            &ws,
            &t,
            &versions,
            &builds,
            can_manage,
            Some(&card),
        );
        Ok::<_, AppError>(page(StatusCode::OK, markup, v.flash.is_some()))
    }
    .await;
    result.unwrap_or_else(render_error)
}

async fn template_archive(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> Response {
    after(
        crate::templates::archive(&s, &m, &p, &c, &name).await.map(|_| ()),
        &template_url(&c, &name),
        "Template archived: new sessions cannot start from it.",
    )
}

#[derive(Deserialize)]
struct VersionForm {
    #[serde(default)]
    version: String,
}

/// Where the promotion forms come back to: the template page's Promotion card.
fn promotion_back(c: &WorkspaceCtx, name: &str) -> String {
    format!("{}#promotion", template_url(c, name))
}

fn started(r: Result<sdk::Promotion, AppError>, back: &str, what: &str) -> Response {
    match r {
        Ok(p) => done(
            back,
            true,
            &format!("{what} of version {} started: this page shows its progress.", p.version),
        ),
        Err(e) => failed(back, e),
    }
}

/// `POST /w/{ws}/templates/{name}/promote` (form: `version`).
async fn template_promote(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
    Form(f): Form<VersionForm>,
) -> Response {
    let version = Some(f.version.trim().to_string()).filter(|v| !v.is_empty());
    let req = sdk::PromoteRequest { version };
    let r = crate::promotions::promote(&s, &m, &p, &c, &name, &req).await;
    started(r, &promotion_back(&c, &name), "Promotion")
}

/// `POST /w/{ws}/templates/{name}/rollback` (form: `version`).
async fn template_rollback(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
    Form(f): Form<VersionForm>,
) -> Response {
    let req = sdk::RollbackRequest { version: f.version.trim().to_string() };
    let r = crate::promotions::rollback(&s, &m, &p, &c, &name, &req).await;
    started(r, &promotion_back(&c, &name), "Rollback")
}

/// `POST /w/{ws}/templates/{name}/demote`.
async fn template_demote(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> Response {
    let r = crate::promotions::demote(&s, &m, &p, &c, &name).await;
    started(r, &promotion_back(&c, &name), "Demotion")
}

/// `POST /w/{ws}/promotions/{id}/approve`: back to the template's page.
async fn promotion_approve(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let run = match crate::promotions::get(&s, &c, &id).await {
        Ok(run) => run,
        Err(e) => return render_error(e),
    };
    let back = promotion_back(&c, &run.template);
    match crate::promotions::approve(&s, &m, &p, &c, &id).await {
        Ok(r) => done(
            &back,
            true,
            &format!(
                "Approved: version {} of {} goes on to the catalog and the rollout.",
                r.version, r.template
            ),
        ),
        Err(e) => failed(&back, e),
    }
}

async fn build_page(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    let result = async {
        // The log lives in object storage: when it cannot be read, the page still shows the
        // build (and says so) rather than failing.
        let (build, log) = match crate::templates::build_log(&s, &c, &id, 0).await {
            Ok(log) => (log.build.clone(), Some(log)),
            Err(AppError::Internal(e)) => {
                tracing::warn!(build = %id, "reading the build log for its page: {e:#}");
                (crate::templates::build(&s, &c, &id).await?, None)
            }
            Err(e) => return Err(e),
        };
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let ws = workspaces::summary(&c.workspace, c.role);
        let can_manage = policy::allows(c.role, Permission::ManageTemplates);
        let markup = web::pages::build_page(
            &v.ctx(&s, Some(ws.slug.as_str())),
            &ws,
            &build,
            log.as_ref(),
            can_manage,
        );
        Ok::<_, AppError>(page(StatusCode::OK, markup, v.flash.is_some()))
    }
    .await;
    result.unwrap_or_else(render_error)
}

async fn build_retry(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    match crate::templates::retry(&s, &m, &p, &c, &id).await {
        Ok(b) => done(
            &build_url(&c, &b.id),
            true,
            &format!(
                "Build queued: attempt {} of {} {}.",
                b.attempt,
                b.template,
                web::components::version_label(&b.version)
            ),
        ),
        Err(e) => failed(&build_url(&c, &id), e),
    }
}

async fn build_cancel(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Response {
    match crate::templates::cancel(&s, &m, &p, &c, &id).await {
        Ok(b) => done(&build_url(&c, &b.id), true, "Cancel requested: the build stops shortly."),
        Err(e) => failed(&build_url(&c, &id), e),
    }
}

async fn settings(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let v = Viewer::load(&s, Some(&p), &headers).await?;
        let ws = workspaces::summary(&c.workspace, c.role);
        let can = policy::allows(c.role, Permission::ManageWorkspace);
        Ok::<_, AppError>(page(
            StatusCode::OK,
            web::pages::settings(&v.ctx(&s, Some(ws.slug.as_str())), &ws, can),
            v.flash.is_some(),
        ))
    }
    .await;
    result.unwrap_or_else(render_error)
}

async fn settings_post(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Form(f): Form<NameForm>,
) -> Response {
    let back = format!("/w/{}/settings", c.workspace.slug);
    match workspaces::rename(&s, &m, &p, &c, &f.name).await {
        Ok(_) => done(&back, true, "Workspace renamed."),
        Err(e) => failed(&back, e),
    }
}

#[derive(Deserialize)]
struct CodeQuery {
    code: Option<String>,
}

async fn device_page(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Query(q): Query<CodeQuery>,
) -> Response {
    let v = match Viewer::load(&s, Some(&p), &headers).await {
        Ok(v) => v,
        Err(e) => return render_error(e),
    };
    let ctx = v.ctx(&s, None);
    let Some(typed) = q.code.filter(|c| !c.trim().is_empty()) else {
        return page(
            StatusCode::OK,
            web::pages::device(&ctx, web::pages::DeviceView::Enter { error: None }),
            v.flash.is_some(),
        );
    };
    match crate::device::lookup(&s, &p, &typed).await {
        Ok(d) => {
            let shown = domain::secrets::display_user_code(&d.user_code);
            let view = web::pages::DeviceView::Confirm {
                code: &shown,
                client_name: &d.client_name,
                ip: d.ip.as_deref(),
                created_at: d.created_at,
            };
            page(StatusCode::OK, web::pages::device(&ctx, view), v.flash.is_some())
        }
        Err(AppError::Internal(e)) => AppError::Internal(e).into_response(),
        Err(e) => {
            let (status, body) = e.status_and_body();
            page(
                status,
                web::pages::device(
                    &ctx,
                    web::pages::DeviceView::Enter { error: Some(&body.message) },
                ),
                v.flash.is_some(),
            )
        }
    }
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn device_decide(
    s: AppState,
    m: crate::auth::RequestMeta,
    p: Principal,
    headers: HeaderMap,
    code: &str,
    approve: bool,
) -> Response {
    match crate::device::decide(&s, &m, &p, code, approve).await {
        Ok(()) => match Viewer::load(&s, Some(&p), &headers).await {
            Ok(v) => page(
                StatusCode::OK,
                web::pages::device(
                    &v.ctx(&s, None),
                    web::pages::DeviceView::Done { approved: approve },
                ),
                false,
            ),
            Err(e) => render_error(e),
        },
        Err(e) => failed("/device", e),
    }
}

async fn device_approve(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    device_decide(s, m, p, headers, &f.code, true).await
}

async fn device_deny(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    device_decide(s, m, p, headers, &f.code, false).await
}

/// Every page route with its access rule.
pub fn routes() -> Vec<RouteDef> {
    use Access::{Public, User, Workspace};
    use Method as M;
    use Permission as P;
    vec![
        RouteDef::new(M::GET, "/", Public, get(home)),
        RouteDef::new(M::GET, "/signup", Public, get(signup_page)),
        RouteDef::new(M::POST, "/signup", Public, post(needs_js)),
        RouteDef::new(M::GET, "/signin", Public, get(signin_page)),
        RouteDef::new(M::POST, "/signin", Public, post(needs_js)),
        RouteDef::new(M::GET, "/recover", Public, get(recover_page)),
        RouteDef::new(M::POST, "/recover", Public, post(recover_post)),
        RouteDef::new(M::GET, "/invite/{token}", Public, get(invite_page)),
        RouteDef::new(M::POST, "/invite/{token}/accept", User, post(invite_accept)),
        RouteDef::new(M::POST, "/signout", User, post(signout_post)).before_passkey(),
        RouteDef::new(M::GET, "/account", User, get(account)).before_passkey(),
        RouteDef::new(M::POST, "/account/passkeys", User, post(needs_js)).before_passkey(),
        RouteDef::new(M::POST, "/account/passkeys/{id}/rename", User, post(passkey_rename)),
        RouteDef::new(M::POST, "/account/passkeys/{id}/delete", User, post(passkey_delete)),
        RouteDef::new(M::POST, "/account/sessions/{id}/revoke", User, post(session_revoke)),
        RouteDef::new(M::POST, "/account/tokens", User, post(token_create)),
        RouteDef::new(M::POST, "/account/tokens/{id}/revoke", User, post(token_revoke)),
        RouteDef::new(M::POST, "/account/ssh-keys", User, post(ssh_key_add)),
        RouteDef::new(M::POST, "/account/ssh-keys/{id}/delete", User, post(ssh_key_delete)),
        RouteDef::new(M::POST, "/account/recovery-codes", User, post(recovery_regenerate)),
        RouteDef::new(M::POST, "/account/cli-sessions/{id}/revoke", User, post(cli_revoke)),
        RouteDef::new(M::GET, "/switch", User, get(switch)),
        RouteDef::new(M::GET, "/device", User, get(device_page)),
        RouteDef::new(M::POST, "/device/approve", User, post(device_approve)),
        RouteDef::new(M::POST, "/device/deny", User, post(device_deny)),
        RouteDef::new(M::GET, "/workspaces/new", User, get(new_workspace)),
        RouteDef::new(M::POST, "/workspaces", User, post(workspace_create)),
        RouteDef::new(M::GET, "/w/{ws}", Workspace(P::ViewWorkspace), get(dashboard)),
        RouteDef::new(M::GET, "/w/{ws}/sessions", Workspace(P::ViewWorkspace), get(sessions)),
        RouteDef::new(M::POST, "/w/{ws}/sessions", Workspace(P::UseSessions), post(session_create)),
        RouteDef::new(
            M::GET,
            "/w/{ws}/sessions/{id}",
            Workspace(P::ViewWorkspace),
            get(session_page),
        ),
        RouteDef::new(
            M::GET,
            "/w/{ws}/sessions/{id}/terminal",
            Workspace(P::ViewWorkspace),
            get(session_terminal_page),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/start",
            Workspace(P::UseSessions),
            post(session_op),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/stop",
            Workspace(P::UseSessions),
            post(session_op),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/sleep",
            Workspace(P::UseSessions),
            post(session_op),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/restart",
            Workspace(P::UseSessions),
            post(session_op),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/delete",
            Workspace(P::UseSessions),
            post(session_op),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/snapshots",
            Workspace(P::UseSessions),
            post(snapshot_save),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/snapshots/{snapshot}/restore",
            Workspace(P::UseSessions),
            post(snapshot_restore),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/sessions/{id}/snapshots/{snapshot}/delete",
            Workspace(P::UseSessions),
            post(snapshot_delete),
        ),
        RouteDef::new(M::GET, "/w/{ws}/templates", Workspace(P::ViewWorkspace), get(templates)),
        RouteDef::new(
            M::POST,
            "/w/{ws}/templates",
            Workspace(P::ManageTemplates),
            post(template_create),
        ),
        RouteDef::new(
            M::GET,
            "/w/{ws}/templates/{name}",
            Workspace(P::ViewWorkspace),
            get(template_detail),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/templates/{name}/archive",
            Workspace(P::ManageTemplates),
            post(template_archive),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/templates/{name}/promote",
            Workspace(P::PromoteTemplates),
            post(template_promote),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/templates/{name}/rollback",
            Workspace(P::PromoteTemplates),
            post(template_rollback),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/templates/{name}/demote",
            Workspace(P::PromoteTemplates),
            post(template_demote),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/promotions/{id}/approve",
            Workspace(P::PromoteTemplates),
            post(promotion_approve),
        ),
        RouteDef::new(M::GET, "/w/{ws}/builds/{id}", Workspace(P::ViewWorkspace), get(build_page)),
        RouteDef::new(
            M::POST,
            "/w/{ws}/builds/{id}/retry",
            Workspace(P::ManageTemplates),
            post(build_retry),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/builds/{id}/cancel",
            Workspace(P::ManageTemplates),
            post(build_cancel),
        ),
        RouteDef::new(M::GET, "/w/{ws}/settings", Workspace(P::ViewWorkspace), get(settings)),
        RouteDef::new(
            M::POST,
            "/w/{ws}/settings",
            Workspace(P::ManageWorkspace),
            post(settings_post),
        ),
        RouteDef::new(M::GET, "/w/{ws}/members", Workspace(P::ViewMembers), get(members)),
        RouteDef::new(
            M::POST,
            "/w/{ws}/members/{user}/role",
            Workspace(P::ManageMembers),
            post(member_role),
        ),
        RouteDef::new(
            M::POST,
            "/w/{ws}/members/{user}/remove",
            Workspace(P::ManageMembers),
            post(member_remove),
        ),
        RouteDef::new(M::POST, "/w/{ws}/invites", Workspace(P::InviteMembers), post(invite_create)),
        RouteDef::new(
            M::POST,
            "/w/{ws}/invites/{id}/revoke",
            Workspace(P::InviteMembers),
            post(invite_revoke),
        ),
        RouteDef::new(M::POST, "/w/{ws}/leave", Workspace(P::ViewWorkspace), post(leave)),
        RouteDef::new(M::GET, "/w/{ws}/audit", Workspace(P::ViewAudit), get(audit)),
    ]
}
