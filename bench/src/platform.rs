//! The whole platform for the platform benchmarks: the `burstflare dev` stack (`DevStack`, the
//! one `burstflare dev` and the integration tests run) in this process with the API on
//! 127.0.0.1, a bootstrapped owner with an API token, the sample template (`devbox`, built FROM
//! `burstflare/base`) uploaded and built, and `flare` (release build) signed in through
//! `FLARE_TOKEN` with its own key registered and host keys pinned.
//!
//! Everything the benchmarks start is labelled and removed by [`Cleanup`] when the platform
//! goes, even on failure: session containers carry `burstflare.workspace=<the bench
//! workspace>`, floor containers `burstflare.bench=<this run>`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::io::AsyncReadExt;

use burstflare_api::dev::DevStack;
use burstflare_api::{AppState, http};

use crate::wsio;

/// The template every platform benchmark starts sessions from.
pub const TEMPLATE: &str = "bench";
/// The user shells run as in the sample template.
pub const SESSION_USER: &str = "dev";

/// What the platform needs from the command line.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    pub repo: PathBuf,
    pub work_dir: PathBuf,
    /// The `flare` binary (target/release/flare).
    pub flare: PathBuf,
}

/// A session's container as `docker inspect` sees it.
#[derive(Debug, Clone)]
pub struct ContainerFacts {
    pub name: String,
    pub generation: u64,
    /// Host PID of its PID 1: the agent.
    pub pid: u32,
    pub image: String,
    /// The agent's port published on 127.0.0.1.
    pub port: u16,
}

/// How to reach an agent without the API and the node tunnel: its published port, its agent
/// token and its host key, pinned under `alias` in `known_hosts`.
#[derive(Debug, Clone)]
pub struct Direct {
    pub port: u16,
    pub token: String,
    pub alias: String,
    pub known_hosts: PathBuf,
}

/// Removes every container carrying one of its labels when dropped.
pub struct Cleanup {
    labels: Vec<String>,
}

impl Cleanup {
    pub fn new() -> Self {
        Cleanup { labels: Vec::new() }
    }

    pub fn add_label(&mut self, label: String) {
        self.labels.push(label);
    }

    /// Removes the containers now (also done on drop).
    pub fn run(&self) {
        for label in &self.labels {
            remove_labelled(label);
        }
    }
}

impl Default for Cleanup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.run();
    }
}

/// `docker rm -f` of every container with `label` (key=value).
pub fn remove_labelled(label: &str) {
    let Ok(out) = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()
    else {
        return;
    };
    let ids: Vec<String> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
    if ids.is_empty() {
        return;
    }
    let _ = std::process::Command::new("docker")
        .arg("rm")
        .arg("-f")
        .args(&ids)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub struct Platform {
    pub base: String,
    /// The owner's client (API token).
    pub client: sdk::Client,
    /// Workspace slug and id.
    pub ws: String,
    pub ws_id: String,
    pub token: String,
    pub store: domain::Store,
    /// The object store the stack's snapshots go to.
    pub blob: domain::blob::BlobStore,
    pub temporal: temporalio_client::Client,
    pub task_queue: String,
    pub secret: Vec<u8>,
    pub agent_path: PathBuf,
    pub flare: PathBuf,
    /// This binary (the `__ws-stdio` ProxyCommand of the direct paths).
    pub bench_exe: PathBuf,
    /// HOME and flare's configuration directory (`home/flare`).
    pub home: PathBuf,
    /// Scratch space for the benchmarks (removed with the platform).
    pub scratch: PathBuf,
    /// The template's image, as its sessions run it.
    pub image: String,
    /// The Temporal dev server's PID (for its RSS).
    pub temporal_pid: Option<u32>,
    /// Labels floor containers get (and Cleanup removes).
    pub floor_label: String,
    pub cleanup: Cleanup,
    stack: Option<DevStack>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub async fn start(opts: &PlatformOptions) -> anyhow::Result<Platform> {
        anyhow::ensure!(
            opts.flare.is_file(),
            "flare is missing at {}: build it with `cargo build --release -p burstflare-cli` \
             (make bench does) or pass --flare",
            opts.flare.display()
        );
        let started = Instant::now();
        std::fs::create_dir_all(&opts.work_dir)?;
        let dir =
            tempfile::Builder::new().prefix("burstflare-bench-").tempdir_in(&opts.work_dir)?;
        let data = dir.path().join("dev");
        let (stack, listener) = DevStack::start_with(&data, 0, |_| {})
            .await
            .context("starting the dev stack (DevStack, as `burstflare dev`)")?;
        let addr = listener.local_addr()?;
        anyhow::ensure!(addr.ip().is_loopback(), "the API listens on {addr}, not loopback");
        let state = AppState::new(stack.config.clone(), stack.store.clone())?;
        let server = tokio::spawn(async move {
            let _ = http::serve(listener, http::router(state), std::future::pending()).await;
        });
        let base = format!("http://{addr}");
        let store = stack.store.clone();
        let boot =
            burstflare_api::bootstrap::run(&store, "bench@example.com", Some("Bench"), false, 30)
                .await?;
        let client = sdk::Client::new(&base)?.with_token(boot.token.clone());
        let slug = domain::ids::Slug::parse(&boot.workspace)?;
        let ws = store.workspace_by_slug(&slug).await?.context("the bench workspace")?;
        let ws_id = ws.id.to_string();
        // The benchmarks run many sessions at once: lift the free plan's limits here.
        sqlx::query(
            "INSERT INTO quotas (workspace_id, plan_id, overrides_json, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&ws_id)
        .bind(domain::store::FREE_PLAN_ID)
        .bind(r#"{"max_running_sessions":null,"max_sessions":null}"#)
        .bind(domain::store::now_ms())
        .execute(store.pool())
        .await
        .context("lifting the workspace's session limits")?;

        let mut cleanup = Cleanup::new();
        cleanup.add_label(format!("{}={ws_id}", activities::runtime::LABEL_WORKSPACE));
        let floor_label = format!("burstflare.bench={}", uuid::Uuid::now_v7());
        cleanup.add_label(floor_label.clone());

        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("flare"))?;
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch)?;
        let temporal_pid = find_pid_with_arg(&data.canonicalize()?.join("temporal/temporal.db"));
        let mut p = Platform {
            base,
            client,
            ws: boot.workspace.clone(),
            ws_id,
            token: boot.token.clone(),
            store,
            blob: domain::blob::BlobStore::new(&stack.config.storage),
            temporal: stack.temporal.clone(),
            task_queue: stack.config.temporal.task_queue.clone(),
            secret: stack.config.runtime.secret.expose_secret().as_bytes().to_vec(),
            agent_path: stack.config.node.agent_path.clone(),
            flare: opts.flare.clone(),
            bench_exe: std::env::current_exe()?,
            home,
            scratch,
            image: String::new(),
            temporal_pid,
            floor_label,
            cleanup,
            stack: Some(stack),
            server,
            _dir: dir,
        };
        eprintln!("burstflare-bench: dev stack up at {} ({:.1} s)", p.base, secs(started));
        p.upload_template(&opts.repo).await?;
        eprintln!("burstflare-bench: template {TEMPLATE} built ({:.1} s)", secs(started));
        // A first session: learns the image its containers run, makes flare's key, registers
        // it and pins a host key, and warms the image and page caches for everyone after.
        let warm = p.create_session("warm").await?;
        let facts = p.container_of(&warm.id).await?;
        p.image = facts.image;
        let mut cmd = p.flare_cmd(&["ssh", "warm", "--", "true"]);
        let out = run_output(&mut cmd, Duration::from_secs(120)).await?;
        anyhow::ensure!(out.status.success(), "flare ssh warm: {}", stderr_of(&out));
        p.delete_session(&warm.id).await?;
        eprintln!("burstflare-bench: platform ready, image {} ({:.1} s)", p.image, secs(started));
        Ok(p)
    }

    /// Removes every container this run made, then stops the stack.
    pub async fn stop(mut self) {
        self.cleanup.run();
        self.server.abort();
        if let Some(stack) = self.stack.take() {
            stack.stop().await;
        }
    }

    /// The owner's process RSS: this process holds the API, the control, node and build
    /// workers and the embedded S3 server, as `burstflare dev` does.
    pub fn control_plane_pids(&self) -> Vec<(String, u32)> {
        let mut pids = vec![("API + workers + S3 (this process)".to_string(), std::process::id())];
        if let Some(pid) = self.temporal_pid {
            pids.push(("Temporal dev server".to_string(), pid));
        }
        pids
    }

    /// Uploads deploy/templates/devbox as [`TEMPLATE`] and waits for its build.
    async fn upload_template(&self, repo: &Path) -> anyhow::Result<()> {
        let dir = self.scratch.join("template");
        std::fs::create_dir_all(&dir)?;
        let sample = repo.join("deploy/templates/devbox");
        for entry in
            std::fs::read_dir(&sample).with_context(|| format!("reading {}", sample.display()))?
        {
            let entry = entry?;
            std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
        }
        let manifest = std::fs::read_to_string(dir.join("burstflare.toml"))?;
        std::fs::write(
            dir.join("burstflare.toml"),
            manifest.replace("name = \"devbox\"", &format!("name = \"{TEMPLATE}\"")),
        )?;
        let packed = sdk::bundle::pack(&dir, &sdk::bundle::Limits::default())?;
        let body = sdk::CreateVersion {
            size: packed.size,
            sha256: packed.sha256.clone(),
            create_template: true,
            description: String::new(),
        };
        let ticket = self.client.create_version(&self.ws, TEMPLATE, &body).await?;
        let mut req = reqwest::Client::new().put(&ticket.upload_url);
        for (k, v) in &ticket.headers {
            if !k.eq_ignore_ascii_case("content-length") {
                req = req.header(k, v);
            }
        }
        let put = req.body(packed.bytes).send().await?;
        anyhow::ensure!(put.status().is_success(), "uploading the bundle: {}", put.status());
        let confirmed =
            self.client.confirm_version(&self.ws, TEMPLATE, &ticket.version.version).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let b = self.client.build(&self.ws, &confirmed.build.id).await?;
            if b.status == "succeeded" {
                return Ok(());
            }
            anyhow::ensure!(!sdk::build_is_final(&b.status), "build {}: {:?}", b.status, b.error);
            anyhow::ensure!(Instant::now() < deadline, "the build is still {}", b.status);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Creates a session of [`TEMPLATE`] through the API and waits until it runs.
    pub async fn create_session(&self, name: &str) -> anyhow::Result<sdk::SessionDetail> {
        let body = sdk::CreateSession {
            template: TEMPLATE.into(),
            version: None,
            name: Some(name.into()),
            idempotency_key: None,
        };
        let s = self.client.create_session(&self.ws, &body, true).await?;
        anyhow::ensure!(s.state == "running", "session {name} is {}: {:?}", s.state, s.error);
        Ok(s)
    }

    /// Deletes a session and waits until it is gone.
    pub async fn delete_session(&self, id: &str) -> anyhow::Result<()> {
        self.client.delete_session(&self.ws, id, true).await?;
        Ok(())
    }

    /// `flare ARGS` signed in as the owner, in this platform's workspace, with its own HOME.
    pub fn flare_cmd(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.flare);
        self.flare_env(&mut cmd);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    fn flare_env(&self, cmd: &mut tokio::process::Command) {
        cmd.env("FLARE_CONFIG_DIR", self.home.join("flare"))
            .env("FLARE_TOKEN", &self.token)
            .env("FLARE_SERVER", &self.base)
            .env("FLARE_WORKSPACE", &self.ws)
            .env("HOME", &self.home)
            .env_remove("FLARE_PROFILE")
            .kill_on_drop(true);
    }

    /// flare's own key (made and registered by the first `flare ssh`).
    pub fn key(&self) -> PathBuf {
        self.home.join("flare/ssh/id_ed25519")
    }

    /// `program` (ssh or scp) with the options `flare ssh` gives ssh (cli/src/ssh/args.rs), its
    /// ProxyCommand `flare ssh --stdio SESSION`: the path through the API and the node tunnel.
    /// The session's host key must have been pinned (one `flare ssh SESSION` does it).
    pub fn ssh_ours(&self, program: &str, session: &str) -> tokio::process::Command {
        let alias = sdk::ssh_host_alias(session, &self.ws);
        let mut cmd = tokio::process::Command::new(program);
        self.flare_env(&mut cmd);
        let proxy = format!("{} ssh --stdio {session}", self.flare.display());
        let known = self.home.join("flare/ssh/known_hosts");
        add_ssh_options(&mut cmd, &proxy, &self.key(), &known, &alias);
        cmd
    }

    /// `program` (ssh or scp) with the same options, its ProxyCommand the bench's own bridge
    /// straight to the agent's published port.
    pub fn ssh_direct(&self, program: &str, d: &Direct) -> anyhow::Result<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.kill_on_drop(true)
            .env(wsio::TOKEN_ENV, &d.token)
            .env(wsio::KEYS_ENV, self.authorized_keys()?);
        let proxy =
            format!("{} {} ws://127.0.0.1:{}/ssh", self.bench_exe.display(), wsio::ARG, d.port);
        add_ssh_options(&mut cmd, &proxy, &self.key(), &d.known_hosts, &d.alias);
        Ok(cmd)
    }

    /// flare's public key, base64 as the agent's X-BurstFlare-Authorized-Keys wants it.
    pub fn authorized_keys(&self) -> anyhow::Result<String> {
        use base64::Engine as _;
        let public = std::fs::read_to_string(self.key().with_extension("pub"))
            .context("flare's public key (made by the first flare ssh)")?;
        Ok(base64::engine::general_purpose::STANDARD.encode(public.trim()))
    }

    /// The running container of a session.
    pub async fn container_of(&self, session_id: &str) -> anyhow::Result<ContainerFacts> {
        let label = format!("{}={session_id}", activities::runtime::LABEL_SESSION);
        let out = docker(&["ps", "-q", "--filter", &format!("label={label}")]).await?;
        let id = out.split_whitespace().next().context("the session has no running container")?;
        inspect(id).await
    }

    /// Direct access to a session's agent: its port, the token the node tunnel would send, and
    /// its host key pinned in a known_hosts file of its own.
    pub async fn direct_to_session(&self, session_id: &str) -> anyhow::Result<Direct> {
        let c = self.container_of(session_id).await?;
        let token = domain::connect::agent_token(&self.secret, session_id, c.generation);
        let alias = format!("direct-{session_id}");
        let known_hosts = self.pin_host_key(session_id, &alias)?;
        Ok(Direct { port: c.port, token, alias, known_hosts })
    }

    /// Writes a known_hosts file pinning the host key derived for `seed` under `alias`.
    pub fn pin_host_key(&self, seed: &str, alias: &str) -> anyhow::Result<PathBuf> {
        let key = domain::connect::host_key(&self.secret, seed).map_err(anyhow::Error::msg)?;
        let path = self.scratch.join(format!("known_hosts-{alias}"));
        let mut words = key.public_openssh.split_whitespace();
        let (kind, data) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
        std::fs::write(&path, format!("{alias} {kind} {data}\n"))?;
        Ok(path)
    }

    /// The session's env as its container has it, without the agent's secrets.
    pub async fn session_env(&self, container: &str) -> anyhow::Result<Vec<String>> {
        let out = docker(&["inspect", "-f", "{{json .Config.Env}}", container]).await?;
        let env: Vec<String> = serde_json::from_str(out.trim())?;
        Ok(env
            .into_iter()
            .filter(|e| {
                !e.starts_with("BURSTFLARE_AGENT_TOKEN=") && !e.starts_with("BURSTFLARE_HOST_KEY=")
            })
            .collect())
    }

    /// `docker run` (or `docker create` with `create`) arguments of a floor container: the
    /// sessions' image with the same agent bind-mounted read-only as its entrypoint, its port
    /// published on 127.0.0.1 only, the session's env, limits and security options
    /// (activities/src/runtime.rs), and a token and host key of its own.
    pub fn floor_container_args(&self, f: &FloorContainer<'_>) -> anyhow::Result<Vec<String>> {
        let key = domain::connect::host_key(&self.secret, f.seed).map_err(anyhow::Error::msg)?;
        let token = domain::connect::agent_token(&self.secret, f.seed, 1);
        let agent = self.agent_path.canonicalize()?;
        let mut a: Vec<String> = vec![
            "--name".into(),
            f.name.into(),
            "--label".into(),
            self.floor_label.clone(),
            "-p".into(),
            format!("127.0.0.1:{}:{}", f.port, activities::runtime::AGENT_PORT),
            "-v".into(),
            format!("{}:{}:ro", agent.display(), activities::runtime::AGENT_MOUNT),
            "-v".into(),
            format!("{}:{}:rw", f.data.display(), activities::runtime::DATA_MOUNT),
            "--cpus".into(),
            "2".into(),
            "--memory".into(),
            "2048m".into(),
            "--memory-swap".into(),
            "2048m".into(),
            "--pids-limit".into(),
            "4096".into(),
            "--cap-drop".into(),
            "NET_RAW".into(),
            "--cap-drop".into(),
            "SYS_ADMIN".into(),
            "--cap-drop".into(),
            "SYS_MODULE".into(),
            "--security-opt".into(),
            "no-new-privileges".into(),
            "--hostname".into(),
            "bf-floor".into(),
        ];
        for (from, to) in f.mounts {
            a.push("-v".into());
            a.push(format!("{}:{to}", from.display()));
        }
        for e in f.env {
            a.push("-e".into());
            a.push(e.clone());
        }
        a.push("-e".into());
        a.push(format!("BURSTFLARE_AGENT_TOKEN={token}"));
        a.push("-e".into());
        a.push(format!("BURSTFLARE_HOST_KEY={}", key.private_openssh));
        a.push("--entrypoint".into());
        a.push(activities::runtime::AGENT_MOUNT.into());
        a.push(self.image.clone());
        a.extend(["supervise".into(), "--".into(), "/bin/bash".into()]);
        Ok(a)
    }

    /// Direct access to a floor container made with [`Platform::floor_container_args`].
    pub fn direct_to_floor(&self, f: &FloorContainer<'_>) -> anyhow::Result<Direct> {
        let alias = format!("floor-{}", f.seed);
        let known_hosts = self.pin_host_key(f.seed, &alias)?;
        Ok(Direct {
            port: f.port,
            token: domain::connect::agent_token(&self.secret, f.seed, 1),
            alias,
            known_hosts,
        })
    }
}

/// A floor container: name, the seed of its token and host key, its published port, the
/// directory mounted as the session data dir, extra bind mounts and its env.
pub struct FloorContainer<'a> {
    pub name: &'a str,
    pub seed: &'a str,
    pub port: u16,
    pub data: &'a Path,
    pub mounts: &'a [(PathBuf, String)],
    pub env: &'a [String],
}

/// The options `flare ssh` gives ssh (cli/src/ssh/args.rs), plus BatchMode.
fn add_ssh_options(
    cmd: &mut tokio::process::Command,
    proxy: &str,
    key: &Path,
    known_hosts: &Path,
    alias: &str,
) {
    for o in [
        format!("ProxyCommand={proxy}"),
        format!("IdentityFile={}", key.display()),
        "IdentitiesOnly=yes".into(),
        "ServerAliveInterval=15".into(),
        "ServerAliveCountMax=3".into(),
        "StrictHostKeyChecking=yes".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        format!("HostKeyAlias={alias}"),
        "BatchMode=yes".into(),
        format!("User={SESSION_USER}"),
    ] {
        cmd.arg("-o").arg(o);
    }
}

/// `docker ARGS`: its stdout, or an error with its stderr.
pub async fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running docker")?;
    anyhow::ensure!(out.status.success(), "docker {}: {}", args.join(" "), stderr_of(&out));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `docker` with owned arguments.
pub async fn docker_owned(args: &[String]) -> anyhow::Result<String> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&refs).await
}

pub async fn inspect(container: &str) -> anyhow::Result<ContainerFacts> {
    let format = "{{.Name}}|{{index .Config.Labels \"burstflare.generation\"}}|{{.State.Pid}}|{{.Config.Image}}|{{range $p, $b := .NetworkSettings.Ports}}{{if eq $p \"7070/tcp\"}}{{range $b}}{{.HostIp}}:{{.HostPort}}{{end}}{{end}}{{end}}";
    let out = docker(&["inspect", "-f", format, container]).await?;
    let parts: Vec<&str> = out.trim().split('|').collect();
    anyhow::ensure!(parts.len() == 5, "unexpected docker inspect output {out:?}");
    let (ip, port) = parts[4].rsplit_once(':').context("the agent port is not published")?;
    anyhow::ensure!(ip == "127.0.0.1", "the agent port is published on {ip}, not 127.0.0.1");
    Ok(ContainerFacts {
        name: parts[0].trim_start_matches('/').to_string(),
        generation: parts[1].parse().unwrap_or(1),
        pid: parts[2].parse()?,
        image: parts[3].to_string(),
        port: port.parse()?,
    })
}

pub fn stderr_of(out: &std::process::Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = e.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

pub fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

/// Runs a command to its end within `limit`.
pub async fn run_output(
    cmd: &mut tokio::process::Command,
    limit: Duration,
) -> anyhow::Result<std::process::Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {limit:?}: {cmd:?}"))?
        .context("running a command")
}

/// Spawns `cmd` and returns the seconds until `needle` appeared on its stdout, after checking
/// that it then exits 0 (within `limit` overall).
pub async fn time_to_output(
    cmd: &mut tokio::process::Command,
    needle: &[u8],
    limit: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawning")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let found = tokio::time::timeout(limit, async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stdout.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(None);
            }
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(needle.len()).any(|w| w == needle) {
                return Ok(Some(started.elapsed().as_secs_f64()));
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no output within {limit:?}: {cmd:?}"))??;
    let status = tokio::time::timeout(limit, child.wait()).await.context("waiting")??;
    let err = err_task.await.unwrap_or_default();
    match found {
        Some(t) if status.success() => Ok(t),
        _ => anyhow::bail!(
            "{cmd:?} exited {status} without {:?}: {}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&err).trim()
        ),
    }
}

/// VmRSS of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The cgroup memory.current of a process's cgroup (v2), in bytes.
pub fn cgroup_memory(pid: u32) -> Option<u64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?;
    let v = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.current")).ok()?;
    v.trim().parse().ok()
}

/// The PID of the process whose command line has `arg` (the Temporal dev server's database).
fn find_pid_with_arg(arg: &Path) -> Option<u32> {
    let want = arg.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").ok()? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|a| a == want.as_bytes()) {
            return Some(pid);
        }
    }
    None
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Polls the agent's `/ready` on 127.0.0.1:`port` every 5 ms until it answers 200.
pub async fn wait_agent_ready(http: &reqwest::Client, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/ready")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the agent on port {port} was not ready in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}
