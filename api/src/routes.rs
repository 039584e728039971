//! The one place where every route is declared together with who may call it. The router is
//! built from this table and the authorization test walks it, so a route cannot exist without
//! a policy.

use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::MethodRouter;

use domain::ids::Slug;
use domain::policy::{self, Permission};
use domain::store::{Role, Workspace};

use crate::auth::{self, Principal};
use crate::{AppError, AppState};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, sign-in pages, ceremonies).
    Public,
    /// Any signed-in user, for their own account.
    User,
    /// A member of the workspace named by `{ws}` in the path whose role allows the permission.
    Workspace(Permission),
}

/// JSON routes answer 401/404 as JSON; page routes redirect to sign-in and render pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Api,
    Page,
}

pub struct RouteDef {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub kind: Kind,
    /// Routes a session that signed in with a recovery code may use before adding a passkey.
    pub before_passkey: bool,
    pub handler: MethodRouter<AppState>,
}

impl RouteDef {
    pub fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
    ) -> Self {
        let kind = if path.starts_with("/api/") { Kind::Api } else { Kind::Page };
        Self { method, path, access, kind, before_passkey: false, handler }
    }

    pub fn before_passkey(mut self) -> Self {
        self.before_passkey = true;
        self
    }
}

/// The workspace a request is about, and the caller's role in it (set by `guard`).
#[derive(Debug, Clone)]
pub struct WorkspaceCtx {
    pub workspace: Workspace,
    pub role: Role,
}

#[derive(Clone)]
struct Guard {
    access: Access,
    kind: Kind,
    before_passkey: bool,
}

/// Mounts every route of `defs` behind its guard.
pub fn mount(state: &AppState, defs: Vec<RouteDef>) -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for def in defs {
        let guard =
            Guard { access: def.access, kind: def.kind, before_passkey: def.before_passkey };
        let layered = def
            .handler
            .route_layer(axum::middleware::from_fn_with_state((state.clone(), guard), guard_fn));
        router = router.route(def.path, layered);
    }
    router
}

fn deny(kind: Kind, err: AppError, uri: &axum::http::Uri) -> Response {
    match (kind, &err) {
        (Kind::Page, AppError::Unauthenticated(_)) => {
            let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", target)
                .finish();
            Redirect::to(&format!("/signin?{q}")).into_response()
        }
        (Kind::Page, AppError::NotFound) => crate::pages::not_found_page(),
        _ => err.into_response(),
    }
}

async fn guard_fn(
    State((state, guard)): State<(AppState, Guard)>,
    mut req: Request,
    next: Next,
) -> Response {
    let uri = req.uri().clone();
    let principal = match auth::authenticate(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => return deny(guard.kind, e, &uri),
    };
    if let Some(p) = &principal {
        req.extensions_mut().insert(p.clone());
    }
    if guard.access == Access::Public {
        return next.run(req).await;
    }
    let Some(principal) = principal else {
        return deny(
            guard.kind,
            AppError::Unauthenticated("sign in first (passkey or API token)"),
            &uri,
        );
    };
    if principal.must_add_passkey() && !guard.before_passkey {
        return match guard.kind {
            Kind::Page => Redirect::to("/account#passkeys").into_response(),
            Kind::Api => {
                AppError::Forbidden("add a passkey first: you signed in with a recovery code")
                    .into_response()
            }
        };
    }
    if let Access::Workspace(permission) = guard.access {
        let ws = match workspace_for(&state, &principal, &mut req).await {
            Ok(ws) => ws,
            Err(e) => return deny(guard.kind, e, &uri),
        };
        if !policy::allows(ws.role, permission) {
            return deny(guard.kind, AppError::Forbidden(refusal(permission)), &uri);
        }
        req.extensions_mut().insert(ws);
    }
    next.run(req).await
}

/// Why the guard refuses a role `permission`: the same words for every route, and who may for
/// the permissions whose holders are not obvious.
fn refusal(permission: Permission) -> &'static str {
    match permission {
        Permission::PromoteTemplates => {
            "your role in this workspace does not allow this: only owners and admins may \
             promote, demote, roll back or approve template versions"
        }
        _ => "your role in this workspace does not allow this",
    }
}

/// Resolves `{ws}` (a slug) and the caller's membership; a workspace the caller is not a member
/// of answers exactly like one that does not exist.
async fn workspace_for(
    state: &AppState,
    principal: &Principal,
    req: &mut Request,
) -> Result<WorkspaceCtx, AppError> {
    use axum::RequestPartsExt;
    let (mut parts, body) = std::mem::take(req).into_parts();
    let params = parts
        .extract::<Path<std::collections::HashMap<String, String>>>()
        .await
        .map_err(|_| AppError::NotFound);
    *req = Request::from_parts(parts, body);
    let params = params?;
    let slug = params.get("ws").ok_or(AppError::NotFound)?;
    let slug = Slug::parse(slug).map_err(|_| AppError::NotFound)?;
    let workspace = state.store.workspace_by_slug(&slug).await?.ok_or(AppError::NotFound)?;
    let role = state
        .store
        .membership(&workspace.id, &principal.user.id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(WorkspaceCtx { workspace, role })
}
