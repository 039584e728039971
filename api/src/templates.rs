//! Templates, versions and builds, shared by the JSON API and the web pages.
//!
//! Upload: `create_version` makes a draft version and a presigned `PUT` that accepts exactly
//! the declared size; `confirm` checks what arrived in storage (size, sha256, every bundle
//! rule) and only then accepts the version and starts its `TemplateBuild` workflow. A bundle
//! that fails a check is deleted with its draft: nothing of it stays.

use std::time::Duration;

use domain::ids::{TemplateBuildId, TemplateId};
use domain::store::{BuildRecord, TemplateRecord, VersionRecord, now_ms};
use sdk::bundle::{self, BundleError, Manifest};
use temporalio_client::{WorkflowCancelOptions, WorkflowStartOptions};

use crate::auth::{Principal, RequestMeta};
use crate::routes::WorkspaceCtx;
use crate::{AppError, AppState};

/// Most builds a listing returns.
const BUILD_LIST_LIMIT: u32 = 100;
/// Most log chunks one log request returns.
const LOG_CHUNKS_PER_READ: i32 = 64;
const MAX_DESCRIPTION_CHARS: usize = 1000;

fn bundle_error(e: BundleError) -> AppError {
    let too_large = e.field == "bundle.size";
    AppError::InvalidField { field: e.field, message: e.message, too_large }
}

fn user_ref(id: &Option<domain::ids::UserId>, name: Option<String>) -> Option<sdk::UserRef> {
    id.as_ref()
        .map(|id| sdk::UserRef { id: id.to_string(), display_name: name.unwrap_or_default() })
}

pub fn build_view(b: &BuildRecord) -> sdk::TemplateBuild {
    sdk::TemplateBuild {
        id: b.id.to_string(),
        template: b.template_name.clone(),
        version: b.version.clone(),
        attempt: b.attempt,
        status: b.status.clone(),
        workflow_id: b.workflow_id.clone(),
        requested_by: user_ref(&b.requested_by, b.requested_by_name.clone()),
        image_ref: b.image_ref.clone(),
        image_digest: b.image_digest.clone(),
        error: b.error.clone(),
        created_at: b.created_at,
        updated_at: b.updated_at,
        started_at: b.started_at,
        finished_at: b.finished_at,
    }
}

fn version_view(
    t: &TemplateRecord,
    v: &VersionRecord,
    latest_build: Option<&BuildRecord>,
) -> sdk::TemplateVersion {
    let manifest = if v.status == "draft" {
        None
    } else {
        serde_json::from_str::<Manifest>(&v.manifest_json).ok().map(|m| m.view())
    };
    sdk::TemplateVersion {
        id: v.id.to_string(),
        template: t.name.clone(),
        version: v.version.clone(),
        status: v.status.clone(),
        bundle_size: v.bundle_size,
        bundle_sha256: v.bundle_sha256.clone(),
        manifest,
        image_ref: v.image_ref.clone(),
        image_digest: v.image_digest.clone(),
        created_by: user_ref(&v.created_by, None),
        created_at: v.created_at,
        updated_at: v.updated_at,
        latest_build: latest_build.map(build_view),
    }
}

/// The workspace's template called `name`; not found otherwise.
pub(crate) async fn template_named(
    state: &AppState,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<TemplateRecord, AppError> {
    state.store.template_by_name(&ctx.workspace.id, name).await?.ok_or(AppError::NotFound)
}

async fn version_named(
    state: &AppState,
    t: &TemplateRecord,
    version: &str,
) -> Result<VersionRecord, AppError> {
    let v = version.strip_prefix('v').unwrap_or(version);
    state.store.version_of(&t.id, v).await?.ok_or(AppError::NotFound)
}

async fn audit(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    action: &str,
    target: (&str, String),
    detail: serde_json::Value,
) -> Result<(), AppError> {
    crate::workspaces::audit(state, meta, principal, &ctx.workspace, action, target, detail).await
}

fn check_description(d: &str) -> Result<(), AppError> {
    let n = d.chars().count();
    if n > MAX_DESCRIPTION_CHARS {
        return Err(AppError::invalid(
            "description",
            format!("description: is {n} characters; the limit is {MAX_DESCRIPTION_CHARS}"),
        ));
    }
    if d.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(AppError::invalid(
            "description",
            "description: must not hold control characters",
        ));
    }
    Ok(())
}

pub async fn create(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    body: &sdk::CreateTemplate,
) -> Result<sdk::TemplateDetail, AppError> {
    let t = create_record(state, meta, principal, ctx, &body.name, &body.description).await?;
    detail_of(state, &t).await
}

async fn create_record(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
    description: &str,
) -> Result<TemplateRecord, AppError> {
    bundle::validate_template_name(name).map_err(bundle_error)?;
    check_description(description)?;
    let t = state
        .store
        .create_template(&ctx.workspace.id, name, description, &principal.user.id)
        .await
        .map_err(|e| match e {
            domain::StoreError::Conflict { .. } => AppError::Conflict(format!(
                "name: a template named {name} exists in this workspace"
            )),
            other => other.into(),
        })?;
    audit(
        state,
        meta,
        principal,
        ctx,
        "template.created",
        ("template", t.id.to_string()),
        serde_json::json!({ "name": t.name }),
    )
    .await?;
    Ok(t)
}

async fn detail_of(state: &AppState, t: &TemplateRecord) -> Result<sdk::TemplateDetail, AppError> {
    let versions = state.store.versions_of(&t.id).await?;
    let builds = state.store.builds_of_template(&t.id, BUILD_LIST_LIMIT).await?;
    let latest_of = |v: &VersionRecord| builds.iter().find(|b| b.version_id == v.id);
    let latest_version = versions.first().map(|v| version_view(t, v, latest_of(v)));
    let latest_built_version =
        versions.iter().find(|v| v.status == "built").map(|v| version_view(t, v, latest_of(v)));
    Ok(sdk::TemplateDetail {
        id: t.id.to_string(),
        name: t.name.clone(),
        description: t.description.clone(),
        active_version: state.store.active_version_of(&t.id).await?,
        latest_version,
        latest_built_version,
        versions: versions.len() as u64,
        created_at: t.created_at,
        updated_at: t.updated_at,
        archived_at: t.archived_at,
    })
}

pub async fn detail(
    state: &AppState,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<sdk::TemplateDetail, AppError> {
    let t = template_named(state, ctx, name).await?;
    detail_of(state, &t).await
}

/// Archives a template: no new sessions (running ones keep going), and it leaves the runtime
/// catalog. A template with versions is archived by the `TemplatePromotion` workflow
/// ([`crate::promotions::archive`]).
pub async fn archive(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<sdk::TemplateDetail, AppError> {
    crate::promotions::archive(state, meta, principal, ctx, name).await
}

pub async fn versions(
    state: &AppState,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<Vec<sdk::TemplateVersion>, AppError> {
    let t = template_named(state, ctx, name).await?;
    let versions = state.store.versions_of(&t.id).await?;
    let builds = state.store.builds_of_template(&t.id, BUILD_LIST_LIMIT).await?;
    Ok(versions
        .iter()
        .map(|v| version_view(&t, v, builds.iter().find(|b| b.version_id == v.id)))
        .collect())
}

pub async fn version(
    state: &AppState,
    ctx: &WorkspaceCtx,
    name: &str,
    version: &str,
) -> Result<sdk::TemplateVersion, AppError> {
    let t = template_named(state, ctx, name).await?;
    let v = version_named(state, &t, version).await?;
    let latest = state.store.latest_build_of_version(&v.id).await?;
    Ok(version_view(&t, &v, latest.as_ref()))
}

fn bundle_key(template: &TemplateId, version: &domain::ids::TemplateVersionId) -> String {
    format!("bundles/{template}/{version}.tar.zst")
}

pub async fn create_version(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
    body: &sdk::CreateVersion,
) -> Result<sdk::UploadTicket, AppError> {
    let limits = state.config.build.limits();
    if body.size == 0 {
        return Err(AppError::invalid("size", "size: a bundle cannot be empty"));
    }
    if body.size > limits.max_bundle_bytes {
        return Err(AppError::InvalidField {
            field: "size".into(),
            message: format!(
                "size: the bundle is {} bytes; the limit is {} bytes (build.max_bundle_mb)",
                body.size, limits.max_bundle_bytes
            ),
            too_large: true,
        });
    }
    let sha_ok = body.sha256.len() == 64
        && body.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !sha_ok {
        return Err(AppError::invalid("sha256", "sha256: must be 64 lowercase hex characters"));
    }
    let t = match state.store.template_by_name(&ctx.workspace.id, name).await? {
        Some(t) => t,
        None if body.create_template => {
            create_record(state, meta, principal, ctx, name, &body.description).await?
        }
        None => return Err(AppError::NotFound),
    };
    if t.archived_at.is_some() {
        return Err(AppError::Conflict(format!(
            "template {} is archived; create a new template to upload new versions",
            t.name
        )));
    }
    let minutes = state.config.build.upload_url_minutes;
    let expires_at = now_ms() + i64::try_from(minutes * 60_000).unwrap_or(i64::MAX / 2);
    let tid = t.id.clone();
    let v = state
        .store
        .create_draft_version(
            &t.id,
            body.size,
            &body.sha256,
            expires_at,
            &principal.user.id,
            |id| bundle_key(&tid, id),
        )
        .await?;
    let key = v.bundle_key.clone().unwrap_or_else(|| bundle_key(&t.id, &v.id));
    let presigned = state
        .blob
        .presign_put(&key, body.size, "application/zstd", Duration::from_secs(minutes * 60))
        .await
        .map_err(|e| AppError::Internal(anyhow::Error::from(e)))?;
    Ok(sdk::UploadTicket {
        version: version_view(&t, &v, None),
        upload_url: presigned.url,
        method: "PUT".into(),
        headers: presigned.headers,
        expires_at,
        max_bytes: limits.max_bundle_bytes,
    })
}

/// Deletes a refused bundle and its draft version, and records the refusal.
async fn refuse(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    t: &TemplateRecord,
    v: &VersionRecord,
    err: AppError,
) -> AppError {
    if let Some(key) = &v.bundle_key
        && let Err(e) = state.blob.delete(key).await
    {
        tracing::warn!("deleting refused bundle {key}: {e}");
    }
    if let Err(e) = state.store.delete_draft_version(&v.id).await {
        tracing::warn!("deleting refused draft version {}: {e}", v.id);
    }
    let (field, reason) = match &err {
        AppError::InvalidField { field, message, .. } => (field.clone(), message.clone()),
        AppError::Invalid { field, message } => (field.to_string(), message.clone()),
        other => (String::new(), other.to_string()),
    };
    if let Err(e) = audit(
        state,
        meta,
        principal,
        ctx,
        "template.version.rejected",
        ("template", t.id.to_string()),
        serde_json::json!({ "template": t.name, "version": v.version, "field": field, "reason": reason }),
    )
    .await
    {
        tracing::warn!("auditing a refused bundle: {e}");
    }
    err
}

pub async fn confirm(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    name: &str,
    version: &str,
) -> Result<sdk::ConfirmedVersion, AppError> {
    let t = template_named(state, ctx, name).await?;
    let v = version_named(state, &t, version).await?;
    if v.status != "draft" {
        // Confirming twice (a retried request) answers the same; the build start is
        // idempotent on its workflow id.
        let build =
            state.store.latest_build_of_version(&v.id).await?.ok_or_else(|| {
                AppError::Conflict(format!("version {} is {}", v.version, v.status))
            })?;
        if build.status == "queued" {
            start_build(state, &v, &build).await?;
        }
        return Ok(sdk::ConfirmedVersion {
            version: version_view(&t, &v, Some(&build)),
            build: build_view(&build),
        });
    }
    let key = v
        .bundle_key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("version {} has no bundle key", v.id))?;
    let declared = v.bundle_size.unwrap_or(0);
    let stored = state.blob.size_of(&key).await.map_err(|e| AppError::Internal(e.into()))?;
    let Some(stored) = stored else {
        return Err(AppError::Conflict(format!(
            "no bundle has been uploaded for version {} yet: PUT it to the upload URL first \
             (`flare template upload` does both)",
            v.version
        )));
    };
    let manifest = match verify(state, &key, declared, stored, v.bundle_sha256.as_deref()).await {
        Ok(m) => m,
        Err(e) => return Err(refuse(state, meta, principal, ctx, &t, &v, e).await),
    };
    if manifest.name != t.name {
        let e = AppError::InvalidField {
            field: "name".into(),
            message: format!(
                "name: burstflare.toml names the template {}, but it was uploaded to {}",
                manifest.name, t.name
            ),
            too_large: false,
        };
        return Err(refuse(state, meta, principal, ctx, &t, &v, e).await);
    }
    let manifest_json =
        serde_json::to_string(&manifest).map_err(|e| AppError::Internal(e.into()))?;
    let v = state.store.accept_upload(&v.id, &manifest_json).await?;
    let build = state.store.create_build(&v.id, Some(&principal.user.id)).await?;
    audit(
        state,
        meta,
        principal,
        ctx,
        "template.version.uploaded",
        ("template_version", v.id.to_string()),
        serde_json::json!({
            "template": t.name, "version": v.version,
            "size": v.bundle_size, "sha256": v.bundle_sha256, "build": build.id.to_string(),
        }),
    )
    .await?;
    start_build(state, &v, &build).await?;
    Ok(sdk::ConfirmedVersion {
        version: version_view(&t, &v, Some(&build)),
        build: build_view(&build),
    })
}

/// Checks an uploaded bundle in storage against what its uploader declared, and against the
/// bundle rules.
async fn verify(
    state: &AppState,
    key: &str,
    declared: u64,
    stored: u64,
    sha256: Option<&str>,
) -> Result<Manifest, AppError> {
    if stored != declared {
        return Err(AppError::InvalidField {
            field: "size".into(),
            message: format!("size: {stored} bytes arrived; the upload declared {declared}"),
            too_large: false,
        });
    }
    let bytes = state.blob.get(key).await.map_err(|e| AppError::Internal(e.into()))?;
    let actual = bundle::sha256_hex(&bytes);
    if Some(actual.as_str()) != sha256 {
        return Err(AppError::InvalidField {
            field: "sha256".into(),
            message: format!(
                "sha256: the uploaded bundle hashes to {actual}, not the declared {}",
                sha256.unwrap_or("")
            ),
            too_large: false,
        });
    }
    let limits = state.config.build.limits();
    let inspected = tokio::task::spawn_blocking(move || bundle::inspect(&bytes, &limits))
        .await
        .map_err(|e| AppError::Internal(e.into()))?
        .map_err(bundle_error)?;
    Ok(inspected.manifest)
}

/// Starts (or, if it runs already, leaves alone) the workflow of a queued build.
async fn start_build(
    state: &AppState,
    v: &VersionRecord,
    build: &BuildRecord,
) -> Result<(), AppError> {
    let cfg = &state.config;
    let job = activities::build::BuildJob {
        build_id: build.id.to_string(),
        version_id: v.id.to_string(),
        workspace_id: build.workspace_id.to_string(),
        template: build.template_name.clone(),
        version: v.version.clone(),
        attempt: build.attempt,
        bundle_key: v.bundle_key.clone().unwrap_or_default(),
        bundle_sha256: v.bundle_sha256.clone().unwrap_or_default(),
        bundle_size: v.bundle_size.unwrap_or(0),
        repository: format!("burstflare/{}", build.template_id),
        tag: format!("v{}", v.version),
        timeout_secs: cfg.build.timeout_minutes * 60,
    };
    let input = workflows::TemplateBuildInput { job, build_queue: cfg.build.task_queue.clone() };
    let client = state.temporal.client().await.map_err(|e| {
        tracing::warn!("starting build {}: {e:#}", build.id);
        AppError::Unavailable("Temporal is not reachable; the build stays queued, retry later")
    })?;
    let opts =
        WorkflowStartOptions::new(cfg.temporal.task_queue.clone(), build.workflow_id.clone())
            .build();
    match client.start_workflow(workflows::TemplateBuild::run, input, opts).await {
        Ok(_) => Ok(()),
        Err(temporalio_client::errors::WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
        Err(e) => {
            tracing::warn!("starting build workflow {}: {e}", build.workflow_id);
            Err(AppError::Unavailable(
                "the build could not be started; it stays queued: confirm again to retry",
            ))
        }
    }
}

pub async fn builds(
    state: &AppState,
    ctx: &WorkspaceCtx,
    name: &str,
) -> Result<Vec<sdk::TemplateBuild>, AppError> {
    let t = template_named(state, ctx, name).await?;
    let builds = state.store.builds_of_template(&t.id, BUILD_LIST_LIMIT).await?;
    Ok(builds.iter().map(build_view).collect())
}

async fn build_record(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<BuildRecord, AppError> {
    let id = TemplateBuildId::parse(id).map_err(|_| AppError::NotFound)?;
    state.store.build_in_workspace(&ctx.workspace.id, &id).await?.ok_or(AppError::NotFound)
}

pub async fn build(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<sdk::TemplateBuild, AppError> {
    Ok(build_view(&build_record(state, ctx, id).await?))
}

pub async fn build_log(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
    from: u64,
) -> Result<sdk::BuildLog, AppError> {
    // The status is read before the chunks: every chunk is written before the build's final
    // state, so a final status here means the listing below is complete.
    let b = build_record(state, ctx, id).await?;
    let id = b.id.to_string();
    let prefix = activities::build::log_prefix(&id);
    let start_after = from.checked_sub(1).map(|s| activities::build::log_chunk_key(&id, s));
    let keys = state
        .blob
        .list_after(&prefix, start_after.as_deref(), LOG_CHUNKS_PER_READ)
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    let mut text = String::new();
    let mut next = from;
    for key in &keys {
        let Some(seq) = activities::build::log_chunk_seq(key) else { continue };
        let bytes = match state.blob.get(key).await {
            Ok(b) => b,
            Err(domain::blob::BlobError::NotFound { .. }) => continue,
            Err(e) => return Err(AppError::Internal(e.into())),
        };
        text.push_str(&String::from_utf8_lossy(&bytes));
        next = seq + 1;
    }
    let done = sdk::build_is_final(&b.status) && keys.len() < LOG_CHUNKS_PER_READ as usize;
    Ok(sdk::BuildLog { build: build_view(&b), text, next, done })
}

pub async fn retry(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<sdk::TemplateBuild, AppError> {
    let b = build_record(state, ctx, id).await?;
    match b.status.as_str() {
        "failed" | "cancelled" => {}
        "succeeded" => {
            return Err(AppError::Conflict(format!(
                "build {} of {} v{} succeeded; there is nothing to retry",
                b.attempt, b.template_name, b.version
            )));
        }
        other => {
            return Err(AppError::Conflict(format!(
                "build {} of {} v{} is still {other}; cancel it first",
                b.attempt, b.template_name, b.version
            )));
        }
    }
    let v = state.store.version_by_id(&b.version_id).await?.ok_or(AppError::NotFound)?;
    let next =
        state.store.create_build(&v.id, Some(&principal.user.id)).await.map_err(|e| match e {
            domain::StoreError::Conflict { .. } => AppError::Conflict(format!(
                "{} v{} is being built already",
                b.template_name, b.version
            )),
            other => other.into(),
        })?;
    audit(
        state,
        meta,
        principal,
        ctx,
        "template.build.retried",
        ("template_build", next.id.to_string()),
        serde_json::json!({
            "template": next.template_name, "version": next.version,
            "attempt": next.attempt, "previous": b.id.to_string(),
        }),
    )
    .await?;
    start_build(state, &v, &next).await?;
    Ok(build_view(&next))
}

pub async fn cancel(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<sdk::TemplateBuild, AppError> {
    let b = build_record(state, ctx, id).await?;
    if sdk::build_is_final(&b.status) {
        return Err(AppError::Conflict(format!(
            "build {} of {} v{} has already {}",
            b.attempt,
            b.template_name,
            b.version,
            if b.status == "cancelled" { "been cancelled".to_string() } else { b.status.clone() }
        )));
    }
    let client =
        state.temporal.client().await.map_err(|_| {
            AppError::Unavailable("Temporal is not reachable; retry the cancel later")
        })?;
    let handle = client.get_workflow_handle::<workflows::TemplateBuild>(b.workflow_id.clone());
    if let Err(e) = handle.cancel(WorkflowCancelOptions::default()).await {
        tracing::warn!("cancelling {}: {e}", b.workflow_id);
        return Err(AppError::Unavailable("the build could not be cancelled; retry"));
    }
    audit(
        state,
        meta,
        principal,
        ctx,
        "template.build.cancel_requested",
        ("template_build", b.id.to_string()),
        serde_json::json!({ "template": b.template_name, "version": b.version, "attempt": b.attempt }),
    )
    .await?;
    Ok(build_view(&b))
}
