//! The runtime provider: what a session needs from the thing that runs its container. The
//! Docker implementation runs on each runtime host (`burstflare node`); a Cloudflare
//! Containers implementation can sit behind the same trait.
//!
//! Containers are named `bf-<session id>-g<generation>`, so creating one is idempotent: a
//! retried or replayed create finds the container the first attempt made.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

/// Where the agent listens inside every session container.
pub const AGENT_PORT: u16 = 7070;
/// Where the agent binary is mounted inside every session container.
pub const AGENT_MOUNT: &str = "/opt/burstflare/agent";
/// Where the session's own data directory is mounted.
pub const DATA_MOUNT: &str = "/opt/burstflare/session";

pub const LABEL_SESSION: &str = "burstflare.session";
pub const LABEL_WORKSPACE: &str = "burstflare.workspace";
pub const LABEL_GENERATION: &str = "burstflare.generation";

/// Everything needed to create a session's container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub session_id: String,
    pub workspace_id: String,
    pub generation: u64,
    pub image: String,
    pub env: Vec<(String, String)>,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    pub pids_limit: i64,
    /// Ports the template exposes; each is published on 127.0.0.1.
    pub ports: Vec<u16>,
}

impl ContainerSpec {
    pub fn name(&self) -> String {
        container_name(&self.session_id, self.generation)
    }
}

pub fn container_name(session_id: &str, generation: u64) -> String {
    format!("bf-{session_id}-g{generation}")
}

/// A container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub running: bool,
    /// Host port (on 127.0.0.1) of the agent, while running.
    pub agent_port: Option<u16>,
    /// Exit code of a container that stopped.
    pub exit_code: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The request cannot succeed as it is (missing image, bad spec): not worth retrying.
    #[error("{0}")]
    Permanent(String),
    /// The runtime is unreachable or busy: retry.
    #[error("{0}")]
    Transient(String),
}

fn classify(e: bollard::errors::Error) -> RuntimeError {
    match &e {
        bollard::errors::Error::DockerResponseServerError { status_code, message }
            if (400..500).contains(status_code) && *status_code != 409 =>
        {
            RuntimeError::Permanent(message.clone())
        }
        bollard::errors::Error::DockerResponseServerError { message, .. } => {
            RuntimeError::Transient(message.clone())
        }
        other => RuntimeError::Transient(other.to_string()),
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

/// Runs session containers.
#[async_trait::async_trait]
pub trait RuntimeProvider: Send + Sync {
    /// Creates the container of `spec` unless it exists; removes the session's containers
    /// of other generations (there is only ever one).
    async fn ensure(&self, spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError>;
    /// Starts a created or stopped container (a running one is left alone).
    async fn start(&self, name: &str) -> Result<ContainerInfo, RuntimeError>;
    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, RuntimeError>;
    /// Runs `command` with `sh -c` in a running container, giving up after `timeout`.
    async fn exec(&self, name: &str, command: &str, timeout: Duration)
    -> Result<i64, RuntimeError>;
    /// Stops a container, SIGKILL after `grace`. A missing or stopped one is fine.
    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Removes every container of the session (any generation); returns how many.
    async fn remove_all(&self, session_id: &str) -> Result<u32, RuntimeError>;
    /// The last lines of a container's output, for error messages.
    async fn logs_tail(&self, name: &str, lines: usize) -> String;
    /// Makes `image` present on this host (pulled from the registry unless it is here), so
    /// sessions from it start without waiting for a pull.
    async fn prepull(&self, image: &str) -> Result<(), RuntimeError>;
}

/// Where the Docker runtime finds the agent and keeps session data.
#[derive(Clone)]
pub struct DockerRuntimeSettings {
    pub agent_path: PathBuf,
    pub data_dir: PathBuf,
    /// `[runtime] secret`: each container's agent token and the session's host key are derived
    /// from it (domain::connect). Empty: agents start without them and refuse connections.
    pub runtime_secret: Vec<u8>,
}

impl std::fmt::Debug for DockerRuntimeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntimeSettings")
            .field("agent_path", &self.agent_path)
            .field("data_dir", &self.data_dir)
            .field("runtime_secret", &"[redacted]")
            .finish()
    }
}

/// The environment the agent of `spec`'s container gets on top of the template's: its agent
/// token and the session's host key (docs/ssh.md). The agent removes both from its environment
/// before starting anything.
pub fn agent_env(secret: &[u8], spec: &ContainerSpec) -> Result<Vec<String>, RuntimeError> {
    if secret.is_empty() {
        return Ok(Vec::new());
    }
    let token = domain::connect::agent_token(secret, &spec.session_id, spec.generation);
    let key =
        domain::connect::host_key(secret, &spec.session_id).map_err(RuntimeError::Permanent)?;
    Ok(vec![
        format!("BURSTFLARE_AGENT_TOKEN={token}"),
        format!("BURSTFLARE_HOST_KEY={}", key.private_openssh),
    ])
}

pub struct DockerRuntime {
    docker: bollard::Docker,
    settings: DockerRuntimeSettings,
}

impl DockerRuntime {
    pub fn new(docker: bollard::Docker, settings: DockerRuntimeSettings) -> Self {
        Self { docker, settings }
    }

    async fn ensure_image(&self, image: &str) -> Result<(), RuntimeError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        // Not on this host yet: pull it from the registry the builder pushed it to.
        let opts = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut stream = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                return Err(RuntimeError::Permanent(format!(
                    "image {image} is not on this host and could not be pulled: {}",
                    crate::build::docker_error_message(&e)
                )));
            }
        }
        Ok(())
    }

    fn session_filter(session_id: &str) -> HashMap<String, Vec<String>> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{LABEL_SESSION}={session_id}")]);
        filters
    }
}

fn info_from(inspect: bollard::models::ContainerInspectResponse) -> ContainerInfo {
    let state = inspect.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let agent_port = inspect
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|ports| ports.get(&format!("{AGENT_PORT}/tcp")).cloned().flatten())
        .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
        .and_then(|p| p.parse().ok());
    ContainerInfo {
        id: inspect.id.unwrap_or_default(),
        name: inspect.name.unwrap_or_default().trim_start_matches('/').to_string(),
        running,
        agent_port: if running { agent_port } else { None },
        exit_code: if running { None } else { state.exit_code },
    }
}

#[async_trait::async_trait]
impl RuntimeProvider for DockerRuntime {
    async fn prepull(&self, image: &str) -> Result<(), RuntimeError> {
        self.ensure_image(image).await
    }

    async fn ensure(&self, spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        let name = spec.name();
        // Containers of other generations are left-overs: a session has one container.
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&Self::session_filter(&spec.session_id))
            .build();
        let existing = self.docker.list_containers(Some(opts)).await.map_err(classify)?;
        for c in existing {
            let this =
                c.names.unwrap_or_default().iter().any(|n| n.trim_start_matches('/') == name);
            if !this && let Some(id) = c.id {
                let rm = RemoveContainerOptionsBuilder::new().force(true).build();
                if let Err(e) = self.docker.remove_container(&id, Some(rm)).await
                    && !is_not_found(&e)
                {
                    return Err(classify(e));
                }
            }
        }
        if let Some(info) = self.inspect(&name).await? {
            return Ok(info);
        }
        if !self.settings.agent_path.is_file() {
            return Err(RuntimeError::Permanent(format!(
                "the session agent is missing at {} (node.agent_path); build it with `make agent`",
                self.settings.agent_path.display()
            )));
        }
        self.ensure_image(&spec.image).await?;
        let data = self.settings.data_dir.join(&spec.session_id);
        std::fs::create_dir_all(&data).map_err(|e| {
            RuntimeError::Transient(format!(
                "creating the session directory {}: {e}",
                data.display()
            ))
        })?;
        let agent = self.settings.agent_path.canonicalize().map_err(|e| {
            RuntimeError::Permanent(format!(
                "the agent at {}: {e}",
                self.settings.agent_path.display()
            ))
        })?;
        let mut bindings = HashMap::new();
        let mut exposed = Vec::new();
        for port in std::iter::once(AGENT_PORT).chain(spec.ports.iter().copied()) {
            let key = format!("{port}/tcp");
            exposed.push(key.clone());
            bindings.insert(
                key,
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            );
        }
        let mut labels = HashMap::new();
        labels.insert(LABEL_SESSION.to_string(), spec.session_id.clone());
        labels.insert(LABEL_WORKSPACE.to_string(), spec.workspace_id.clone());
        labels.insert(LABEL_GENERATION.to_string(), spec.generation.to_string());
        // The image's own command runs under the agent.
        let image = self.docker.inspect_image(&spec.image).await.map_err(classify)?;
        let cmd = image.config.and_then(|c| c.cmd).unwrap_or_default();
        let mut entrypoint = vec![AGENT_MOUNT.to_string(), "supervise".into(), "--".into()];
        entrypoint.extend(cmd);
        let memory = i64::from(spec.memory_mb) * 1024 * 1024;
        let mut env: Vec<String> = spec
            .env
            .iter()
            .filter(|(k, _)| {
                !matches!(k.as_str(), "BURSTFLARE_AGENT_TOKEN" | "BURSTFLARE_HOST_KEY")
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.extend(agent_env(&self.settings.runtime_secret, spec)?);
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(entrypoint),
            cmd: Some(vec![]),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: Some(exposed),
            hostname: Some(format!("bf-{}", &spec.session_id[..spec.session_id.len().min(12)])),
            host_config: Some(HostConfig {
                binds: Some(vec![
                    format!("{}:{AGENT_MOUNT}:ro", agent.display()),
                    format!("{}:{DATA_MOUNT}:rw", data.display()),
                ]),
                port_bindings: Some(bindings),
                nano_cpus: Some(i64::from(spec.cpu_millis) * 1_000_000),
                memory: Some(memory),
                memory_swap: Some(memory),
                pids_limit: Some(spec.pids_limit),
                privileged: Some(false),
                init: Some(false),
                cap_drop: Some(vec!["NET_RAW".into(), "SYS_ADMIN".into(), "SYS_MODULE".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(_) => {}
            // Created by a concurrent or earlier attempt between our inspect and create.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {}
            Err(e) => return Err(classify(e)),
        }
        self.inspect(&name)
            .await?
            .ok_or_else(|| RuntimeError::Transient(format!("{name} vanished after creation")))
    }

    async fn start(&self, name: &str) -> Result<ContainerInfo, RuntimeError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => {}
            // 304: already running.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
            Err(e) => return Err(classify(e)),
        }
        self.inspect(name)
            .await?
            .ok_or_else(|| RuntimeError::Transient(format!("{name} vanished after start")))
    }

    async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        match self.docker.inspect_container(name, None).await {
            Ok(i) => Ok(Some(info_from(i))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    async fn exec(
        &self,
        name: &str,
        command: &str,
        timeout: Duration,
    ) -> Result<i64, RuntimeError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let exec = self
            .docker
            .create_exec(
                name,
                CreateExecOptions {
                    cmd: Some(vec!["sh".to_string(), "-c".to_string(), command.to_string()]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(classify)?;
        let run = async {
            if let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, None).await.map_err(classify)?
            {
                while output.next().await.is_some() {}
            }
            let done = self.docker.inspect_exec(&exec.id).await.map_err(classify)?;
            Ok::<_, RuntimeError>(done.exit_code.unwrap_or(-1))
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Permanent(format!(
                "`{command}` did not finish within {} s",
                timeout.as_secs()
            ))),
        }
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        let secs = i32::try_from(grace.as_secs()).unwrap_or(30);
        let opts = StopContainerOptionsBuilder::new().t(secs).build();
        match self.docker.stop_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    async fn remove_all(&self, session_id: &str) -> Result<u32, RuntimeError> {
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&Self::session_filter(session_id))
            .build();
        let list = self.docker.list_containers(Some(opts)).await.map_err(classify)?;
        let mut removed = 0;
        for c in list {
            let Some(id) = c.id else { continue };
            let rm = RemoveContainerOptionsBuilder::new().force(true).build();
            match self.docker.remove_container(&id, Some(rm)).await {
                Ok(()) => removed += 1,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(classify(e)),
            }
        }
        Ok(removed)
    }

    async fn logs_tail(&self, name: &str, lines: usize) -> String {
        use bollard::query_parameters::LogsOptionsBuilder;
        let opts =
            LogsOptionsBuilder::new().stdout(true).stderr(true).tail(&lines.to_string()).build();
        let mut out = String::new();
        let mut stream = self.docker.logs(name, Some(opts));
        while let Some(Ok(chunk)) = stream.next().await {
            out.push_str(&chunk.to_string());
        }
        out
    }
}
