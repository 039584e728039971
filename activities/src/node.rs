//! Activities that run on a runtime host (`burstflare node`, task queue `node-<id>`):
//! everything that talks to that host's Docker engine and to the agents in its containers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

use crate::runtime::{ContainerInfo, ContainerSpec, RuntimeError, RuntimeProvider};
use crate::snapshot::{
    NodeSnapshots, SnapshotRestore, SnapshotUpload, UploadedManifest, non_retryable,
};

pub struct NodeActivities {
    node_id: String,
    docker: bollard::Docker,
    runtime: Arc<dyn RuntimeProvider>,
    http: reqwest::Client,
    snapshots: Option<NodeSnapshots>,
}

impl NodeActivities {
    pub fn new(
        node_id: String,
        docker: bollard::Docker,
        runtime: Arc<dyn RuntimeProvider>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { node_id, docker, runtime, http, snapshots: None }
    }

    /// Lets this node move snapshots between its sessions and object storage.
    #[must_use]
    pub fn with_snapshots(mut self, snapshots: NodeSnapshots) -> Self {
        self.snapshots = Some(snapshots);
        self
    }

    /// The agent port of a running container, for snapshot work.
    async fn snapshot_target(
        &self,
        container: &str,
    ) -> Result<(&NodeSnapshots, u16), ActivityError> {
        let snapshots = self.snapshots.as_ref().ok_or_else(|| {
            non_retryable("this node has no object storage configured for snapshots")
        })?;
        let info = self.runtime.inspect(container).await.map_err(runtime_err)?;
        match info {
            Some(ContainerInfo { running: true, agent_port: Some(port), .. }) => {
                Ok((snapshots, port))
            }
            _ => Err(non_retryable(format!(
                "{}: the session's container {container} is not running",
                crate::snapshot::CONTAINER_GONE
            ))),
        }
    }
}

/// How often `session.start_container` tries the agent's `/ready`.
const READY_TICK: Duration = Duration::from_millis(10);
/// How often, meanwhile, it asks the runtime whether the container still runs.
const INSPECT_EVERY: Duration = Duration::from_millis(250);

/// The Docker engine a node reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node_id: String,
    pub docker_version: String,
}

/// What the agent in a ready container said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentReady {
    pub container: ContainerInfo,
    pub agent_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hydrate {
    pub container: String,
    pub snapshot_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopContainer {
    pub name: String,
    /// The template's stop hook, run with `sh -c` before stopping.
    pub hook: Option<String>,
    pub hook_timeout_secs: u64,
    pub grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopReport {
    /// The hook's exit code, or why it did not finish.
    pub hook: Option<String>,
}

/// Runs `work`, heartbeating every few seconds so Temporal notices a dead host quickly (the
/// heartbeat timeout) without cutting long work short (image pulls, stop hooks).
async fn heartbeating<T>(ctx: &ActivityContext, work: impl std::future::Future<Output = T>) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                let _ = ctx.record_heartbeat(()).await;
            }
        }
    }
}

fn runtime_err(e: RuntimeError) -> ActivityError {
    match e {
        RuntimeError::Permanent(m) => {
            ActivityError::application(ApplicationFailure::non_retryable(m))
        }
        RuntimeError::Transient(m) => anyhow::anyhow!(m).into(),
    }
}

#[activities]
impl NodeActivities {
    /// Reads the engine version of this node's Docker. Read-only, so retries are harmless.
    #[activity(name = "node.docker_version")]
    pub async fn docker_version(
        self: Arc<Self>,
        _ctx: ActivityContext,
        _input: (),
    ) -> Result<NodeReport, ActivityError> {
        let v = self.docker.version().await.map_err(anyhow::Error::from)?;
        Ok(NodeReport {
            node_id: self.node_id.clone(),
            docker_version: v.version.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Creates the session's container for this generation unless it exists (idempotent by
    /// name), removing containers of other generations.
    #[activity(name = "session.ensure_container")]
    pub async fn ensure_container(
        self: Arc<Self>,
        ctx: ActivityContext,
        spec: ContainerSpec,
    ) -> Result<ContainerInfo, ActivityError> {
        heartbeating(&ctx, self.runtime.ensure(&spec)).await.map_err(runtime_err)
    }

    /// Fills a fresh container's persisted paths from the session's latest snapshot before it
    /// starts. With no snapshot there is nothing to do. Restoring a snapshot arrives with
    /// snapshots; until then a node refuses one rather than start a session without its files.
    #[activity(name = "session.hydrate")]
    pub async fn hydrate(
        self: Arc<Self>,
        _ctx: ActivityContext,
        input: Hydrate,
    ) -> Result<String, ActivityError> {
        match input.snapshot_key {
            None => Ok("empty".into()),
            Some(key) => {
                Err(ActivityError::application(ApplicationFailure::non_retryable(format!(
                    "{} has snapshot {key}, and this node cannot restore snapshots yet",
                    input.container
                ))))
            }
        }
    }

    /// Starts the container and waits until its agent answers `/ready` (heartbeating while it
    /// waits). A container that exits instead fails with its last output.
    #[activity(name = "session.start_container")]
    pub async fn start_container(
        self: Arc<Self>,
        ctx: ActivityContext,
        name: String,
    ) -> Result<AgentReady, ActivityError> {
        let mut info = self.runtime.start(&name).await.map_err(runtime_err)?;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last_inspect = Instant::now();
        loop {
            if !info.running {
                let tail = self.runtime.logs_tail(&name, 20).await;
                return Err(ActivityError::application(ApplicationFailure::non_retryable(
                    format!(
                        "the container exited (code {}) before its agent was ready: {}",
                        info.exit_code.unwrap_or(-1),
                        tail.trim()
                    ),
                )));
            }
            if let Some(port) = info.agent_port
                && let Ok(resp) =
                    self.http.get(format!("http://127.0.0.1:{port}/ready")).send().await
                && resp.status().is_success()
            {
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                let agent_version = body["version"].as_str().unwrap_or("unknown").to_string();
                return Ok(AgentReady { container: info, agent_version });
            }
            if Instant::now() > deadline {
                return Err(
                    anyhow::anyhow!("the agent in {name} did not answer within 90 s").into()
                );
            }
            let _ = ctx.record_heartbeat(()).await;
            // The agent is usually ready a few ms after `docker start` returns: each tick here
            // is latency added to every session start (BENCHMARKS.md, cold start). A refused
            // connection to loopback costs next to nothing, so `/ready` is tried every 10 ms,
            // and the container is inspected (has it exited? its port, if it had none yet)
            // only every 250 ms.
            tokio::time::sleep(READY_TICK).await;
            if info.agent_port.is_none() || last_inspect.elapsed() >= INSPECT_EVERY {
                info = self
                    .runtime
                    .inspect(&name)
                    .await
                    .map_err(runtime_err)?
                    .ok_or_else(|| anyhow::anyhow!("{name} disappeared while starting"))?;
                last_inspect = Instant::now();
            }
        }
    }

    /// When the session was last used, as its agent reports it; `None` when the container or
    /// its agent does not answer.
    #[activity(name = "session.agent_activity")]
    pub async fn agent_activity(
        self: Arc<Self>,
        _ctx: ActivityContext,
        name: String,
    ) -> Result<Option<i64>, ActivityError> {
        let Some(info) = self.runtime.inspect(&name).await.map_err(runtime_err)? else {
            return Ok(None);
        };
        let Some(port) = info.agent_port else { return Ok(None) };
        let Ok(resp) = self.http.get(format!("http://127.0.0.1:{port}/activity")).send().await
        else {
            return Ok(None);
        };
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Ok(body["last_active_at"].as_i64())
    }

    /// Runs the stop hook (bounded by its timeout; a failing hook does not prevent the stop),
    /// then stops the container. Stopping a stopped or missing container succeeds.
    #[activity(name = "session.stop_container")]
    pub async fn stop_container(
        self: Arc<Self>,
        ctx: ActivityContext,
        stop: StopContainer,
    ) -> Result<StopReport, ActivityError> {
        heartbeating(&ctx, self.stop_inner(stop)).await
    }

    /// Packs the session's persisted paths through its agent into the workspace's chunk store
    /// and writes the manifest last (docs/snapshots.md). Retrying is safe: chunks are
    /// content-addressed and the manifest is keyed by the snapshot id.
    #[activity(name = "snapshot.upload")]
    pub async fn snapshot_upload(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SnapshotUpload,
    ) -> Result<UploadedManifest, ActivityError> {
        let (snapshots, port) = self.snapshot_target(&input.container).await?;
        heartbeating(&ctx, crate::snapshot::upload(snapshots, port, &input)).await
    }

    /// Streams a stored snapshot into the session's agent, which stages it and swaps it in;
    /// a damaged snapshot is refused before its bad chunk reaches the agent, and the current
    /// files stay as they were. Returns the bytes restored.
    #[activity(name = "snapshot.restore")]
    pub async fn snapshot_restore(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SnapshotRestore,
    ) -> Result<u64, ActivityError> {
        let (snapshots, port) = self.snapshot_target(&input.container).await?;
        heartbeating(&ctx, crate::snapshot::restore(snapshots, port, &input)).await
    }

    /// Pulls a promoted image onto this host unless it is here. Idempotent.
    #[activity(name = "promotion.prepull")]
    pub async fn promotion_prepull(
        self: Arc<Self>,
        ctx: ActivityContext,
        image: String,
    ) -> Result<String, ActivityError> {
        heartbeating(&ctx, self.runtime.prepull(&image)).await.map_err(runtime_err)?;
        Ok(self.node_id.clone())
    }

    /// Runs a canary's smoke command in its container; returns the exit code.
    #[activity(name = "promotion.smoke")]
    pub async fn promotion_smoke(
        self: Arc<Self>,
        ctx: ActivityContext,
        smoke: crate::promotion::SmokeTest,
    ) -> Result<i64, ActivityError> {
        let timeout = Duration::from_secs(smoke.timeout_secs);
        heartbeating(&ctx, self.runtime.exec(&smoke.container, &smoke.command, timeout))
            .await
            .map_err(runtime_err)
    }

    /// Removes every container of the session. Idempotent.
    #[activity(name = "session.remove_containers")]
    pub async fn remove_containers(
        self: Arc<Self>,
        ctx: ActivityContext,
        session_id: String,
    ) -> Result<u32, ActivityError> {
        heartbeating(&ctx, self.runtime.remove_all(&session_id)).await.map_err(runtime_err)
    }
}

impl NodeActivities {
    async fn stop_inner(&self, stop: StopContainer) -> Result<StopReport, ActivityError> {
        let running =
            self.runtime.inspect(&stop.name).await.map_err(runtime_err)?.is_some_and(|i| i.running);
        let mut hook = None;
        if running && let Some(cmd) = stop.hook.as_deref().filter(|c| !c.trim().is_empty()) {
            let timeout = Duration::from_secs(stop.hook_timeout_secs);
            hook = Some(match self.runtime.exec(&stop.name, cmd, timeout).await {
                Ok(code) => format!("exit code {code}"),
                Err(e) => e.to_string(),
            });
        }
        self.runtime
            .stop(&stop.name, Duration::from_secs(stop.grace_secs))
            .await
            .map_err(runtime_err)?;
        Ok(StopReport { hook })
    }
}
