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
    ActivityExecutionError, ActivityOptions, ContinueAsNewOptions, SyncWorkflowContext,
    WorkflowContext, WorkflowContextView, WorkflowResult,
};

use activities::ControlActivities;
use activities::NodeActivities;
use activities::control::SessionStep;
use activities::node::{Hydrate, StopContainer};
use activities::runtime::{ContainerSpec, container_name};

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
                Op::Sleep => Self::halt(ctx, &spec, "sleeping", "op.sleep").await,
                Op::Stop => Self::halt(ctx, &spec, "stopped", "op.stop").await,
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
        ctx.execute_activity(
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
            ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                .retry_policy(quick_retry(30))
                .build(),
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
        let fresh_container = !matches!(from.as_str(), "sleeping");
        Self::record(ctx, spec, "starting", kind, serde_json::json!({ "from": from }), Some(None))
            .await
            .map_err(|e| StepError { step: "recording".into(), message: format!("{e:?}") })?;
        if ctx.state(|s| s.c.node.is_none()) {
            Self::set_step(ctx, "placing on a runtime host");
            let node = ctx
                .execute_activity(
                    ControlActivities::pick_node,
                    spec.session_id.clone(),
                    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                        .retry_policy(quick_retry(10))
                        .build(),
                )
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
            // Persisted paths come back from the latest snapshot, if there is one.
            Self::set_step(ctx, "restoring persisted paths");
            let snapshot_key = ctx
                .execute_activity(
                    ControlActivities::latest_snapshot,
                    spec.session_id.clone(),
                    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                        .retry_policy(quick_retry(10))
                        .build(),
                )
                .await
                .map_err(|e| StepError {
                    step: "finding the snapshot".into(),
                    message: failure_text(&e),
                })?;
            let opts = Self::node_options(ctx, Duration::from_secs(1800), 3);
            let hydrate = Hydrate { container: created.name.clone(), snapshot_key };
            let restored = ctx
                .execute_activity(NodeActivities::hydrate, hydrate, opts)
                .await
                .map_err(|e| StepError {
                    step: "restoring persisted paths".into(),
                    message: failure_text(&e),
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
            .map_err(|e| StepError { step: "recording".into(), message: format!("{e:?}") })?;
        }
        Self::set_step(ctx, "waiting for the agent");
        let name = container_name(&spec.session_id, ctx.state(|s| s.c.generation));
        let opts = Self::node_options(ctx, Duration::from_secs(180), 3);
        let ready =
            ctx.execute_activity(NodeActivities::start_container, name, opts).await.map_err(
                |e| StepError { step: "starting the container".into(), message: failure_text(&e) },
            )?;
        let at = now_ms(ctx);
        ctx.state_mut(|s| {
            s.c.idle_deadline = Some(at + i64::from(spec.idle_timeout_minutes) * 60_000);
            s.c.lifetime_deadline = Some(at + i64::from(spec.max_lifetime_minutes) * 60_000);
            s.c.last_active = Some(at);
            s.c.last_error = None;
            s.step = String::new();
        });
        let detail = serde_json::json!({
            "container": ready.container.name,
            "agent_version": ready.agent_version,
        });
        Self::record(ctx, spec, "running", "state.running", detail, None)
            .await
            .map_err(|e| StepError { step: "recording".into(), message: format!("{e:?}") })
    }

    async fn restart(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec) -> StepResult {
        Self::stop_container(ctx, spec).await?;
        // The container is kept: a restart is a new process tree, not a new container.
        ctx.state_mut(|s| s.c.state = "sleeping".into());
        Self::start(ctx, spec, "op.restart").await
    }

    /// Sleep (keep the container, stopped) or stop (remove it; the data stays).
    async fn halt(
        ctx: &mut WorkflowContext<Self>,
        spec: &SessionSpec,
        to: &str,
        kind: &str,
    ) -> StepResult {
        let from = ctx.state(|s| s.c.state.clone());
        if to == "stopped" {
            Self::record(ctx, spec, "stopping", kind, serde_json::json!({ "from": from }), None)
                .await
                .map_err(|e| StepError { step: "recording".into(), message: format!("{e:?}") })?;
        }
        if ctx.state(|s| s.c.node.is_some() && s.c.generation > 0) {
            Self::stop_container(ctx, spec).await?;
            if to == "stopped" {
                Self::remove_containers(ctx, spec).await?;
            }
        }
        let detail = serde_json::json!({ "from": from, "reason": kind });
        Self::record(ctx, spec, to, &format!("state.{to}"), detail, None)
            .await
            .map_err(|e| StepError { step: "recording".into(), message: format!("{e:?}") })
    }

    async fn delete(ctx: &mut WorkflowContext<Self>, spec: &SessionSpec) -> StepResult {
        let from = ctx.state(|s| s.c.state.clone());
        Self::record(ctx, spec, "deleting", "op.delete", serde_json::json!({ "from": from }), None)
            .await
            .map_err(|e| StepError { step: "recording".into(), message: format!("{e:?}") })?;
        if ctx.state(|s| s.c.node.is_some()) {
            if from == "running" || from == "starting" {
                Self::stop_container(ctx, spec).await?;
            }
            Self::remove_containers(ctx, spec).await?;
        }
        ctx.state_mut(|s| s.c.pending.clear());
        Self::record(ctx, spec, "deleted", "state.deleted", serde_json::json!({}), None)
            .await
            .map_err(|e| StepError { step: "recording".into(), message: format!("{e:?}") })
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
        let until = idle.min(lifetime).saturating_sub(now).max(0);
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
                    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(30))
                        .retry_policy(quick_retry(5))
                        .build(),
                )
                .await?;
            }
        }
        let (idle, lifetime) = ctx.state(|s| {
            (s.c.idle_deadline.unwrap_or(i64::MAX), s.c.lifetime_deadline.unwrap_or(i64::MAX))
        });
        if now >= lifetime {
            ctx.state_mut(|s| s.c.pending.push(Op::Stop));
        } else if now >= idle {
            ctx.state_mut(|s| s.c.pending.push(Op::Sleep));
        }
        Ok(())
    }
}
