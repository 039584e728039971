//! Template promotions and the runtime catalog (docs/catalog.md), for the JSON API and the web
//! pages alike: what new sessions of each template get, and the runs that change it — promote
//! (canary, approval when the workspace requires it, catalog, rollout), demote, rollback and
//! archive. Each run is a `TemplatePromotion` workflow with id `promote-<template id>`, so one
//! runs per template at a time; this module checks who may and what makes sense, records the
//! run's row, starts the workflow and answers from the row the workflow keeps up to date.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use domain::ids::{TemplateId, UserId};
use domain::store::{
    CatalogEntry, NewPromotion, PromotionRecord, PromotionUpdate, TemplateRecord, VersionRecord,
    now_ms,
};
use sdk::bundle::Manifest;
use temporalio_client::errors::{WorkflowInteractionError, WorkflowStartError};
use temporalio_client::{WorkflowGetResultOptions, WorkflowSignalOptions, WorkflowStartOptions};
use workflows::{Canary, PromotionInput, TemplatePromotion};

use crate::auth::{Principal, RequestMeta};
use crate::routes::WorkspaceCtx;
use crate::{AppError, AppState};

/// Most promotions a listing returns.
const LIST_LIMIT: u32 = 50;
/// How long archiving a template waits for its run to end.
const ARCHIVE_WAIT: Duration = Duration::from_secs(60);
/// How long an approval waits for the workflow to move on, so the answer shows it did.
const APPROVE_WAIT: Duration = Duration::from_secs(5);
/// Longest version string accepted in a request ("12", "v12").
const MAX_VERSION_CHARS: usize = 20;
/// A row that is still `running` this long after it was made, while its workflow is not, was
/// left behind (its workflow was terminated or never started) and no longer blocks new runs.
const STALE_AFTER_MS: i64 = 120_000;

/// The workflow id of every run of `template`: Temporal refuses a second one while one runs.
pub fn workflow_id(template: &TemplateId) -> String {
    format!("promote-{template}")
}

fn entry_view(e: &CatalogEntry) -> sdk::CatalogEntryView {
    sdk::CatalogEntryView {
        template: e.template_name.clone(),
        template_id: e.template_id.clone(),
        version: e.version.clone(),
        version_id: e.version_id.clone(),
        image_ref: e.image_ref.clone(),
        previous_version: e.previous_version.clone(),
        revision: e.revision,
        updated_at: e.updated_at,
        cpu_millis: e.cpu_millis,
        memory_mb: e.memory_mb,
        archived: e.archived,
    }
}

/// `GET …/catalog`: the latest catalog revision with this workspace's entries, by template name.
pub async fn catalog(state: &AppState, ctx: &WorkspaceCtx) -> Result<sdk::CatalogView, AppError> {
    let doc = state.store.catalog().await?;
    let ws = ctx.workspace.id.as_str();
    let mut entries: Vec<sdk::CatalogEntryView> =
        doc.entries.iter().filter(|e| e.workspace_id == ws).map(entry_view).collect();
    entries.sort_by(|a, b| {
        (a.template.as_str(), a.template_id.as_str())
            .cmp(&(b.template.as_str(), b.template_id.as_str()))
    });
    Ok(sdk::CatalogView { revision: doc.revision, generated_at: doc.generated_at, entries })
}

/// Display names of the users a view mentions, each looked up once.
#[derive(Default)]
struct Users(HashMap<String, String>);

impl Users {
    async fn user_ref(
        &mut self,
        state: &AppState,
        id: Option<&UserId>,
    ) -> Result<Option<sdk::UserRef>, AppError> {
        let Some(id) = id else { return Ok(None) };
        let key = id.to_string();
        if !self.0.contains_key(&key) {
            let name = state
                .store
                .user_by_id(id)
                .await?
                .map(|u| u.display_name.to_string())
                .unwrap_or_default();
            self.0.insert(key.clone(), name);
        }
        Ok(Some(sdk::UserRef { id: key.clone(), display_name: self.0[&key].clone() }))
    }
}

/// The rollout per runtime host: the workflow stores `[[node, state], …]` (`{}` before it).
fn nodes_of(progress: &serde_json::Value) -> Vec<sdk::PromotionNode> {
    let Some(pairs) = progress.as_array() else { return Vec::new() };
    pairs
        .iter()
        .filter_map(|pair| {
            let pair = pair.as_array()?;
            Some(sdk::PromotionNode {
                node: pair.first()?.as_str()?.to_string(),
                state: pair.get(1)?.as_str()?.to_string(),
            })
        })
        .collect()
}

async fn view(
    state: &AppState,
    template: &TemplateRecord,
    r: &PromotionRecord,
    users: &mut Users,
) -> Result<sdk::Promotion, AppError> {
    let image_ref = state.store.version_by_id(&r.version_id).await?.and_then(|v| v.image_ref);
    Ok(sdk::Promotion {
        id: r.id.clone(),
        template: template.name.clone(),
        template_id: r.template_id.to_string(),
        kind: r.kind.clone(),
        version: r.version.clone(),
        version_id: r.version_id.to_string(),
        image_ref,
        status: r.status.clone(),
        step: r.step.clone(),
        error: r.error.clone(),
        nodes: nodes_of(&r.progress),
        workflow_id: r.workflow_id.clone(),
        requested_by: users.user_ref(state, r.requested_by.as_ref()).await?,
        approved_by: users.user_ref(state, r.approved_by.as_ref()).await?,
        approved_at: r.approved_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
        finished_at: r.finished_at,
    })
}

async fn view_one(
    state: &AppState,
    template: &TemplateRecord,
    r: &PromotionRecord,
) -> Result<sdk::Promotion, AppError> {
    view(state, template, r, &mut Users::default()).await
}

/// This workspace's promotion `id`; anything else (another workspace's, or not an id at all)
/// is not found.
async fn promotion_in(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<(PromotionRecord, TemplateRecord), AppError> {
    if id.is_empty() || id.len() > 64 {
        return Err(AppError::NotFound);
    }
    let r = state.store.promotion(id).await?.ok_or(AppError::NotFound)?;
    if r.workspace_id != ctx.workspace.id {
        return Err(AppError::NotFound);
    }
    let t = state
        .store
        .template_by_id(&ctx.workspace.id, &r.template_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((r, t))
}

fn refuse_archived(t: &TemplateRecord) -> Result<(), AppError> {
    if t.archived_at.is_some() {
        return Err(AppError::Conflict(format!(
            "template {} is archived: its versions can no longer be promoted, demoted or rolled \
             back",
            t.name
        )));
    }
    Ok(())
}

/// A version named in a request ("3" or "v3"): 400 naming `version` when it is not one.
fn version_named<'a>(
    t: &TemplateRecord,
    versions: &'a [VersionRecord],
    raw: &str,
) -> Result<&'a VersionRecord, AppError> {
    let n = raw.trim();
    let n = n.strip_prefix('v').unwrap_or(n);
    if n.is_empty()
        || raw.chars().count() > MAX_VERSION_CHARS
        || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(AppError::invalid(
            "version",
            format!(
                "version: {raw:?} is not a version number; give one like \"3\" (at most \
                 {MAX_VERSION_CHARS} characters)"
            ),
        ));
    }
    let n = n.trim_start_matches('0');
    versions.iter().find(|v| v.version == n).ok_or_else(|| {
        let built: Vec<&str> =
            versions.iter().filter(|v| v.status == "built").map(|v| v.version.as_str()).collect();
        AppError::invalid(
            "version",
            format!(
                "version: {} has no version {raw}; its built versions are: {}",
                t.name,
                if built.is_empty() { "none yet".to_string() } else { built.join(", ") }
            ),
        )
    })
}

/// The version's image, if it is built; 409 naming its state otherwise.
fn built_image(t: &TemplateRecord, v: &VersionRecord) -> Result<String, AppError> {
    if v.status != "built" {
        return Err(AppError::Conflict(format!(
            "version {} of {} is {}: only a built version can become active",
            v.version, t.name, v.status
        )));
    }
    v.image_ref.clone().filter(|i| !i.is_empty()).ok_or_else(|| {
        AppError::Conflict(format!(
            "version {} of {} is built but has no image; build it again",
            v.version, t.name
        ))
    })
}

/// The template's catalog entry, if it has one.
async fn entry_of(state: &AppState, t: &TemplateRecord) -> Result<Option<CatalogEntry>, AppError> {
    let doc = state.store.catalog().await?;
    Ok(doc.entries.into_iter().find(|e| e.template_id == t.id.as_str()))
}

/// "promotion", "demotion", "rollback" or "archive".
fn noun(kind: &str) -> &str {
    match kind {
        "promote" => "promotion",
        "demote" => "demotion",
        other => other,
    }
}

fn number(v: &str) -> u64 {
    v.parse().unwrap_or(0)
}

/// 409 while a run of the template goes on, naming it and how to follow it. A row left behind
/// by a workflow that no longer runs is closed as failed instead.
async fn refuse_while_running(state: &AppState, t: &TemplateRecord) -> Result<(), AppError> {
    let recent = state.store.promotions_of_template(&t.id, 10).await?;
    for r in recent.iter().filter(|r| !sdk::promotion_is_final(&r.status)) {
        if now_ms() - r.updated_at > STALE_AFTER_MS && !workflow_running(state, &t.id).await? {
            let update = PromotionUpdate {
                status: Some("failed"),
                step: Some("failed"),
                error: Some(Some("its workflow is no longer running")),
                progress: None,
                at: now_ms(),
            };
            state.store.update_promotion(&r.id, &update).await?;
            continue;
        }
        let waiting = if r.status == "awaiting_approval" {
            ": an owner or admin other than the requester can approve it"
        } else {
            ""
        };
        let step = r
            .step
            .as_deref()
            .filter(|s| *s != r.status.replace('_', " "))
            .map(|s| format!(", step: {s}"))
            .unwrap_or_default();
        return Err(AppError::Conflict(format!(
            "{} {} of {} (version {}) is {}{step}{waiting}; one run per template at a time: \
             follow it with `flare template promotions {}` and try again once it has ended",
            noun(&r.kind),
            r.id,
            t.name,
            r.version,
            r.status.replace('_', " "),
            t.name
        )));
    }
    Ok(())
}

async fn workflow_running(state: &AppState, template: &TemplateId) -> Result<bool, AppError> {
    let client = temporal(state).await?;
    let handle = client.get_workflow_handle::<TemplatePromotion>(workflow_id(template));
    match handle.describe(Default::default()).await {
        Ok(d) => Ok(d.status() == temporalio_client::WorkflowExecutionStatus::Running),
        Err(WorkflowInteractionError::NotFound(_)) => Ok(false),
        Err(e) => {
            // Unknown: assume it runs, so the caller refuses and is retried later.
            tracing::warn!("describing the promotion of {template}: {e}");
            Ok(true)
        }
    }
}

async fn temporal(state: &AppState) -> Result<temporalio_client::Client, AppError> {
    state.temporal.client().await.map_err(|e| {
        tracing::warn!("temporal: {e:#}");
        AppError::Unavailable("Temporal is not reachable; retry")
    })
}

async fn audit(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    action: &str,
    template: &TemplateRecord,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    let target = ("template", template.id.to_string());
    crate::workspaces::audit(state, meta, principal, &ctx.workspace, action, target, detail).await
}

/// What a run needs besides the template.
struct Run<'a> {
    version: &'a VersionRecord,
    image: String,
    kind: &'static str,
    canary: Option<Canary>,
    requires_approval: bool,
}

/// Records the run (`running`), audits `template.<kind>.requested` and starts its workflow.
async fn launch(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    t: &TemplateRecord,
    run: Run<'_>,
) -> Result<PromotionRecord, AppError> {
    let client = temporal(state).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let wf = workflow_id(&t.id);
    let record = state
        .store
        .create_promotion(&NewPromotion {
            id: &id,
            workspace: &ctx.workspace.id,
            template: &t.id,
            version: &run.version.id,
            workflow_id: &wf,
            kind: run.kind,
            requested_by: &principal.user.id,
            at: now_ms(),
        })
        .await?;
    audit(
        state,
        meta,
        principal,
        ctx,
        &format!("template.{}.requested", run.kind),
        t,
        serde_json::json!({
            "promotion": id,
            "name": t.name,
            "version": run.version.version,
            "version_id": run.version.id.to_string(),
            "requires_approval": run.requires_approval,
        }),
    )
    .await?;
    let input = PromotionInput {
        promotion_id: id.clone(),
        workspace_id: ctx.workspace.id.to_string(),
        template_id: t.id.to_string(),
        version_id: run.version.id.to_string(),
        image: run.image,
        kind: run.kind.to_string(),
        canary: run.canary,
        requires_approval: run.requires_approval,
        approval_timeout_secs: state.config.promotion.approval_timeout_secs,
        requested_by: Some(principal.user.id.to_string()),
    };
    let opts =
        WorkflowStartOptions::new(state.config.temporal.task_queue.clone(), wf.clone()).build();
    let end = |status: &'static str, why: &'static str| PromotionUpdate {
        status: Some(status),
        step: Some(status),
        error: Some(Some(why)),
        progress: None,
        at: now_ms(),
    };
    match client.start_workflow(TemplatePromotion::run, input, opts).await {
        Ok(_) => Ok(record),
        Err(WorkflowStartError::AlreadyStarted { .. }) => {
            let why = "another promotion of this template was running";
            state.store.update_promotion(&id, &end("cancelled", why)).await?;
            Err(AppError::Conflict(format!(
                "another run of {} started meanwhile (workflow {wf}): one run per template at a \
                 time; follow it with `flare template promotions {}`",
                t.name, t.name
            )))
        }
        Err(e) => {
            tracing::warn!("starting {wf}: {e}");
            let why = "its workflow could not be started";
            state.store.update_promotion(&id, &end("failed", why)).await?;
            Err(AppError::Unavailable("the promotion could not be started; retry"))
        }
    }
}

/// The canary's exit code when the manifest's `user` does not exist in the image.
pub const NO_USER: i64 = 97;

/// The canary of `v`: its manifest's environment, session user, resources and smoke command.
fn canary_of(v: &VersionRecord) -> Result<Canary, AppError> {
    let manifest: Manifest = serde_json::from_str(&v.manifest_json)
        .map_err(|e| anyhow::anyhow!("the manifest of version {}: {e}", v.id))?;
    let env = manifest
        .env
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .chain(manifest.user.iter().map(|u| ("BURSTFLARE_SESSION_USER".to_owned(), u.clone())))
        .collect();
    // The agent comes up whatever the session user is (it refuses logins only), so the canary
    // checks that the manifest's user exists in the image before the template's own smoke
    // command: exit code 97 says it does not. (`user` is validated as a plain name.)
    let smoke = match (&manifest.user, &manifest.hooks.smoke) {
        (Some(u), Some(smoke)) => {
            Some(format!("id -u {u} >/dev/null 2>&1 || exit {NO_USER}\n{smoke}"))
        }
        (Some(u), None) => Some(format!("id -u {u} >/dev/null 2>&1 || exit {NO_USER}")),
        (None, smoke) => smoke.clone(),
    };
    Ok(Canary {
        env,
        cpu_millis: manifest.resources.cpu_millis,
        memory_mb: manifest.resources.memory_mb,
        smoke,
        smoke_timeout_secs: u64::from(manifest.hooks.smoke_timeout_secs),
    })
}

/// `POST …/templates/{name}/promote` (202): a built version (default: the newest) becomes the
/// one new sessions get, after a canary and, when the workspace's policy says so, an approval.
pub async fn promote(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
    body: &sdk::PromoteRequest,
) -> Result<sdk::Promotion, AppError> {
    let t = crate::templates::template_named(state, ctx, name).await?;
    let versions = state.store.versions_of(&t.id).await?;
    let v = match &body.version {
        Some(raw) => version_named(&t, &versions, raw)?,
        None => versions.iter().find(|v| v.status == "built").ok_or_else(|| {
            AppError::Conflict(format!(
                "{} has no built version yet: upload one with `flare template upload {}`",
                t.name, t.name
            ))
        })?,
    };
    refuse_archived(&t)?;
    let image = built_image(&t, v)?;
    if let Some(e) = entry_of(state, &t).await?
        && e.version_id == v.id.as_str()
    {
        return Err(AppError::Conflict(format!(
            "version {} of {} is already active",
            v.version, t.name
        )));
    }
    refuse_while_running(state, &t).await?;
    let canary = canary_of(v)?;
    let requires_approval = state.store.promotion_requires_approval(&ctx.workspace.id).await?;
    let run = Run { version: v, image, kind: "promote", canary: Some(canary), requires_approval };
    let r = launch(state, meta, principal, ctx, &t, run).await?;
    view_one(state, &t, &r).await
}

/// `POST …/templates/{name}/demote` (202): back to the version that was active before.
pub async fn demote(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<sdk::Promotion, AppError> {
    let t = crate::templates::template_named(state, ctx, name).await?;
    refuse_archived(&t)?;
    let entry = entry_of(state, &t).await?.ok_or_else(|| {
        AppError::Conflict(format!(
            "{} has no active version: promote one first (`flare template promote {}`)",
            t.name, t.name
        ))
    })?;
    let previous = entry.previous_version.clone().ok_or_else(|| {
        AppError::Conflict(format!(
            "{} has no previous version to go back to: version {} is the only one it has had \
             since it entered the catalog",
            t.name, entry.version
        ))
    })?;
    let versions = state.store.versions_of(&t.id).await?;
    let v = versions.iter().find(|v| v.version == previous).ok_or_else(|| {
        AppError::Conflict(format!("{} has no previous version to go back to", t.name))
    })?;
    let image = built_image(&t, v)?;
    refuse_while_running(state, &t).await?;
    let run = Run { version: v, image, kind: "demote", canary: None, requires_approval: false };
    let r = launch(state, meta, principal, ctx, &t, run).await?;
    view_one(state, &t, &r).await
}

/// `POST …/templates/{name}/rollback` (202): straight to an earlier built version, without
/// canary or approval (`flare template rollback T 1`).
pub async fn rollback(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
    body: &sdk::RollbackRequest,
) -> Result<sdk::Promotion, AppError> {
    let t = crate::templates::template_named(state, ctx, name).await?;
    let versions = state.store.versions_of(&t.id).await?;
    let v = version_named(&t, &versions, &body.version)?;
    refuse_archived(&t)?;
    let image = built_image(&t, v)?;
    if let Some(e) = entry_of(state, &t).await? {
        if e.version_id == v.id.as_str() {
            return Err(AppError::Conflict(format!(
                "version {} of {} is already active",
                v.version, t.name
            )));
        }
        if number(&v.version) > number(&e.version) {
            return Err(AppError::Conflict(format!(
                "version {} of {} is newer than the active version {}: a rollback goes back to \
                 an earlier version; promote a newer one (`flare template promote {} --version \
                 {}`), which runs its canary first",
                v.version, t.name, e.version, t.name, v.version
            )));
        }
    }
    refuse_while_running(state, &t).await?;
    let run = Run { version: v, image, kind: "rollback", canary: None, requires_approval: false };
    let r = launch(state, meta, principal, ctx, &t, run).await?;
    view_one(state, &t, &r).await
}

/// `GET …/templates/{name}/promotions`: its runs, newest first, at most 50.
pub async fn list(
    state: &AppState,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<Vec<sdk::Promotion>, AppError> {
    let t = crate::templates::template_named(state, ctx, name).await?;
    let rows = state.store.promotions_of_template(&t.id, LIST_LIMIT).await?;
    let mut users = Users::default();
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(view(state, &t, r, &mut users).await?);
    }
    Ok(out)
}

/// `GET …/promotions/{id}`: another workspace's promotion is not found.
pub async fn get(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<sdk::Promotion, AppError> {
    let (r, t) = promotion_in(state, ctx, id).await?;
    view_one(state, &t, &r).await
}

/// `POST …/promotions/{id}/approve`: an owner or admin other than the requester (the route
/// lets only owners and admins in) lets a promotion awaiting approval go on.
pub async fn approve(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<sdk::Promotion, AppError> {
    let (r, t) = promotion_in(state, ctx, id).await?;
    let not_waiting = |r: &PromotionRecord| {
        AppError::Conflict(format!(
            "promotion {} is {}, not awaiting approval",
            r.id,
            r.status.replace('_', " ")
        ))
    };
    if r.status != "awaiting_approval" {
        return Err(not_waiting(&r));
    }
    if r.requested_by.as_ref() == Some(&principal.user.id) {
        return Err(AppError::Forbidden(
            "you requested this promotion, so you cannot approve it: another owner or admin of \
             the workspace must approve it (four-eyes rule)",
        ));
    }
    let r =
        state.store.approve_promotion(&r.id, &principal.user.id, now_ms()).await.map_err(|e| {
            match e {
                domain::StoreError::Invalid(_) => {
                    AppError::Conflict(format!("promotion {} is no longer awaiting approval", r.id))
                }
                other => other.into(),
            }
        })?;
    let client = temporal(state).await?;
    let handle = client.get_workflow_handle::<TemplatePromotion>(r.workflow_id.clone());
    let by = r.approved_by.as_ref().unwrap_or(&principal.user.id).to_string();
    if let Err(e) =
        handle.signal(TemplatePromotion::approve, by, WorkflowSignalOptions::default()).await
    {
        tracing::warn!("signalling {}: {e}", r.workflow_id);
        return Err(AppError::Unavailable(
            "the approval is recorded but did not reach the promotion yet; approve again to retry",
        ));
    }
    audit(
        state,
        meta,
        principal,
        ctx,
        "template.promote.approved",
        &t,
        serde_json::json!({
            "promotion": r.id,
            "name": t.name,
            "version": r.version,
            "requested_by": r.requested_by.as_ref().map(ToString::to_string),
        }),
    )
    .await?;
    // Answer once the workflow has moved on (it records that within a moment).
    let deadline = Instant::now() + APPROVE_WAIT;
    loop {
        let now = state.store.promotion(&r.id).await?.ok_or(AppError::NotFound)?;
        if now.status != "awaiting_approval" || Instant::now() > deadline {
            return view_one(state, &t, &now).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET …/promotion-policy`
pub async fn policy(
    state: &AppState,
    ctx: &WorkspaceCtx,
) -> Result<sdk::PromotionPolicy, AppError> {
    Ok(sdk::PromotionPolicy {
        requires_approval: state.store.promotion_requires_approval(&ctx.workspace.id).await?,
        approval_timeout_secs: state.config.promotion.approval_timeout_secs,
    })
}

/// `PUT …/promotion-policy` (owners and admins): whether promotions wait for an approval.
/// `approval_timeout_secs` is the server's setting and ignored here.
pub async fn set_policy(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    body: &sdk::PromotionPolicy,
) -> Result<sdk::PromotionPolicy, AppError> {
    let before = state.store.promotion_requires_approval(&ctx.workspace.id).await?;
    if before != body.requires_approval {
        state.store.set_promotion_policy(&ctx.workspace.id, body.requires_approval).await?;
        let e = meta
            .audit("workspace.promotion_policy.changed")
            .actor(&principal.user.id)
            .workspace(&ctx.workspace.id)
            .target("workspace", ctx.workspace.id.to_string())
            .detail(serde_json::json!({
                "requires_approval": body.requires_approval,
                "was": before,
            }));
        state.store.append_audit(&e).await?;
    }
    policy(state, ctx).await
}

/// `POST …/templates/{name}/archive`: the template offers no new sessions (running ones keep
/// going) and leaves the catalog. A template without any version is archived at once; any
/// other runs the `TemplatePromotion` workflow with kind `archive`, and this waits for it.
pub async fn archive(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<sdk::TemplateDetail, AppError> {
    let t = crate::templates::template_named(state, ctx, name).await?;
    let versions = state.store.versions_of(&t.id).await?;
    let entry = entry_of(state, &t).await?;
    let Some(newest) = versions.first() else {
        let (t, changed) = state.store.archive_template(&ctx.workspace.id, &t.id).await?;
        if changed {
            audit(
                state,
                meta,
                principal,
                ctx,
                "template.archived",
                &t,
                serde_json::json!({ "name": t.name }),
            )
            .await?;
        }
        return crate::templates::detail(state, ctx, &t.name).await;
    };
    if t.archived_at.is_some() && entry.is_none() {
        // Archived and out of the catalog already: nothing left to do.
        return crate::templates::detail(state, ctx, &t.name).await;
    }
    refuse_while_running(state, &t).await?;
    let version = match &entry {
        Some(e) => versions.iter().find(|v| v.id.as_str() == e.version_id).unwrap_or(newest),
        None => newest,
    };
    let run = Run {
        version,
        image: version.image_ref.clone().unwrap_or_default(),
        kind: "archive",
        canary: None,
        requires_approval: false,
    };
    let r = launch(state, meta, principal, ctx, &t, run).await?;
    let client = temporal(state).await?;
    let handle = client.get_workflow_handle::<TemplatePromotion>(r.workflow_id.clone());
    let outcome =
        tokio::time::timeout(ARCHIVE_WAIT, handle.get_result(WorkflowGetResultOptions::default()))
            .await;
    match outcome {
        Ok(Ok(o)) if o.status == "succeeded" => {}
        Ok(Ok(o)) => {
            return Err(AppError::Conflict(format!(
                "archiving {} {}: {} (promotion {})",
                t.name,
                o.status.replace('_', " "),
                o.error.unwrap_or_default(),
                r.id
            )));
        }
        Ok(Err(e)) => {
            tracing::warn!("{}: {e}", r.workflow_id);
            return Err(AppError::Unavailable(
                "archiving did not finish; see `flare template promotions` for where it is",
            ));
        }
        Err(_) => {
            return Err(AppError::Unavailable(
                "archiving is still running; see `flare template promotions` for where it is",
            ));
        }
    }
    crate::templates::detail(state, ctx, &t.name).await
}
