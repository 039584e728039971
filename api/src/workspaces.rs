//! Workspace operations shared by the JSON API and the web pages: create, members, roles,
//! invites and the audit log. The caller's membership was checked by the route guard; the
//! rules about *which* member may change whom are `domain::policy`'s.

use domain::ids::{DisplayName, Email, Slug, UserId};
use domain::policy;
use domain::secrets::{self, SecretKind};
use domain::store::{AuditCursor, AuditFilter, Role, now_ms};

use crate::auth::{Principal, RequestMeta};
use crate::routes::WorkspaceCtx;
use crate::{AppError, AppState};

pub fn summary(ws: &domain::store::Workspace, role: Role) -> sdk::WorkspaceSummary {
    sdk::WorkspaceSummary {
        id: ws.id.to_string(),
        slug: ws.slug.to_string(),
        name: ws.name.to_string(),
        personal: ws.personal,
        role: role.as_str().to_string(),
    }
}

fn parse_role(raw: &str) -> Result<Role, AppError> {
    Role::parse(raw)
        .map_err(|_| AppError::invalid("role", "role: must be owner, admin, member or viewer"))
}

/// Records one audit event by `principal` in workspace `ws`: the one way the workspace-scoped
/// services (members, templates, sessions) write theirs.
pub(crate) async fn audit(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ws: &domain::store::Workspace,
    action: &str,
    target: (&str, String),
    detail: serde_json::Value,
) -> Result<(), AppError> {
    let e = meta
        .audit(action)
        .actor(&principal.user.id)
        .workspace(&ws.id)
        .target(target.0, target.1)
        .detail(detail);
    state.store.append_audit(&e).await?;
    Ok(())
}

pub async fn create(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    req: &sdk::CreateWorkspace,
) -> Result<sdk::WorkspaceSummary, AppError> {
    let name = DisplayName::parse(&req.name)
        .map_err(|e| AppError::invalid("name", e.to_string().replace("display_name", "name")))?;
    let slug = Slug::parse(&req.slug)?;
    let ws = state.store.create_workspace(&principal.user.id, &name, &slug, now_ms()).await?;
    audit(
        state,
        meta,
        principal,
        &ws,
        "workspace.create",
        ("workspace", ws.id.to_string()),
        serde_json::json!({ "slug": ws.slug.to_string() }),
    )
    .await?;
    Ok(summary(&ws, Role::Owner))
}

pub async fn members(
    state: &AppState,
    ctx: &WorkspaceCtx,
) -> Result<Vec<sdk::MemberInfo>, AppError> {
    Ok(state
        .store
        .members(&ctx.workspace.id)
        .await?
        .iter()
        .map(|m| sdk::MemberInfo {
            user: crate::identity::user_info(&m.user),
            role: m.role.as_str().to_string(),
            joined_at: m.joined_at,
        })
        .collect())
}

async fn member_role(
    state: &AppState,
    ctx: &WorkspaceCtx,
    user: &UserId,
) -> Result<Role, AppError> {
    state.store.membership(&ctx.workspace.id, user).await?.ok_or(AppError::NotFound)
}

pub async fn set_role(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    user: &str,
    role: &str,
) -> Result<(), AppError> {
    let user = UserId::parse(user).map_err(|_| AppError::NotFound)?;
    let new_role = parse_role(role)?;
    let current = member_role(state, ctx, &user).await?;
    if !policy::may_assign(ctx.role, current, new_role) {
        return Err(AppError::Forbidden("your role cannot give or take this role"));
    }
    state.store.set_member_role(&ctx.workspace.id, &user, new_role).await?;
    audit(
        state,
        meta,
        principal,
        &ctx.workspace,
        "member.role_change",
        ("user", user.to_string()),
        serde_json::json!({ "from": current.as_str(), "to": new_role.as_str() }),
    )
    .await
}

pub async fn remove(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    user: &str,
) -> Result<(), AppError> {
    let user = UserId::parse(user).map_err(|_| AppError::NotFound)?;
    let current = member_role(state, ctx, &user).await?;
    if !policy::may_remove(ctx.role, current) {
        return Err(AppError::Forbidden("your role cannot remove this member"));
    }
    state.store.remove_member(&ctx.workspace.id, &user).await?;
    audit(
        state,
        meta,
        principal,
        &ctx.workspace,
        "member.remove",
        ("user", user.to_string()),
        serde_json::json!({ "role": current.as_str() }),
    )
    .await
}

pub async fn leave(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
) -> Result<(), AppError> {
    if ctx.workspace.personal {
        return Err(AppError::Conflict("you cannot leave your personal workspace".into()));
    }
    state.store.remove_member(&ctx.workspace.id, &principal.user.id).await?;
    audit(
        state,
        meta,
        principal,
        &ctx.workspace,
        "member.leave",
        ("user", principal.user.id.to_string()),
        serde_json::json!({ "role": ctx.role.as_str() }),
    )
    .await
}

fn invite_info(i: &domain::store::Invite) -> sdk::InviteInfo {
    sdk::InviteInfo {
        id: i.id.to_string(),
        email: i.email.to_string(),
        role: i.role.as_str().to_string(),
        created_at: i.created_at,
        expires_at: i.expires_at,
    }
}

pub async fn invites(
    state: &AppState,
    ctx: &WorkspaceCtx,
) -> Result<Vec<sdk::InviteInfo>, AppError> {
    Ok(state
        .store
        .list_invites(&ctx.workspace.id, now_ms())
        .await?
        .iter()
        .map(invite_info)
        .collect())
}

pub async fn invite(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    req: &sdk::CreateInvite,
) -> Result<sdk::CreatedInvite, AppError> {
    let email = Email::parse(&req.email)?;
    let role = parse_role(&req.role)?;
    if role == Role::Owner {
        return Err(AppError::invalid("role", "role: invites grant admin, member or viewer"));
    }
    if !policy::may_assign(ctx.role, Role::Viewer, role) {
        return Err(AppError::Forbidden("your role cannot invite with this role"));
    }
    let days = req.expires_in_days.unwrap_or(7);
    if !(1..=30).contains(&days) {
        return Err(AppError::invalid(
            "expires_in_days",
            "expires_in_days: must be between 1 and 30",
        ));
    }
    let (token, hash) = secrets::generate(SecretKind::Invite);
    let now = now_ms();
    let inv = state
        .store
        .create_invite(
            &ctx.workspace.id,
            &email,
            role,
            &hash,
            Some(&principal.user.id),
            now,
            now + i64::from(days) * 86_400_000,
        )
        .await?;
    audit(state, meta, principal, &ctx.workspace, "invite.create", ("invite", inv.id.to_string()), serde_json::json!({ "email": email.to_string(), "role": role.as_str(), "expires_in_days": days })).await?;
    let link = format!("{}/invite/{token}", state.config.public_url.as_str().trim_end_matches('/'));
    Ok(sdk::CreatedInvite { invite: invite_info(&inv), link })
}

pub async fn invite_revoke(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<(), AppError> {
    let id = domain::ids::InviteId::parse(id).map_err(|_| AppError::NotFound)?;
    state.store.revoke_invite(&ctx.workspace.id, &id, now_ms()).await?;
    audit(
        state,
        meta,
        principal,
        &ctx.workspace,
        "invite.revoke",
        ("invite", id.to_string()),
        serde_json::json!({}),
    )
    .await
}

pub async fn accept(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    token: &str,
) -> Result<sdk::WorkspaceSummary, AppError> {
    let (ws, role) = state
        .store
        .accept_invite(&secrets::hash(token.trim()), &principal.user.id, now_ms())
        .await?;
    audit(
        state,
        meta,
        principal,
        &ws,
        "invite.accept",
        ("user", principal.user.id.to_string()),
        serde_json::json!({ "role": role.as_str() }),
    )
    .await?;
    Ok(summary(&ws, role))
}

pub async fn audit_page(
    state: &AppState,
    ctx: &WorkspaceCtx,
    action: Option<&str>,
    actor: Option<&str>,
    before: Option<&str>,
    limit: Option<u32>,
) -> Result<sdk::AuditPage, AppError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid("limit", "limit: must be between 1 and 200"));
    }
    let actor = match actor.filter(|a| !a.is_empty()) {
        Some(a) => Some(
            UserId::parse(a).map_err(|_| AppError::invalid("actor", "actor: must be a user id"))?,
        ),
        None => None,
    };
    let cursor = match before.filter(|b| !b.is_empty()) {
        Some(b) => Some(parse_cursor(b)?),
        None => None,
    };
    let filter = AuditFilter {
        action: action.filter(|a| !a.is_empty()).map(str::to_string),
        actor,
        since: None,
        until: None,
    };
    let entries =
        state.store.list_audit_filtered(&ctx.workspace.id, &filter, limit, cursor.as_ref()).await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| format!("{}_{}", e.at, e.id)))
        .flatten();
    Ok(sdk::AuditPage {
        events: entries
            .into_iter()
            .map(|e| sdk::AuditEvent {
                id: e.id.to_string(),
                at: e.at,
                actor: e.actor.map(|a| a.to_string()),
                action: e.action,
                target_kind: e.target_kind,
                target_id: e.target_id,
                ip: e.ip,
                user_agent: e.user_agent,
                detail: e.detail,
            })
            .collect(),
        next,
    })
}

fn parse_cursor(raw: &str) -> Result<AuditCursor, AppError> {
    let bad =
        || AppError::invalid("before", "before: must be a cursor from a previous page's `next`");
    let (at, id) = raw.split_once('_').ok_or_else(bad)?;
    Ok(AuditCursor {
        at: at.parse().map_err(|_| bad())?,
        id: domain::ids::AuditId::parse(id).map_err(|_| bad())?,
    })
}

/// Start of the usage period shown: the first day of the current month (UTC).
pub fn usage_period_start(now_ms: i64) -> i64 {
    let secs = now_ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    // Civil-from-days (H. Hinnant), to find the first of this month without a date library.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5 + 1;
    (days - (day_of_month - 1)) * 86_400_000
}

pub async fn sessions(
    state: &AppState,
    ctx: &WorkspaceCtx,
    include_ended: bool,
) -> Result<Vec<sdk::SessionSummary>, AppError> {
    let filter = domain::store::SessionFilter { include_ended, owner: None };
    Ok(state
        .store
        .sessions_in_workspace(&ctx.workspace.id, filter)
        .await?
        .into_iter()
        .map(|s| sdk::SessionSummary {
            id: s.id.to_string(),
            name: s.name,
            state: s.state,
            template: s.template_name,
            owner: sdk::UserRef { id: s.owner_id.to_string(), display_name: s.owner_name },
            created_at: s.created_at,
            updated_at: s.updated_at,
            last_active_at: s.last_active_at,
        })
        .collect())
}

pub async fn templates(
    state: &AppState,
    ctx: &WorkspaceCtx,
) -> Result<Vec<sdk::TemplateSummary>, AppError> {
    Ok(state
        .store
        .templates_in_workspace(&ctx.workspace.id)
        .await?
        .into_iter()
        .map(|t| sdk::TemplateSummary {
            id: t.id.to_string(),
            name: t.name,
            description: t.description,
            active_version: t.active_version,
            versions: t.versions,
            updated_at: t.updated_at,
            archived: t.archived,
        })
        .collect())
}

pub async fn usage(state: &AppState, ctx: &WorkspaceCtx) -> Result<sdk::UsageSummary, AppError> {
    let since = usage_period_start(now_ms());
    let u = state.store.usage_summary(&ctx.workspace.id, since).await?;
    Ok(sdk::UsageSummary {
        since,
        runtime_minutes: u.runtime_minutes,
        build_minutes: u.build_minutes,
        storage_bytes: u.storage_bytes,
        active_sessions: u.active_sessions,
    })
}

pub async fn dashboard(state: &AppState, ctx: &WorkspaceCtx) -> Result<sdk::Dashboard, AppError> {
    let recent_activity = if policy::allows(ctx.role, domain::policy::Permission::ViewAudit) {
        Some(audit_page(state, ctx, None, None, None, Some(10)).await?.events)
    } else {
        None
    };
    Ok(sdk::Dashboard {
        workspace: summary(&ctx.workspace, ctx.role),
        active_sessions: sessions(state, ctx, false).await?,
        recent_activity,
        usage: usage(state, ctx).await?,
    })
}

pub async fn rename(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<sdk::WorkspaceSummary, AppError> {
    let name = DisplayName::parse(name)
        .map_err(|e| AppError::invalid("name", e.to_string().replace("display_name", "name")))?;
    let ws = state.store.rename_workspace(&ctx.workspace.id, &name, now_ms()).await?;
    audit(
        state,
        meta,
        principal,
        &ws,
        "workspace.rename",
        ("workspace", ws.id.to_string()),
        serde_json::json!({ "from": ctx.workspace.name.to_string(), "to": ws.name.to_string() }),
    )
    .await?;
    Ok(summary(&ws, ctx.role))
}

#[cfg(test)]
mod tests {
    use super::usage_period_start;

    #[test]
    fn the_usage_period_starts_on_the_first_of_the_month_utc() {
        // 2026-11-28T11:00:00Z -> 2026-11-01T00:00:00Z
        assert_eq!(usage_period_start(1_795_863_600_000), 1_793_491_200_000);
        // 2024-02-29T23:59:59Z -> 2024-02-01
        assert_eq!(usage_period_start(1_709_251_199_000), 1_706_745_600_000);
        // Exactly the first of a month stays.
        assert_eq!(usage_period_start(1_706_745_600_000), 1_706_745_600_000);
    }
}
