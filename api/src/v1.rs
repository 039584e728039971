//! The JSON API under `/api/v1`: thin handlers over `identity` and `workspaces`, and the route
//! table entries that give each one its access rule.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Extension, Json};
use domain::policy::Permission;
use serde::Deserialize;

use crate::auth::{Principal, RequestMeta};
use crate::routes::{Access, RouteDef, WorkspaceCtx};
use crate::{AppError, AppState, identity, promotions, sessions, templates, workspaces};

type ApiResult<T> = Result<Json<T>, AppError>;

/// Request metadata, extracted from any request.
pub struct Meta(pub RequestMeta);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Meta {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Meta(RequestMeta::from_parts(&parts.headers, &parts.extensions)))
    }
}

/// A JSON body whose rejection is our error shape, naming what was wrong.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = AppError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(AppError::invalid("body", format!("body: {}", e.body_text()))),
        }
    }
}

fn with_cookie<T: serde::Serialize>(cookie: axum::http::HeaderValue, body: T) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie);
    (headers, Json(body)).into_response()
}

async fn signup_start(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::SignupStart>,
) -> ApiResult<sdk::CeremonyChallenge> {
    Ok(Json(identity::signup_start(&s, &m, &b).await?))
}

async fn signup_finish(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::CeremonyFinish>,
) -> Result<Response, AppError> {
    let (done, cookie) = identity::signup_finish(&s, &m, &b).await?;
    Ok(with_cookie(cookie, done))
}

async fn signin_start(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::SigninStart>,
) -> ApiResult<sdk::CeremonyChallenge> {
    Ok(Json(identity::signin_start(&s, &m, &b).await?))
}

async fn signin_finish(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::CeremonyFinish>,
) -> Result<Response, AppError> {
    let (user, cookie) = identity::signin_finish(&s, &m, &b).await?;
    Ok(with_cookie(cookie, user))
}

async fn recover(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::RecoverRequest>,
) -> Result<Response, AppError> {
    let (user, cookie) = identity::recover(&s, &m, &b).await?;
    Ok(with_cookie(cookie, user))
}

async fn signout(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
) -> Result<Response, AppError> {
    identity::signout(&s, &m, &p).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, crate::auth::clear_session_cookie(&s));
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

async fn me(State(s): State<AppState>, Extension(p): Extension<Principal>) -> ApiResult<sdk::Me> {
    Ok(Json(identity::me(&s, &p).await?))
}

async fn passkeys(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Vec<sdk::PasskeyInfo>> {
    Ok(Json(
        s.store.passkeys_for_user(&p.user.id).await?.iter().map(identity::passkey_info).collect(),
    ))
}

async fn passkey_start(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Body(b): Body<sdk::PasskeyName>,
) -> ApiResult<sdk::CeremonyChallenge> {
    Ok(Json(identity::passkey_add_start(&s, &p, &b).await?))
}

async fn passkey_finish(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Body(b): Body<sdk::CeremonyFinish>,
) -> ApiResult<sdk::PasskeyInfo> {
    Ok(Json(identity::passkey_add_finish(&s, &m, &p, &b).await?))
}

async fn passkey_rename(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Body(b): Body<sdk::PasskeyName>,
) -> Result<StatusCode, AppError> {
    identity::passkey_rename(&s, &m, &p, &id, &b.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn passkey_delete(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    identity::passkey_delete(&s, &m, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn sessions(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Vec<sdk::BrowserSessionInfo>> {
    Ok(Json(identity::sessions(&s, &p).await?))
}

async fn session_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    identity::session_revoke(&s, &m, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tokens(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Vec<sdk::TokenInfo>> {
    Ok(Json(identity::tokens(&s, &p).await?))
}

async fn token_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Body(b): Body<sdk::CreateToken>,
) -> Result<(StatusCode, Json<sdk::CreatedToken>), AppError> {
    Ok((StatusCode::CREATED, Json(identity::token_create(&s, &m, &p, &b).await?)))
}

async fn token_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    identity::token_revoke(&s, &m, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn recovery_codes(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
) -> ApiResult<sdk::RecoveryCodes> {
    Ok(Json(identity::recovery_regenerate(&s, &m, &p).await?))
}

async fn workspaces_list(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Vec<sdk::WorkspaceSummary>> {
    Ok(Json(identity::me(&s, &p).await?.workspaces))
}

async fn workspace_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Body(b): Body<sdk::CreateWorkspace>,
) -> Result<(StatusCode, Json<sdk::WorkspaceSummary>), AppError> {
    Ok((StatusCode::CREATED, Json(workspaces::create(&s, &m, &p, &b).await?)))
}

async fn workspace_get(Extension(c): Extension<WorkspaceCtx>) -> Json<sdk::WorkspaceSummary> {
    Json(workspaces::summary(&c.workspace, c.role))
}

async fn members(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
) -> ApiResult<Vec<sdk::MemberInfo>> {
    Ok(Json(workspaces::members(&s, &c).await?))
}

async fn member_role(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, user)): Path<(String, String)>,
    Body(b): Body<sdk::SetRole>,
) -> Result<StatusCode, AppError> {
    workspaces::set_role(&s, &m, &p, &c, &user, &b.role).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn member_remove(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, user)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    workspaces::remove(&s, &m, &p, &c, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn leave(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
) -> Result<StatusCode, AppError> {
    workspaces::leave(&s, &m, &p, &c).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invites(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
) -> ApiResult<Vec<sdk::InviteInfo>> {
    Ok(Json(workspaces::invites(&s, &c).await?))
}

async fn invite_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Body(b): Body<sdk::CreateInvite>,
) -> Result<(StatusCode, Json<sdk::CreatedInvite>), AppError> {
    Ok((StatusCode::CREATED, Json(workspaces::invite(&s, &m, &p, &c, &b).await?)))
}

async fn invite_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    workspaces::invite_revoke(&s, &m, &p, &c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invite_accept(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Body(b): Body<sdk::AcceptInvite>,
) -> ApiResult<sdk::WorkspaceSummary> {
    Ok(Json(workspaces::accept(&s, &m, &p, &b.token).await?))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub before: Option<String>,
    pub limit: Option<u32>,
}

async fn audit(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<sdk::AuditPage> {
    Ok(Json(
        workspaces::audit_page(
            &s,
            &c,
            q.action.as_deref(),
            q.actor.as_deref(),
            q.before.as_deref(),
            q.limit,
        )
        .await?,
    ))
}

#[derive(Deserialize)]
pub struct SessionsQuery {
    /// Also list stopped and failed sessions.
    #[serde(default)]
    pub ended: bool,
}

async fn ws_sessions(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Query(q): Query<SessionsQuery>,
) -> ApiResult<Vec<sdk::SessionSummary>> {
    Ok(Json(workspaces::sessions(&s, &c, q.ended).await?))
}

async fn ws_templates(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
) -> ApiResult<Vec<sdk::TemplateSummary>> {
    Ok(Json(workspaces::templates(&s, &c).await?))
}

async fn ws_usage(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
) -> ApiResult<sdk::UsageSummary> {
    Ok(Json(workspaces::usage(&s, &c).await?))
}

async fn ws_dashboard(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
) -> ApiResult<sdk::Dashboard> {
    Ok(Json(workspaces::dashboard(&s, &c).await?))
}

async fn ws_rename(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Body(b): Body<sdk::UpdateWorkspace>,
) -> ApiResult<sdk::WorkspaceSummary> {
    Ok(Json(workspaces::rename(&s, &m, &p, &c, &b.name).await?))
}

async fn device_code(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::DeviceCodeRequest>,
) -> ApiResult<sdk::DeviceCodeResponse> {
    Ok(Json(crate::device::code(&s, &m, &b).await?))
}

async fn device_token(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::DeviceTokenRequest>,
) -> Result<Response, AppError> {
    crate::device::token(&s, &m, &b).await
}

async fn token_refresh(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::RefreshRequest>,
) -> ApiResult<sdk::TokenPair> {
    Ok(Json(crate::device::refresh(&s, &m, &b).await?))
}

async fn token_logout(
    State(s): State<AppState>,
    Meta(m): Meta,
    Body(b): Body<sdk::RefreshRequest>,
) -> Result<StatusCode, AppError> {
    crate::device::revoke(&s, &m, &b).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cli_sessions(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Vec<sdk::CliSessionInfo>> {
    Ok(Json(crate::device::cli_sessions(&s, &p).await?))
}

async fn cli_session_revoke(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    crate::device::cli_session_revoke(&s, &m, &p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tpl_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Body(b): Body<sdk::CreateTemplate>,
) -> Result<(StatusCode, Json<sdk::TemplateDetail>), AppError> {
    Ok((StatusCode::CREATED, Json(templates::create(&s, &m, &p, &c, &b).await?)))
}

async fn tpl_detail(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<sdk::TemplateDetail> {
    Ok(Json(templates::detail(&s, &c, &name).await?))
}

async fn tpl_archive(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<sdk::TemplateDetail> {
    Ok(Json(templates::archive(&s, &m, &p, &c, &name).await?))
}

async fn ws_catalog(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
) -> ApiResult<sdk::CatalogView> {
    Ok(Json(promotions::catalog(&s, &c).await?))
}

/// An optional JSON body: none at all (or `{}`) is the default request.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> axum::extract::FromRequest<S>
    for OptionalBody<T>
{
    type Rejection = AppError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        // Through `Bytes`, so the body size limit applies.
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AppError::invalid("body", format!("body: {}", e.body_text())))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|e| AppError::invalid("body", format!("body: {e}")))
    }
}

async fn tpl_promote(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
    OptionalBody(b): OptionalBody<sdk::PromoteRequest>,
) -> Result<(StatusCode, Json<sdk::Promotion>), AppError> {
    Ok((StatusCode::ACCEPTED, Json(promotions::promote(&s, &m, &p, &c, &name, &b).await?)))
}

async fn tpl_demote(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<sdk::Promotion>), AppError> {
    Ok((StatusCode::ACCEPTED, Json(promotions::demote(&s, &m, &p, &c, &name).await?)))
}

async fn tpl_rollback(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
    Body(b): Body<sdk::RollbackRequest>,
) -> Result<(StatusCode, Json<sdk::Promotion>), AppError> {
    Ok((StatusCode::ACCEPTED, Json(promotions::rollback(&s, &m, &p, &c, &name, &b).await?)))
}

async fn tpl_promotions(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Vec<sdk::Promotion>> {
    Ok(Json(promotions::list(&s, &c, &name).await?))
}

async fn promotion_get(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<sdk::Promotion> {
    Ok(Json(promotions::get(&s, &c, &id).await?))
}

async fn promotion_approve(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<sdk::Promotion> {
    Ok(Json(promotions::approve(&s, &m, &p, &c, &id).await?))
}

async fn promotion_policy(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
) -> ApiResult<sdk::PromotionPolicy> {
    Ok(Json(promotions::policy(&s, &c).await?))
}

async fn promotion_policy_set(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Body(b): Body<sdk::PromotionPolicy>,
) -> ApiResult<sdk::PromotionPolicy> {
    Ok(Json(promotions::set_policy(&s, &m, &p, &c, &b).await?))
}

async fn tpl_versions(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Vec<sdk::TemplateVersion>> {
    Ok(Json(templates::versions(&s, &c, &name).await?))
}

async fn tpl_version(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name, version)): Path<(String, String, String)>,
) -> ApiResult<sdk::TemplateVersion> {
    Ok(Json(templates::version(&s, &c, &name, &version).await?))
}

async fn tpl_version_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
    Body(b): Body<sdk::CreateVersion>,
) -> Result<(StatusCode, Json<sdk::UploadTicket>), AppError> {
    Ok((StatusCode::CREATED, Json(templates::create_version(&s, &m, &p, &c, &name, &b).await?)))
}

async fn tpl_version_confirm(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name, version)): Path<(String, String, String)>,
) -> ApiResult<sdk::ConfirmedVersion> {
    Ok(Json(templates::confirm(&s, &m, &p, &c, &name, &version).await?))
}

async fn tpl_builds(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Vec<sdk::TemplateBuild>> {
    Ok(Json(templates::builds(&s, &c, &name).await?))
}

async fn build_get(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<sdk::TemplateBuild> {
    Ok(Json(templates::build(&s, &c, &id).await?))
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    pub from: u64,
}

async fn build_log(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<sdk::BuildLog> {
    Ok(Json(templates::build_log(&s, &c, &id, q.from).await?))
}

async fn build_retry(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<sdk::TemplateBuild>), AppError> {
    Ok((StatusCode::CREATED, Json(templates::retry(&s, &m, &p, &c, &id).await?)))
}

async fn build_cancel(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<sdk::TemplateBuild>), AppError> {
    Ok((StatusCode::ACCEPTED, Json(templates::cancel(&s, &m, &p, &c, &id).await?)))
}

#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    /// `running` (create) or `true` (operations): answer once the session got there.
    #[serde(default)]
    pub wait: Option<String>,
}

impl WaitQuery {
    fn wait(&self) -> bool {
        matches!(self.wait.as_deref(), Some("running" | "true" | "1"))
    }
}

async fn session_create(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    Body(mut b): Body<sdk::CreateSession>,
) -> Result<(StatusCode, Json<sdk::SessionDetail>), AppError> {
    if b.idempotency_key.is_none() {
        b.idempotency_key =
            headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    }
    Ok((StatusCode::CREATED, Json(sessions::create(&s, &m, &p, &c, &b, q.wait()).await?)))
}

async fn session_get(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<sdk::SessionDetail> {
    Ok(Json(sessions::get(&s, &p, &c, &id).await?))
}

async fn session_op(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id, op)): Path<(String, String, String)>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<sdk::SessionDetail> {
    if !sdk::SESSION_OPS.contains(&op.as_str()) {
        return Err(AppError::NotFound);
    }
    Ok(Json(sessions::op(&s, &m, &p, &c, &id, &op, q.wait()).await?))
}

async fn session_delete(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<sdk::SessionDetail> {
    Ok(Json(sessions::delete(&s, &m, &p, &c, &id, q.wait()).await?))
}

#[derive(Debug, Deserialize)]
pub struct AfterQuery {
    #[serde(default)]
    pub after: u64,
}

async fn session_events(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<AfterQuery>,
) -> ApiResult<Vec<sdk::SessionEvent>> {
    Ok(Json(sessions::events(&s, &p, &c, &id, q.after).await?))
}

async fn session_why(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<sdk::SessionWhy> {
    Ok(Json(sessions::why(&s, &p, &c, &id).await?))
}

async fn snapshot_list(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Vec<sdk::Snapshot>> {
    Ok(Json(crate::snapshots::list(&s, &c, &id).await?))
}

async fn snapshot_save(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id)): Path<(String, String)>,
    Query(q): Query<WaitQuery>,
) -> Result<(StatusCode, Json<sdk::Snapshot>), AppError> {
    let snap = crate::snapshots::save(&s, &m, &p, &c, &id, q.wait()).await?;
    Ok((StatusCode::CREATED, Json(snap)))
}

async fn snapshot_get(
    State(s): State<AppState>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id, snap)): Path<(String, String, String)>,
) -> ApiResult<sdk::Snapshot> {
    Ok(Json(crate::snapshots::get(&s, &c, &id, &snap).await?))
}

async fn snapshot_restore(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id, snap)): Path<(String, String, String)>,
) -> ApiResult<sdk::RestoreOutcome> {
    Ok(Json(crate::snapshots::restore(&s, &m, &p, &c, &id, &snap).await?))
}

async fn snapshot_delete(
    State(s): State<AppState>,
    Meta(m): Meta,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<WorkspaceCtx>,
    Path((_, id, snap)): Path<(String, String, String)>,
) -> ApiResult<sdk::Snapshot> {
    Ok(Json(crate::snapshots::delete(&s, &m, &p, &c, &id, &snap).await?))
}

/// Every `/api/v1` route with its access rule.
pub fn routes() -> Vec<RouteDef> {
    use Access::{Public, User, Workspace};
    use Method as M;
    use Permission as P;
    vec![
        RouteDef::new(M::POST, "/api/v1/auth/signup/start", Public, post(signup_start)),
        RouteDef::new(M::POST, "/api/v1/auth/signup/finish", Public, post(signup_finish)),
        RouteDef::new(M::POST, "/api/v1/auth/signin/start", Public, post(signin_start)),
        RouteDef::new(M::POST, "/api/v1/auth/signin/finish", Public, post(signin_finish)),
        RouteDef::new(M::POST, "/api/v1/auth/recover", Public, post(recover)),
        RouteDef::new(M::POST, "/api/v1/auth/signout", User, post(signout)).before_passkey(),
        RouteDef::new(M::POST, "/api/v1/device/code", Public, post(device_code)),
        RouteDef::new(M::POST, "/api/v1/device/token", Public, post(device_token)),
        RouteDef::new(M::POST, "/api/v1/token/refresh", Public, post(token_refresh)),
        RouteDef::new(M::POST, "/api/v1/token/revoke", Public, post(token_logout)),
        RouteDef::new(M::GET, "/api/v1/me/cli-sessions", User, get(cli_sessions)),
        RouteDef::new(M::DELETE, "/api/v1/me/cli-sessions/{id}", User, delete(cli_session_revoke)),
        RouteDef::new(M::GET, "/api/v1/me", User, get(me)).before_passkey(),
        RouteDef::new(M::GET, "/api/v1/me/passkeys", User, get(passkeys)).before_passkey(),
        RouteDef::new(M::POST, "/api/v1/me/passkeys/start", User, post(passkey_start))
            .before_passkey(),
        RouteDef::new(M::POST, "/api/v1/me/passkeys/finish", User, post(passkey_finish))
            .before_passkey(),
        RouteDef::new(M::PATCH, "/api/v1/me/passkeys/{id}", User, patch(passkey_rename)),
        RouteDef::new(M::DELETE, "/api/v1/me/passkeys/{id}", User, delete(passkey_delete)),
        RouteDef::new(M::GET, "/api/v1/me/sessions", User, get(sessions)),
        RouteDef::new(M::DELETE, "/api/v1/me/sessions/{id}", User, delete(session_revoke)),
        RouteDef::new(M::GET, "/api/v1/me/tokens", User, get(tokens)),
        RouteDef::new(M::POST, "/api/v1/me/tokens", User, post(token_create)),
        RouteDef::new(M::DELETE, "/api/v1/me/tokens/{id}", User, delete(token_revoke)),
        RouteDef::new(M::POST, "/api/v1/me/recovery-codes", User, post(recovery_codes)),
        RouteDef::new(M::GET, "/api/v1/workspaces", User, get(workspaces_list)),
        RouteDef::new(M::POST, "/api/v1/workspaces", User, post(workspace_create)),
        RouteDef::new(M::POST, "/api/v1/invites/accept", User, post(invite_accept)),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}",
            Workspace(P::ViewWorkspace),
            get(workspace_get),
        ),
        RouteDef::new(
            M::PATCH,
            "/api/v1/workspaces/{ws}",
            Workspace(P::ManageWorkspace),
            patch(ws_rename),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/dashboard",
            Workspace(P::ViewWorkspace),
            get(ws_dashboard),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/sessions",
            Workspace(P::ViewWorkspace),
            get(ws_sessions),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/sessions",
            Workspace(P::UseSessions),
            post(session_create),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/sessions/{id}",
            Workspace(P::ViewWorkspace),
            get(session_get),
        ),
        RouteDef::new(
            M::DELETE,
            "/api/v1/workspaces/{ws}/sessions/{id}",
            Workspace(P::UseSessions),
            delete(session_delete),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/sessions/{id}/events",
            Workspace(P::ViewWorkspace),
            get(session_events),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/sessions/{id}/why",
            Workspace(P::ViewWorkspace),
            get(session_why),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/sessions/{id}/snapshots",
            Workspace(P::ViewWorkspace),
            get(snapshot_list),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/sessions/{id}/snapshots",
            Workspace(P::UseSessions),
            post(snapshot_save),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/sessions/{id}/snapshots/{snapshot}",
            Workspace(P::ViewWorkspace),
            get(snapshot_get),
        ),
        RouteDef::new(
            M::DELETE,
            "/api/v1/workspaces/{ws}/sessions/{id}/snapshots/{snapshot}",
            Workspace(P::UseSessions),
            delete(snapshot_delete),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/sessions/{id}/snapshots/{snapshot}/restore",
            Workspace(P::UseSessions),
            post(snapshot_restore),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/sessions/{id}/{op}",
            Workspace(P::UseSessions),
            post(session_op),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/templates",
            Workspace(P::ViewWorkspace),
            get(ws_templates),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/templates",
            Workspace(P::ManageTemplates),
            post(tpl_create),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/templates/{name}",
            Workspace(P::ViewWorkspace),
            get(tpl_detail),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/templates/{name}/archive",
            Workspace(P::ManageTemplates),
            post(tpl_archive),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/templates/{name}/promote",
            Workspace(P::PromoteTemplates),
            post(tpl_promote),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/templates/{name}/demote",
            Workspace(P::PromoteTemplates),
            post(tpl_demote),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/templates/{name}/rollback",
            Workspace(P::PromoteTemplates),
            post(tpl_rollback),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/templates/{name}/promotions",
            Workspace(P::ViewWorkspace),
            get(tpl_promotions),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/catalog",
            Workspace(P::ViewWorkspace),
            get(ws_catalog),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/promotions/{id}",
            Workspace(P::ViewWorkspace),
            get(promotion_get),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/promotions/{id}/approve",
            Workspace(P::PromoteTemplates),
            post(promotion_approve),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/promotion-policy",
            Workspace(P::ViewWorkspace),
            get(promotion_policy),
        ),
        RouteDef::new(
            M::PUT,
            "/api/v1/workspaces/{ws}/promotion-policy",
            Workspace(P::ManageWorkspace),
            put(promotion_policy_set),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/templates/{name}/versions",
            Workspace(P::ViewWorkspace),
            get(tpl_versions),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/templates/{name}/versions",
            Workspace(P::ManageTemplates),
            post(tpl_version_create),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/templates/{name}/versions/{version}",
            Workspace(P::ViewWorkspace),
            get(tpl_version),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/templates/{name}/versions/{version}/confirm",
            Workspace(P::ManageTemplates),
            post(tpl_version_confirm),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/templates/{name}/builds",
            Workspace(P::ViewWorkspace),
            get(tpl_builds),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/builds/{id}",
            Workspace(P::ViewWorkspace),
            get(build_get),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/builds/{id}/log",
            Workspace(P::ViewWorkspace),
            get(build_log),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/builds/{id}/retry",
            Workspace(P::ManageTemplates),
            post(build_retry),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/builds/{id}/cancel",
            Workspace(P::ManageTemplates),
            post(build_cancel),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/usage",
            Workspace(P::ViewUsage),
            get(ws_usage),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/members",
            Workspace(P::ViewMembers),
            get(members),
        ),
        RouteDef::new(
            M::PATCH,
            "/api/v1/workspaces/{ws}/members/{user}",
            Workspace(P::ManageMembers),
            patch(member_role),
        ),
        RouteDef::new(
            M::DELETE,
            "/api/v1/workspaces/{ws}/members/{user}",
            Workspace(P::ManageMembers),
            delete(member_remove),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/leave",
            Workspace(P::ViewWorkspace),
            post(leave),
        ),
        RouteDef::new(
            M::GET,
            "/api/v1/workspaces/{ws}/invites",
            Workspace(P::InviteMembers),
            get(invites),
        ),
        RouteDef::new(
            M::POST,
            "/api/v1/workspaces/{ws}/invites",
            Workspace(P::InviteMembers),
            post(invite_create),
        ),
        RouteDef::new(
            M::DELETE,
            "/api/v1/workspaces/{ws}/invites/{id}",
            Workspace(P::InviteMembers),
            delete(invite_revoke),
        ),
        RouteDef::new(M::GET, "/api/v1/workspaces/{ws}/audit", Workspace(P::ViewAudit), get(audit)),
    ]
}
