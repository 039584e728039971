//! `Session`: one dev session's lifecycle, id `session-<session id>`. The workflow is the only
//! writer of the session's state; the API changes a session only through its updates, which
//! the validators accept or refuse (an illegal transition is refused with the reason) and the
//! main loop applies one at a time, so concurrent requests cannot interleave.
//!
//! States: provisioning → starting → running ⇄ sleeping; stopping → stopped; deleting →
//! deleted; failed. While running, an idle timer (extended by activity the agent reports) puts
//! the session to sleep and a lifetime timer stops it. The workflow continues as new when
//! Temporal suggests it, carrying its state.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::protos::temporal::api::failure::v1::Failure;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ContinueAsNewOptions, LocalActivityOptions,
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

use activities::ControlActivities;
use activities::NodeActivities;
use activities::control::SessionStep;
use activities::node::{Hydrate, StopContainer};
use activities::runtime::{ContainerSpec, container_name};
use activities::snapshot::SnapshotRestore;

/// What the session runs, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    pub session_id: String,
    pub workspace_id: String,
    pub image: String,
    pub env: Vec<(String, String)>,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    pub ports: Vec<u16>,
    pub idle_timeout_minutes: u32,
    pub max_lifetime_minutes: u32,
    pub stop_hook: Option<String>,
    #[serde(default = "default_hook_timeout")]
    pub stop_hook_timeout_secs: u32,
    /// Operations one run applies before it continues as new (Temporal may suggest it
    /// earlier); keeps histories short.
    #[serde(default = "default_ops_per_run")]
    pub ops_per_run: u32,
    /// The template's persisted paths, kept in snapshots (none: nothing is snapshotted).
    #[serde(default)]
    pub persisted_paths: Vec<String>,
    /// Largest snapshot (bytes of file content) the template and plan allow.
    #[serde(default)]
    pub max_snapshot_bytes: u64,
}

fn default_hook_timeout() -> u32 {
    30
}

fn default_ops_per_run() -> u32 {
    200
}

/// Where a session is, carried across continue-as-new.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Carried {
    pub state: String,
    pub node: Option<String>,
    pub generation: u64,
    pub seq: u64,
    pub running_since: Option<i64>,
    pub idle_deadline: Option<i64>,
    pub lifetime_deadline: Option<i64>,
    pub last_active: Option<i64>,
    pub pending: Vec<Op>,
    pub last_error: Option<String>,
    /// Run time not yet reported as a whole minute.
    #[serde(default)]
    pub unbilled_ms: i64,
    /// A sleep, stop or restart whose snapshot failed is tried again at `retry_at`; the
    /// session keeps running meanwhile.
    #[serde(default)]
    pub retry: Option<(Op, i64)>,
    /// Snapshot failures in a row (for the backoff).
    #[serde(default)]
    pub snapshot_failures: u32,
    /// The container of the current generation was kept, stopped (sessions put to sleep
    /// before snapshots existed): waking reuses it rather than start a fresh one.
    #[serde(default)]
    pub kept_container: bool,
}

/// Per run, not carried.
#[derive(Debug, Clone, Copy, Default)]
struct RunCounters {
    ops_applied: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInput {
    pub spec: SessionSpec,
    /// Set when continuing as new.
    pub carried: Option<Carried>,
}

/// An operation on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Start,
    Stop,
    Sleep,
    Restart,
    Delete,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "start" => Op::Start,
            "stop" => Op::Stop,
            "sleep" => Op::Sleep,
            "restart" => Op::Restart,
            "delete" => Op::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Sleep => "sleep",
            Op::Restart => "restart",
            Op::Delete => "delete",
        }
    }

    /// The state a session ends in once this operation is applied.
    pub fn target(self) -> &'static str {
        match self {
            Op::Start | Op::Restart => "running",
            Op::Stop => "stopped",
            Op::Sleep => "sleeping",
            Op::Delete => "deleted",
        }
    }
}

/// Whether `op` may follow a session whose state (after the operations already queued) is
/// `state`; the error says why not, in words for the person who asked.
pub fn check_transition(state: &str, op: Op) -> Result<(), String> {
    let ok = match op {
        Op::Start => matches!(state, "stopped" | "sleeping" | "failed"),
        Op::Stop => matches!(state, "provisioning" | "starting" | "running" | "sleeping"),
        Op::Sleep => matches!(state, "running"),
        Op::Restart => matches!(state, "running"),
        Op::Delete => !matches!(state, "deleting" | "deleted"),
    };
    if ok {
        return Ok(());
    }
    Err(match (op, state) {
        (Op::Start, "running" | "starting" | "provisioning") => {
            format!("the session is already {state}")
        }
        (Op::Delete, _) => format!("the session is already {state}"),
        (Op::Stop, "stopped") => "the session is already stopped".into(),
        _ => format!("cannot {} a session that is {state}", op.as_str()),
    })
}

/// The answer to the `describe` query (`flare session why`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub state: String,
    pub step: String,
    pub attempts: u32,
    pub idle_deadline: Option<i64>,
    pub lifetime_deadline: Option<i64>,
    pub pending: Vec<String>,
    pub node: Option<String>,
    pub generation: u64,
    pub last_error: Option<String>,
    /// When a sleep, stop or restart whose snapshot failed is tried again (unix ms).
    #[serde(default)]
    pub retry_at: Option<i64>,
    #[serde(default)]
    pub retry_op: Option<String>,
}

/// Marks histories written since snapshots: sleep, stop and restart snapshot the persisted
/// paths first, and every start is a fresh container restored from the latest snapshot.
/// Histories without it replay the earlier behaviour.
const SNAPSHOTS: &str = "snapshots-v1";
/// From this patch on, the Session's short control steps (`session.record`,
/// `session.pick_node`, `snapshot.latest`: one database write or read each) run as local
/// activities on the control worker that runs the workflow. Each was a round trip through
/// the Temporal server (scheduled, polled, completed, a new workflow task): about 15 ms of a
/// cold start's 90 ms of workflow tasks (make bench, cold-start timeline). Each is idempotent,
/// so re-running one after a worker crash changes nothing twice.
const LOCAL_STEPS: &str = "local-control-steps-v1";

/// Wait before retrying a sleep, stop or restart whose snapshot failed: 1, 2, 4 … 30 minutes.
fn snapshot_backoff(failures: u32) -> i64 {
    let minutes = 1i64 << failures.min(5).saturating_sub(1);
    minutes.min(30) * 60_000
}

#[workflow]
#[derive(Default)]
pub struct Session {
    c: Carried,
    step: String,
    attempts: u32,
    run: RunCounters,
}

impl Session {
    /// The state once every queued operation has been applied.
    fn projected(&self) -> String {
        self.c.pending.last().map_or_else(|| self.c.state.clone(), |op| op.target().to_string())
    }
}

/// How often a running session asks its agent for activity.
const ACTIVITY_POLL: Duration = Duration::from_secs(60);

fn now_ms(ctx: &WorkflowContext<Session>) -> i64 {
    ctx.workflow_time()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(500))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(20))
        .maximum_attempts(attempts)
        .build()
}

/// Options of a short control-plane activity (30 s, `attempts` quick retries).
fn control_call(attempts: u32) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(quick_retry(attempts))
        .build()
}

/// The same as a local activity (see [`LOCAL_STEPS`]); retries that wait longer than 2 s use
/// a workflow timer, so a long wait (no runtime host online yet) holds no workflow task open.
fn control_local(attempts: u32) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(quick_retry(attempts))
        .timer_backoff_threshold(Duration::from_secs(2))
        .build()
}

/// Runs one of the Session's short control steps: a local activity once [`LOCAL_STEPS`] is
/// patched in, else (histories from before) a regular one.
async fn control_step<AD>(
    ctx: &mut WorkflowContext<Session>,
    activity: AD,
    input: AD::Input,
    attempts: u32,
) -> Result<AD::Output, ActivityExecutionError>
where
    AD: temporalio_common::ActivityDefinition,
    AD::Output: temporalio_common::data_converters::TemporalDeserializable,
{
    if ctx.patched(LOCAL_STEPS) {
        ctx.execute_local_activity(activity, input, control_local(attempts)).await
    } else {
        ctx.execute_activity(activity, input, control_call(attempts)).await
    }
}

fn root_message(failure: &Failure) -> String {
    let mut f = failure;
    while let Some(cause) = f.cause.as_deref() {
        f = cause;
    }
    f.message.clone()
}

fn failure_text(e: &ActivityExecutionError) -> String {
    e.failure().map_or_else(|| e.to_string(), root_message)
}

#[workflow_methods]
impl Session {
    #[run(name = "Session")]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: SessionInput,
    ) -> WorkflowResult<String> {
        let spec = input.spec;
        match input.carried {
            Some(c) => ctx.state_mut(|s| s.c = c),
            None => ctx.state_mut(|s| {
                s.c.state = "provisioning".into();
                s.c.pending.push(Op::Start);
            }),
        }
        loop {
            if ctx.state(|s| s.c.state == "deleted") {
                return Ok("deleted".into());
            }
            let next = ctx.state_mut(|s| {
                if s.c.pending.is_empty() { None } else { Some(s.c.pending.remove(0)) }
            });
            let Some(op) = next else {
                let ops = ctx.state(|s| s.run.ops_applied);
                if ops >= spec.ops_per_run || ctx.continue_as_new_suggested() {
                    let carried = ctx.state(|s| s.c.clone());
                    ctx.continue_as_new(
                        SessionInput { spec: spec.clone(), carried: Some(carried) },
                        ContinueAsNewOptions::default(),
                    )?;
                }
                Self::idle(ctx, &spec).await?;
                continue;
            };
            ctx.state_mut(|s| {
                s.attempts = 0;
                s.run.ops_applied += 1;
            });
            let result = match op {
                Op::Start => Self::start(ctx, &spec, "op.start").await,
                Op::Restart => Self::restart(ctx, &spec).await,
                Op::Sleep => Self::halt(ctx, &spec, Op::Sleep, "op.sleep").await,
                Op::Stop => Self::halt(ctx, &spec, Op::Stop, "op.stop").await,
                Op::Delete => Self::delete(ctx, &spec).await,
            };
            if let Err(e) = result {
                Self::fail(ctx, &spec, op, e).await?;
            }
        }
    }

    #[query(name = "describe")]
    pub fn describe(&self, _ctx: &WorkflowContextView) -> Description {
        Description {
            state: self.c.state.clone(),
            step: self.step.clone(),
            attempts: self.attempts,
            idle_deadline: self.c.idle_deadline.filter(|_| self.c.state == "running"),
            lifetime_deadline: self.c.lifetime_deadline.filter(|_| self.c.state == "running"),
            pending: self.c.pending.iter().map(|o| o.as_str().to_string()).collect(),
            node: self.c.node.clone(),
            generation: self.c.generation,
            last_error: self.c.last_error.clone(),
            retry_at: self.c.retry.map(|(_, at)| at),
            retry_op: self.c.retry.map(|(op, _)| op.as_str().to_string()),
        }
    }

    #[update_validator(request)]
    fn validate_request(
        &self,
        _ctx: &WorkflowContextView,
        op: &String,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let op = Op::parse(op).ok_or_else(|| format!("unknown operation {op}"))?;
        check_transition(&self.projected(), op).map_err(Into::into)
    }

    /// Queues an operation; answers with the state the session will reach.
    #[update(name = "request")]
    pub fn request(&mut self, _ctx: &mut SyncWorkflowContext<Self>, op: String) -> String {
        match Op::parse(&op) {
            Some(op) => {
                self.c.pending.push(op);
                op.target().to_string()
            }
            None => self.c.state.clone(),
        }
    }
}

/// Activity failures carry the step they happened in.
struct StepError {
    step: String,
    message: String,
}

type StepResult = Result<(), StepError>;

/// A step's record could not be written.
fn recording(e: impl std::fmt::Debug) -> StepError {
    StepError { step: "recording".into(), message: format!("{e:?}") }
}

impl Session {
    fn set_step(ctx: &WorkflowContext<Self>, step: &str) {
        ctx.state_mut(|s| {
            s.step = step.to_string();
            s.attempts = 1;
        });
    }

    /// Writes a step to the database (row, event, usage, audit) through `session.record`.
    async fn record(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        state: &str,
        kind: &str,
        detail: serde_json::Value,
        error: Option<Option<String>>,
    ) -> WorkflowResult<()> {
        let at = now_ms(ctx);
        let (seq, node, generation, runtime_minutes) = ctx.state_mut(|s| {
            s.c.seq += 1;
            // Every step reports the whole minutes run since the previous one; the remainder
            // waits for the next, so frequent transitions neither lose nor inflate time.
            let ran = s.c.running_since.map_or(0, |since| (at - since).max(0));
            let total = s.c.unbilled_ms + ran;
            let minutes = Some(total / 60_000);
            s.c.unbilled_ms = total % 60_000;
            s.c.state = state.to_string();
            s.c.running_since = (state == "running").then_some(at);
            (s.c.seq, s.c.node.clone(), s.c.generation, minutes)
        });
        let container_id = match state {
            "stopped" | "deleted" | "failed" => Some(None),
            _ => None,
        };
        control_step(
            ctx,
            ControlActivities::record_session,
            SessionStep {
                session_id: spec.session_id.clone(),
                seq,
                state: state.to_string(),
                kind: kind.to_string(),
                detail,
                at,
                node,
                generation: Some(generation),
                container_id,
                error,
                runtime_minutes,
            },
            30,
        )
        .await?;
        Ok(())
    }

    fn node_options(
        ctx: &WorkflowContext<Self>,
        timeout: Duration,
        attempts: u32,
    ) -> ActivityOptions {
        let node = ctx.state(|s| s.c.node.clone()).unwrap_or_default();
        ActivityOptions::with_start_to_close_timeout(timeout)
            .task_queue(activities::node_task_queue(&node))
            .schedule_to_start_timeout(Duration::from_secs(120))
            .heartbeat_timeout(Duration::from_secs(30))
            .retry_policy(quick_retry(attempts))
            .build()
    }

    /// For short node calls that do not heartbeat.
    fn node_call(ctx: &WorkflowContext<Self>) -> ActivityOptions {
        let node = ctx.state(|s| s.c.node.clone()).unwrap_or_default();
        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(20))
            .task_queue(activities::node_task_queue(&node))
            .schedule_to_start_timeout(Duration::from_secs(60))
            .retry_policy(quick_retry(2))
            .build()
    }

    async fn start(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec, kind: &str) -> StepResult {
        let from = ctx.state(|s| s.c.state.clone());
        let snapshots = ctx.patched(SNAPSHOTS);
        let fresh_container = if snapshots {
            // Every start is a fresh container (persisted paths come back from the latest
            // snapshot), except waking one that was put to sleep before snapshots existed.
            !(from == "sleeping" && ctx.state(|s| s.c.kept_container))
        } else {
            !matches!(from.as_str(), "sleeping")
        };
        ctx.state_mut(|s| s.c.kept_container = false);
        Self::record(ctx, spec, "starting", kind, serde_json::json!({ "from": from }), Some(None))
            .await
            .map_err(recording)?;
        if ctx.state(|s| s.c.node.is_none()) {
            Self::set_step(ctx, "placing on a runtime host");
            let node = control_step(ctx, ControlActivities::pick_node, spec.session_id.clone(), 10)
                .await
                .map_err(|e| StepError { step: "placing".into(), message: failure_text(&e) })?;
            ctx.state_mut(|s| s.c.node = Some(node));
        }
        if fresh_container {
            ctx.state_mut(|s| s.c.generation += 1);
            Self::set_step(ctx, "creating the container");
            let container = ContainerSpec {
                session_id: spec.session_id.clone(),
                workspace_id: spec.workspace_id.clone(),
                generation: ctx.state(|s| s.c.generation),
                image: spec.image.clone(),
                env: spec.env.clone(),
                cpu_millis: spec.cpu_millis,
                memory_mb: spec.memory_mb,
                pids_limit: 4096,
                ports: spec.ports.clone(),
            };
            let opts = Self::node_options(ctx, Duration::from_secs(600), 5);
            let created = ctx
                .execute_activity(NodeActivities::ensure_container, container, opts)
                .await
                .map_err(|e| StepError {
                    step: "creating the container".into(),
                    message: failure_text(&e),
                })?;
            if !snapshots {
                Self::hydrate_v0(ctx, spec, &created.name).await?;
            }
        }
        Self::set_step(ctx, "waiting for the agent");
        let name = container_name(&spec.session_id, ctx.state(|s| s.c.generation));
        let opts = Self::node_options(ctx, Duration::from_secs(180), 3);
        let ready = ctx
            .execute_activity(NodeActivities::start_container, name.clone(), opts)
            .await
            .map_err(|e| StepError {
                step: "starting the container".into(),
                message: failure_text(&e),
            })?;
        let mut restored = None;
        if snapshots && fresh_container {
            restored = Self::restore_latest(ctx, spec, &name).await?;
        }
        Self::running(ctx, spec, ready, restored).await
    }

    /// Before snapshots: a fresh container was hydrated before it started (there was never a
    /// snapshot to restore). Kept so that histories from then replay.
    async fn hydrate_v0(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        container: &str,
    ) -> StepResult {
        Self::set_step(ctx, "restoring persisted paths");
        let snapshot_key = ctx
            .execute_activity(
                ControlActivities::latest_snapshot,
                spec.session_id.clone(),
                control_call(10),
            )
            .await
            .map_err(|e| StepError {
                step: "finding the snapshot".into(),
                message: failure_text(&e),
            })?;
        let opts = Self::node_options(ctx, Duration::from_secs(1800), 3);
        let hydrate = Hydrate { container: container.to_string(), snapshot_key };
        let restored =
            ctx.execute_activity(NodeActivities::hydrate, hydrate, opts).await.map_err(|e| {
                StepError { step: "restoring persisted paths".into(), message: failure_text(&e) }
            })?;
        Self::record(
            ctx,
            spec,
            "starting",
            &format!("hydrate.{restored}"),
            serde_json::json!({}),
            None,
        )
        .await
        .map_err(recording)?;
        Ok(())
    }

    /// Restores the latest snapshot into the fresh, running container; `None` when the session
    /// has none yet. A snapshot that cannot be restored fails the start and names the one
    /// before it, which the owner can restore instead.
    async fn restore_latest(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        container: &str,
    ) -> Result<Option<String>, StepError> {
        if spec.persisted_paths.is_empty() {
            return Ok(None);
        }
        Self::set_step(ctx, "finding the latest snapshot");
        let latest =
            control_step(ctx, ControlActivities::snapshot_latest, spec.session_id.clone(), 10)
                .await
                .map_err(|e| StepError {
                    step: "finding the latest snapshot".into(),
                    message: failure_text(&e),
                })?;
        let Some(latest) = latest else {
            Self::record(ctx, spec, "starting", "hydrate.empty", serde_json::json!({}), None)
                .await
                .map_err(recording)?;
            return Ok(None);
        };
        Self::set_step(ctx, "restoring persisted paths");
        let restore = SnapshotRestore {
            snapshot_id: latest.snapshot_id.clone(),
            workspace_id: spec.workspace_id.clone(),
            session_id: spec.session_id.clone(),
            generation: ctx.state(|s| s.c.generation),
            container: container.to_string(),
            manifest_key: latest.manifest_key.clone(),
            paths: spec.persisted_paths.clone(),
        };
        let opts = Self::node_options(ctx, crate::snapshot::UPLOAD_TIMEOUT, 5);
        match ctx.execute_activity(NodeActivities::snapshot_restore, restore, opts).await {
            Ok(bytes) => {
                let detail = serde_json::json!({ "snapshot": latest.snapshot_id, "bytes": bytes });
                Self::record(ctx, spec, "starting", "hydrate.restored", detail, None)
                    .await
                    .map_err(recording)?;
                Ok(Some(latest.snapshot_id))
            }
            Err(e) => {
                let offer = match &latest.previous {
                    Some(prev) => format!(
                        "; restore the snapshot before it with `flare snapshot restore {} {prev}`, \
                         then start the session",
                        spec.session_id
                    ),
                    None => String::new(),
                };
                Err(StepError {
                    step: format!("restoring snapshot {}", latest.snapshot_id),
                    message: format!("{}{offer}", failure_text(&e)),
                })
            }
        }
    }

    async fn running(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        ready: activities::node::AgentReady,
        restored: Option<String>,
    ) -> StepResult {
        let at = now_ms(ctx);
        ctx.state_mut(|s| {
            s.c.idle_deadline = Some(at + i64::from(spec.idle_timeout_minutes) * 60_000);
            s.c.lifetime_deadline = Some(at + i64::from(spec.max_lifetime_minutes) * 60_000);
            s.c.last_active = Some(at);
            s.c.last_error = None;
            s.c.retry = None;
            s.c.snapshot_failures = 0;
            s.step = String::new();
        });
        let mut detail = serde_json::json!({
            "container": ready.container.name,
            "agent_version": ready.agent_version,
        });
        if let Some(id) = restored {
            detail["snapshot"] = serde_json::json!(id);
        }
        Self::record(ctx, spec, "running", "state.running", detail, None).await.map_err(recording)
    }

    async fn restart(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec) -> StepResult {
        if ctx.patched(SNAPSHOTS) {
            // A restart is a fresh container with the persisted paths carried over.
            if !Self::save_before_halt(ctx, spec, Op::Restart).await? {
                return Ok(());
            }
            Self::stop_container(ctx, spec).await?;
            Self::remove_containers(ctx, spec).await?;
            ctx.state_mut(|s| s.c.state = "stopped".into());
            return Self::start(ctx, spec, "op.restart").await;
        }
        Self::stop_container(ctx, spec).await?;
        // The container is kept: a restart is a new process tree, not a new container.
        ctx.state_mut(|s| s.c.state = "sleeping".into());
        Self::start(ctx, spec, "op.restart").await
    }

    /// Sleep or stop. Since snapshots both save the persisted paths first (the saga: snapshot
    /// → verify → stop; a failed snapshot keeps the session running, says why and retries
    /// later) and remove the container. Before, sleep kept the stopped container.
    async fn halt(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        op: Op,
        kind: &str,
    ) -> StepResult {
        let to = op.target();
        let snapshots = ctx.patched(SNAPSHOTS);
        if snapshots && !Self::save_before_halt(ctx, spec, op).await? {
            return Ok(());
        }
        let from = ctx.state(|s| s.c.state.clone());
        if to == "stopped" {
            Self::record(ctx, spec, "stopping", kind, serde_json::json!({ "from": from }), None)
                .await
                .map_err(recording)?;
        }
        if ctx.state(|s| s.c.node.is_some() && s.c.generation > 0) {
            Self::stop_container(ctx, spec).await?;
            if to == "stopped" || snapshots {
                Self::remove_containers(ctx, spec).await?;
            } else {
                ctx.state_mut(|s| s.c.kept_container = true);
            }
        }
        let detail = serde_json::json!({ "from": from, "reason": kind });
        Self::record(ctx, spec, to, &format!("state.{to}"), detail, None).await.map_err(recording)
    }

    /// The snapshot before a running session's container goes. `Ok(true)`: saved (or nothing
    /// to save), go on. `Ok(false)`: it failed; the session keeps running, the failure is
    /// recorded (event, error, audit by the snapshot) and `op` is retried after a backoff.
    async fn save_before_halt(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        op: Op,
    ) -> Result<bool, StepError> {
        let (state, node) = ctx.state(|s| (s.c.state.clone(), s.c.node.clone()));
        let Some(node) = node else { return Ok(true) };
        if state != "running" || spec.persisted_paths.is_empty() {
            return Ok(true);
        }
        Self::set_step(ctx, "saving persisted paths");
        let trigger = match op {
            Op::Sleep => "sleep",
            Op::Restart => "restart",
            _ => "stop",
        };
        let generation = ctx.state(|s| s.c.generation);
        let input = crate::snapshot::SnapshotInput {
            snapshot_id: ctx.uuid4(),
            target: crate::snapshot::SnapshotTarget {
                session_id: spec.session_id.clone(),
                workspace_id: spec.workspace_id.clone(),
                node,
                generation,
                container: container_name(&spec.session_id, generation),
                paths: spec.persisted_paths.clone(),
                max_bytes: spec.max_snapshot_bytes,
            },
            trigger: trigger.into(),
            requested_by: None,
        };
        let outcome = crate::snapshot::snapshot_child(ctx, input).await.map_err(|e| StepError {
            step: "saving persisted paths".into(),
            message: format!("{e:?}"),
        })?;
        if outcome.status == "verified" {
            ctx.state_mut(|s| {
                s.c.retry = None;
                s.c.snapshot_failures = 0;
            });
            return Ok(true);
        }
        if outcome.container_gone {
            // The container died: there is nothing left to pack, and waiting cannot change
            // that. Go on; the next start restores the latest snapshot.
            let detail = serde_json::json!({
                "op": op.as_str(),
                "snapshot": outcome.snapshot_id,
                "error": outcome.error,
            });
            Self::record(ctx, spec, "running", "snapshot.skipped", detail, None)
                .await
                .map_err(recording)?;
            return Ok(true);
        }
        let error = outcome.error.unwrap_or_else(|| "the snapshot failed".into());
        let at = now_ms(ctx);
        let retry_at = ctx.state_mut(|s| {
            s.c.snapshot_failures += 1;
            let retry_at = at + snapshot_backoff(s.c.snapshot_failures);
            s.c.retry = Some((op, retry_at));
            s.c.last_error = Some(format!(
                "{} is waiting: the snapshot of the persisted paths failed: {error}",
                op.as_str()
            ));
            s.step = String::new();
            retry_at
        });
        let message = ctx.state(|s| s.c.last_error.clone());
        let detail = serde_json::json!({
            "op": op.as_str(),
            "snapshot": outcome.snapshot_id,
            "error": error,
            "too_large": outcome.too_large,
            "retry_at": retry_at,
        });
        Self::record(ctx, spec, "running", "snapshot.failed", detail, Some(message))
            .await
            .map_err(recording)?;
        Ok(false)
    }

    async fn delete(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec) -> StepResult {
        let from = ctx.state(|s| s.c.state.clone());
        Self::record(ctx, spec, "deleting", "op.delete", serde_json::json!({ "from": from }), None)
            .await
            .map_err(recording)?;
        if ctx.state(|s| s.c.node.is_some()) {
            if from == "running" || from == "starting" {
                Self::stop_container(ctx, spec).await?;
            }
            Self::remove_containers(ctx, spec).await?;
        }
        if ctx.patched(SNAPSHOTS) {
            // A deleted session's snapshots go with it (their chunks once nothing uses them).
            Self::set_step(ctx, "retiring snapshots");
            ctx.execute_activity(
                ControlActivities::snapshot_retire_all,
                spec.session_id.clone(),
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(300))
                    .retry_policy(quick_retry(10))
                    .build(),
            )
            .await
            .map_err(|e| StepError {
                step: "retiring snapshots".into(),
                message: failure_text(&e),
            })?;
        }
        ctx.state_mut(|s| {
            s.c.pending.clear();
            s.c.retry = None;
        });
        Self::record(ctx, spec, "deleted", "state.deleted", serde_json::json!({}), None)
            .await
            .map_err(recording)
    }

    async fn stop_container(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec) -> StepResult {
        Self::set_step(ctx, "stopping the container");
        let stop = StopContainer {
            name: container_name(&spec.session_id, ctx.state(|s| s.c.generation)),
            hook: spec.stop_hook.clone(),
            hook_timeout_secs: u64::from(spec.stop_hook_timeout_secs),
            grace_secs: 10,
        };
        let opts = Self::node_options(ctx, Duration::from_secs(120), 5);
        ctx.execute_activity(NodeActivities::stop_container, stop, opts).await.map(|_| ()).map_err(
            |e| StepError { step: "stopping the container".into(), message: failure_text(&e) },
        )
    }

    async fn remove_containers(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec) -> StepResult {
        Self::set_step(ctx, "removing the container");
        let opts = Self::node_options(ctx, Duration::from_secs(120), 5);
        ctx.execute_activity(NodeActivities::remove_containers, spec.session_id.clone(), opts)
            .await
            .map(|_| ())
            .map_err(|e| StepError {
                step: "removing the container".into(),
                message: failure_text(&e),
            })
    }

    /// A step failed for good: remove what it left behind (no orphan container), record the
    /// cause, and wait for the next request (start again or delete).
    async fn fail(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        op: Op,
        e: StepError,
    ) -> WorkflowResult<()> {
        let message = format!("{} failed while {}: {}", op.as_str(), e.step, e.message);
        ctx.state_mut(|s| {
            s.c.last_error = Some(message.clone());
            s.step = String::new();
        });
        if ctx.state(|s| s.c.node.is_some()) {
            let opts = Self::node_options(ctx, Duration::from_secs(120), 5);
            // Best effort: a host that is gone has no container to leave behind.
            let _ = ctx
                .execute_activity(NodeActivities::remove_containers, spec.session_id.clone(), opts)
                .await;
        }
        if op == Op::Delete {
            // Deleting cannot be refused: the database row goes whatever the host did.
            Self::record(
                ctx,
                spec,
                "deleted",
                "state.deleted",
                serde_json::json!({ "error": message }),
                None,
            )
            .await?;
            return Ok(());
        }
        let detail = serde_json::json!({ "op": op.as_str(), "step": e.step, "error": e.message });
        Self::record(ctx, spec, "failed", "state.failed", detail, Some(Some(message))).await
    }

    /// Nothing queued: wait for a request, and while running watch the idle and lifetime
    /// deadlines, asking the agent for activity once a minute.
    async fn idle(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec) -> WorkflowResult<()> {
        if ctx.state(|s| s.c.state != "running") {
            ctx.wait_condition(|s| !s.c.pending.is_empty()).await?;
            return Ok(());
        }
        let now = now_ms(ctx);
        let (idle, lifetime) = ctx.state(|s| {
            (s.c.idle_deadline.unwrap_or(i64::MAX), s.c.lifetime_deadline.unwrap_or(i64::MAX))
        });
        // While a failed snapshot waits for its retry, the deadlines it is about have passed
        // already: only the retry time counts.
        let next = ctx.state(|s| s.c.retry).map_or(idle.min(lifetime), |(_, at)| at);
        let until = next.saturating_sub(now).max(0);
        let wait = Duration::from_millis(u64::try_from(until).unwrap_or(0)).min(ACTIVITY_POLL);
        let woke_for_request = temporalio_sdk::workflows::select! {
            r = ctx.wait_condition(|s| !s.c.pending.is_empty()) => { r?; true }
            _ = ctx.timer(wait) => false,
        };
        if woke_for_request {
            return Ok(());
        }
        // Ask the agent whether anyone used the session.
        let name = container_name(&spec.session_id, ctx.state(|s| s.c.generation));
        let opts = Self::node_call(ctx);
        let seen = ctx.execute_activity(NodeActivities::agent_activity, name, opts).await;
        let now = now_ms(ctx);
        if let Ok(Some(at)) = seen {
            let extended = ctx.state_mut(|s| {
                if s.c.last_active.is_none_or(|prev| at > prev) {
                    s.c.last_active = Some(at);
                    let deadline = at + i64::from(spec.idle_timeout_minutes) * 60_000;
                    if s.c.idle_deadline.is_none_or(|d| deadline > d) {
                        s.c.idle_deadline = Some(deadline);
                        return true;
                    }
                }
                false
            });
            if extended {
                ctx.execute_activity(
                    ControlActivities::touch_session,
                    (spec.session_id.clone(), at),
                    control_call(5),
                )
                .await?;
            }
        }
        let (idle, lifetime, retry) = ctx.state(|s| {
            (
                s.c.idle_deadline.unwrap_or(i64::MAX),
                s.c.lifetime_deadline.unwrap_or(i64::MAX),
                s.c.retry,
            )
        });
        match retry {
            // A sleep, stop or restart whose snapshot failed waits for its retry.
            Some((op, at)) if now >= at => ctx.state_mut(|s| {
                s.c.retry = None;
                s.c.pending.push(op);
            }),
            Some(_) => {}
            None if now >= lifetime => ctx.state_mut(|s| s.c.pending.push(Op::Stop)),
            None if now >= idle => ctx.state_mut(|s| s.c.pending.push(Op::Sleep)),
            None => {}
        }
        Ok(())
    }
}
