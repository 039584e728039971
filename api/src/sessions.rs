//! Dev sessions, shared by the JSON API and the web pages.
//!
//! The API never writes a session's state: it creates the row (`provisioning`), starts the
//! session's `Session` workflow, and afterwards only sends it updates (start, stop, sleep,
//! restart, delete), which the workflow validates and applies one at a time. Reads come from the
//! database, which the workflow keeps current; `why` asks the workflow itself.

use std::time::{Duration, Instant};

use domain::policy::{self, Permission};
use domain::store::{NewSession, SessionRecord};
use sdk::bundle::Manifest;
use temporalio_client::{
    WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowQueryOptions,
    WorkflowStartOptions,
    errors::{WorkflowStartError, WorkflowUpdateError},
};

use crate::auth::{Principal, RequestMeta};
use crate::routes::WorkspaceCtx;
use crate::{AppError, AppState};

/// How long `?wait=…` waits before answering with the state at that moment.
const WAIT: Duration = Duration::from_secs(120);
/// How often `?wait=…` reads the session's row when no write of it is heard (a worker in
/// another process writes it): each tick of this is latency added to `flare session create`
/// (BENCHMARKS.md, cold start).
const WAIT_POLL: Duration = Duration::from_millis(50);
/// Longest a session may run before it is stopped, whatever its activity.
const MAX_LIFETIME_MINUTES: u32 = 24 * 60;
const MAX_NAME_CHARS: usize = 63;
const MAX_IDEMPOTENCY_KEY: usize = 128;

pub fn detail(s: &SessionRecord) -> sdk::SessionDetail {
    sdk::SessionDetail {
        id: s.id.to_string(),
        name: s.name.clone(),
        state: s.state.clone(),
        template: s.template_name.clone(),
        version: s.version.clone(),
        owner: sdk::UserRef { id: s.owner.to_string(), display_name: s.owner_name.clone() },
        node: s.node_id.clone(),
        workflow_id: s.workflow_id.clone(),
        created_at: s.created_at,
        updated_at: s.updated_at,
        started_at: s.started_at,
        stopped_at: s.stopped_at,
        last_active_at: s.last_active_at,
        error: s.error.clone(),
    }
}

fn check_name(name: &str) -> Result<(), AppError> {
    let ok = (1..=MAX_NAME_CHARS).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(
            "name",
            format!(
                "name: 1 to {MAX_NAME_CHARS} characters of a-z, 0-9 and '-', starting with a \
                 letter and not ending with '-'"
            ),
        ))
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..4).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
}

async fn session(
    state: &AppState,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<SessionRecord, AppError> {
    state.store.session_in_workspace(&ctx.workspace.id, id).await?.ok_or(AppError::NotFound)
}

/// Members act on their own sessions; owners and admins may also stop or delete anyone's.
fn may_control(
    principal: &Principal,
    ctx: &WorkspaceCtx,
    s: &SessionRecord,
    op: &str,
) -> Result<(), AppError> {
    let own = s.owner == principal.user.id;
    let manage =
        policy::allows(ctx.role, Permission::ManageAnySession) && matches!(op, "stop" | "delete");
    if own || manage {
        Ok(())
    } else {
        Err(AppError::Forbidden("this session belongs to someone else"))
    }
}

async fn audit(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    action: &str,
    s: &SessionRecord,
    detail: serde_json::Value,
) -> Result<(), AppError> {
    let target = ("session", s.id.to_string());
    crate::workspaces::audit(state, meta, principal, &ctx.workspace, action, target, detail).await
}

/// Reads the database until `done` says the session got where it was going, or [`WAIT`]: again
/// at once when this process writes the session's row, else every [`WAIT_POLL`].
async fn wait_for(
    state: &AppState,
    s: &SessionRecord,
    done: impl Fn(&str) -> bool,
) -> Result<SessionRecord, AppError> {
    let deadline = Instant::now() + WAIT;
    let mut writes = state.store.session_writes();
    loop {
        let now = state.store.session_by_id(&s.id).await?.ok_or(AppError::NotFound)?;
        if done(&now.state) || now.state == "failed" || Instant::now() > deadline {
            return Ok(now);
        }
        next_write(&mut writes, &s.id).await;
    }
}

/// Returns when `writes` hears a write of session `id` (or lost count of them), or after
/// [`WAIT_POLL`], whichever comes first.
async fn next_write(
    writes: &mut tokio::sync::broadcast::Receiver<String>,
    id: &domain::ids::SessionId,
) {
    let heard = async {
        loop {
            match writes.recv().await {
                Ok(written) if written == id.as_str() => return,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    let _ = tokio::time::timeout(WAIT_POLL, heard).await;
}

pub async fn create(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    body: &sdk::CreateSession,
    wait: bool,
) -> Result<sdk::SessionDetail, AppError> {
    if let Some(key) = &body.idempotency_key
        && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY)
    {
        return Err(AppError::invalid(
            "idempotency_key",
            format!("idempotency_key: 1 to {MAX_IDEMPOTENCY_KEY} characters"),
        ));
    }
    let t = state.store.template_by_name(&ctx.workspace.id, &body.template).await?.ok_or_else(
        || {
            AppError::invalid(
                "template",
                format!("template: no template named {} in this workspace", body.template),
            )
        },
    )?;
    if t.archived_at.is_some() {
        return Err(AppError::Conflict(format!(
            "template {} is archived; new sessions cannot use it",
            t.name
        )));
    }
    let version = match &body.version {
        Some(v) => {
            let n = v.strip_prefix('v').unwrap_or(v);
            let version = state.store.version_of(&t.id, n).await?.ok_or_else(|| {
                AppError::invalid("version", format!("version: {} has no version {v}", t.name))
            })?;
            if version.status != "built" {
                return Err(AppError::Conflict(format!(
                    "version {} of {} is {}, not built",
                    version.version, t.name, version.status
                )));
            }
            version
        }
        None => {
            let versions = state.store.versions_of(&t.id).await?;
            let active = state.store.active_version_of(&t.id).await?;
            let pick = active
                .and_then(|a| versions.iter().find(|v| v.version == a && v.status == "built"))
                .or_else(|| versions.iter().find(|v| v.status == "built"));
            pick.cloned().ok_or_else(|| {
                AppError::Conflict(format!(
                    "template {} has no built version yet: upload one with `flare template upload {}`",
                    t.name, t.name
                ))
            })?
        }
    };
    let image = version
        .image_digest
        .as_ref()
        .and(version.image_ref.clone())
        .ok_or_else(|| anyhow::anyhow!("built version {} has no image", version.id))?;
    let manifest: Manifest = serde_json::from_str(&version.manifest_json)
        .map_err(|e| anyhow::anyhow!("the manifest of version {}: {e}", version.id))?;
    let name = match &body.name {
        Some(n) => n.clone(),
        None => format!(
            "{}-{}",
            t.name.chars().take(MAX_NAME_CHARS - 5).collect::<String>(),
            random_suffix()
        ),
    };
    check_name(&name)?;

    // A retried create (same idempotency key) answers with the first session: look before the
    // quota so a retry never trips it.
    let retried = match &body.idempotency_key {
        Some(key) => {
            state
                .store
                .session_by_idempotency_key(&ctx.workspace.id, &principal.user.id, key)
                .await?
        }
        None => None,
    };
    if retried.is_none() {
        let limits = state.store.session_limits(&ctx.workspace.id).await?;
        if let Some(max) = limits.max_sessions {
            let live = state.store.count_live_sessions(&ctx.workspace.id, None).await?;
            if live >= max {
                return Err(AppError::Conflict(format!(
                    "quota: this workspace has {live} sessions and its plan allows {max} \
                     (max_sessions); delete one first"
                )));
            }
        }
        if let Some(max) = limits.max_running_sessions {
            let running = state.store.count_running_sessions(&ctx.workspace.id).await?;
            if running >= max {
                return Err(AppError::Conflict(format!(
                    "quota: this workspace has {running} running sessions and its plan allows \
                     {max} (max_running_sessions); stop or sleep one first"
                )));
            }
        }
    }

    let (s, created) = state
        .store
        .create_session(&NewSession {
            workspace: &ctx.workspace.id,
            owner: &principal.user.id,
            template: &t.id,
            version: &version.id,
            name: &name,
            image_ref: &image,
            idle_timeout_minutes: manifest.idle_timeout_minutes,
            idempotency_key: body.idempotency_key.as_deref(),
        })
        .await
        .map_err(|e| match e {
            domain::StoreError::Conflict { .. } => {
                AppError::Conflict(format!("name: a session named {name} exists in this workspace"))
            }
            other => other.into(),
        })?;
    if created {
        audit(
            state,
            meta,
            principal,
            ctx,
            "session.created",
            &s,
            serde_json::json!({ "name": s.name, "template": t.name, "version": version.version }),
        )
        .await?;
    }
    let (persisted_paths, max_snapshot_bytes) =
        crate::snapshots::policy(state, &manifest, &ctx.workspace.id).await?;
    let spec = workflows::SessionSpec {
        session_id: s.id.to_string(),
        workspace_id: ctx.workspace.id.to_string(),
        image,
        env: manifest
            .env
            .iter()
            .map(|e| (e.name.clone(), e.value.clone()))
            .chain(manifest.user.iter().map(|u| ("BURSTFLARE_SESSION_USER".to_owned(), u.clone())))
            .collect(),
        cpu_millis: manifest.resources.cpu_millis,
        memory_mb: manifest.resources.memory_mb,
        ports: manifest.ports.iter().map(|p| p.port).collect(),
        idle_timeout_minutes: manifest.idle_timeout_minutes,
        max_lifetime_minutes: MAX_LIFETIME_MINUTES,
        stop_hook: manifest.hooks.stop.clone(),
        stop_hook_timeout_secs: manifest.hooks.stop_timeout_secs,
        ops_per_run: 200,
        persisted_paths,
        max_snapshot_bytes,
    };
    let client = state.temporal.client().await.map_err(|e| {
        tracing::warn!("starting session {}: {e:#}", s.id);
        AppError::Unavailable("Temporal is not reachable; retry with the same idempotency key")
    })?;
    let opts =
        WorkflowStartOptions::new(state.config.temporal.task_queue.clone(), s.workflow_id.clone())
            .build();
    match client
        .start_workflow(
            workflows::Session::run,
            workflows::SessionInput { spec, carried: None },
            opts,
        )
        .await
    {
        Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => {}
        Err(e) => {
            tracing::warn!("starting workflow {}: {e}", s.workflow_id);
            return Err(AppError::Unavailable(
                "the session could not be started; retry with the same idempotency key",
            ));
        }
    }
    let s = if wait { wait_for(state, &s, |st| st == "running").await? } else { s };
    Ok(detail(&s))
}

pub async fn get(
    state: &AppState,
    _principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<sdk::SessionDetail, AppError> {
    Ok(detail(&session(state, ctx, id).await?))
}

/// Sends an operation to the session's workflow. Its validator refuses an illegal transition
/// (409 with the reason); an accepted one is applied in order with any others queued.
pub async fn op(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
    op: &str,
    wait: bool,
) -> Result<sdk::SessionDetail, AppError> {
    let Some(parsed) = workflows::session::Op::parse(op) else {
        return Err(AppError::NotFound);
    };
    let s = session(state, ctx, id).await?;
    may_control(principal, ctx, &s, op)?;
    if parsed == workflows::session::Op::Start {
        let limits = state.store.session_limits(&ctx.workspace.id).await?;
        if let Some(max) = limits.max_running_sessions {
            let running = state.store.count_running_sessions(&ctx.workspace.id).await?;
            if running >= max
                && !matches!(s.state.as_str(), "running" | "starting" | "provisioning")
            {
                return Err(AppError::Conflict(format!(
                    "quota: this workspace has {running} running sessions and its plan allows \
                     {max} (max_running_sessions); stop or sleep one first"
                )));
            }
        }
    }
    if s.state == "deleted" {
        return Err(AppError::Conflict("the session is deleted".into()));
    }
    let client = state
        .temporal
        .client()
        .await
        .map_err(|_| AppError::Unavailable("Temporal is not reachable; retry"))?;
    let handle = client.get_workflow_handle::<workflows::Session>(s.workflow_id.clone());
    let target = match handle
        .execute_update(
            workflows::Session::request,
            op.to_string(),
            WorkflowExecuteUpdateOptions::default(),
        )
        .await
    {
        Ok(target) => target,
        Err(WorkflowUpdateError::Failed(f)) => return Err(AppError::Conflict(f.message.clone())),
        Err(WorkflowUpdateError::NotFound(_)) => {
            return Err(AppError::Conflict(format!("the session is {}", s.state)));
        }
        Err(e) => {
            tracing::warn!("update {op} on {}: {e}", s.workflow_id);
            return Err(AppError::Unavailable("the session did not answer; retry"));
        }
    };
    audit(
        state,
        meta,
        principal,
        ctx,
        &format!("session.{op}.requested"),
        &s,
        serde_json::json!({ "name": s.name, "from": s.state }),
    )
    .await?;
    let s = if wait {
        // A restart passes through running before it is done: wait until it left and came back.
        let before = s.updated_at;
        let restart = parsed == workflows::session::Op::Restart;
        let target = target.clone();
        let deadline = Instant::now() + WAIT;
        let mut writes = state.store.session_writes();
        loop {
            let now = state.store.session_by_id(&s.id).await?.ok_or(AppError::NotFound)?;
            let reached = now.state == target && (!restart || now.started_at.unwrap_or(0) > before);
            // A session that was failed already is not "failed again" until it changed.
            let failed = now.state == "failed" && now.updated_at > before;
            if reached || failed || Instant::now() > deadline {
                break now;
            }
            next_write(&mut writes, &s.id).await;
        }
    } else {
        s
    };
    Ok(detail(&s))
}

pub async fn delete(
    state: &AppState,
    meta: &RequestMeta,
    principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
    wait: bool,
) -> Result<sdk::SessionDetail, AppError> {
    op(state, meta, principal, ctx, id, "delete", wait).await
}

pub async fn events(
    state: &AppState,
    _principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
    after: u64,
) -> Result<Vec<sdk::SessionEvent>, AppError> {
    let s = session(state, ctx, id).await?;
    Ok(state
        .store
        .session_events(&s.id, after, 500)
        .await?
        .into_iter()
        .map(|e| sdk::SessionEvent { seq: e.seq, kind: e.kind, detail: e.detail, at: e.at })
        .collect())
}

pub async fn why(
    state: &AppState,
    _principal: &Principal,
    ctx: &WorkspaceCtx,
    id: &str,
) -> Result<sdk::SessionWhy, AppError> {
    let s = session(state, ctx, id).await?;
    let from_db = || sdk::SessionWhy {
        state: s.state.clone(),
        step: String::new(),
        attempts: 0,
        idle_deadline: None,
        lifetime_deadline: None,
        pending: vec![],
        node: s.node_id.clone(),
        generation: s.generation,
        last_error: s.error.clone(),
        retry_at: None,
        retry_op: None,
    };
    if s.state == "deleted" {
        return Ok(from_db());
    }
    let client = state
        .temporal
        .client()
        .await
        .map_err(|_| AppError::Unavailable("Temporal is not reachable; retry"))?;
    let handle = client.get_workflow_handle::<workflows::Session>(s.workflow_id.clone());
    match handle.query(workflows::Session::describe, (), WorkflowQueryOptions::default()).await {
        Ok(d) => {
            // The step's activity attempts and its last failure, from Temporal itself: what an
            // operator would read in `temporal workflow describe`.
            let pending = match handle.describe(WorkflowDescribeOptions::default()).await {
                Ok(desc) => desc.raw_description.pending_activities,
                Err(e) => {
                    tracing::debug!("describe {}: {e}", s.workflow_id);
                    Vec::new()
                }
            };
            let attempts = pending
                .iter()
                .map(|a| u32::try_from(a.attempt).unwrap_or(0))
                .max()
                .unwrap_or(d.attempts);
            let retrying = pending
                .iter()
                .filter_map(|a| a.last_failure.as_ref())
                .map(|f| format!("retrying after: {}", f.message))
                .next();
            Ok(sdk::SessionWhy {
                state: d.state,
                step: d.step,
                attempts,
                idle_deadline: d.idle_deadline,
                lifetime_deadline: d.lifetime_deadline,
                pending: d.pending,
                node: d.node,
                generation: d.generation,
                last_error: d.last_error.or(retrying),
                retry_at: d.retry_at,
                retry_op: d.retry_op,
            })
        }
        Err(e) => {
            tracing::warn!("describe {}: {e}", s.workflow_id);
            Ok(from_db())
        }
    }
}
