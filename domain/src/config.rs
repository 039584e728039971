//! Configuration: one TOML file plus `BURSTFLARE_*` environment overrides.
//!
//! Nested keys use a double underscore in the environment: `BURSTFLARE_DATABASE__URL`
//! overrides `[database] url`. Every field has a default that suits `burstflare dev`;
//! production sets at least `public_url`, `database.url`, `storage.*` and `temporal.*`.
//! Secrets are `SecretString` and never printed: `Config::redacted()` is what may be shown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist; create it or leave out --config")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Parse(String),
    #[error("invalid configuration: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The URL people and the CLI use to reach this installation; it is also the WebAuthn
    /// origin. Example: `public_url = "https://burstflare.example.com"`.
    pub public_url: url::Url,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub storage: StorageConfig,
    pub temporal: TemporalConfig,
    pub registry: RegistryConfig,
    pub docker: DockerConfig,
    pub node: NodeConfig,
    pub build: BuildConfig,
    pub runtime: RuntimeConfig,
    pub snapshots: SnapshotsConfig,
    pub promotion: PromotionConfig,
    pub cloudflare: CloudflareConfig,
    pub turnstile: TurnstileConfig,
    pub auth: AuthConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the API listens on. Example: `listen = "127.0.0.1:8080"`.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://USER:PASSWORD@HOST:PORT/DB`. Secret, because
    /// a PostgreSQL URL carries a password. Example: `url = "postgres://bf:…@db:5432/burstflare"`.
    #[serde(serialize_with = "ser_secret")]
    pub url: SecretString,
    /// Upper bound of pooled connections. Example: `max_connections = 20`.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// S3 API endpoint. Example: `endpoint = "https://<account>.r2.cloudflarestorage.com"`.
    pub endpoint: url::Url,
    /// Bucket holding template bundles, build logs and snapshots. Example: `bucket = "burstflare"`.
    pub bucket: String,
    /// Signing region; `auto` for R2. Example: `region = "us-east-1"`.
    pub region: String,
    /// Access key id. Example: `access_key_id = "AKIA…"`.
    pub access_key_id: String,
    /// Secret access key. Example: `secret_access_key = "…"` (or `BURSTFLARE_STORAGE__SECRET_ACCESS_KEY`).
    #[serde(serialize_with = "ser_secret")]
    pub secret_access_key: SecretString,
    /// Path-style addressing (`endpoint/bucket/key`), needed by MinIO, Garage and the dev server.
    pub force_path_style: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TemporalConfig {
    /// Temporal frontend gRPC address. Example: `address = "http://temporal:7233"`.
    pub address: url::Url,
    /// Namespace of every BurstFlare workflow. Example: `namespace = "burstflare"`.
    pub namespace: String,
    /// Task queue of the control-plane worker. Example: `task_queue = "burstflare-control"`.
    pub task_queue: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// OCI registry (distribution HTTP API) for built template images.
    /// Example: `url = "http://127.0.0.1:5000"`.
    pub url: url::Url,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// Docker engine socket. Example: `socket = "/var/run/docker.sock"`.
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Id of this runtime host; `burstflare node` polls the task queue `node-<id>`.
    /// Example: `id = "host-a"`.
    pub id: String,
    /// The static session agent binary, mounted read-only into every session container.
    /// Example: `agent_path = "/usr/lib/burstflare/burstflare-agent"`.
    pub agent_path: PathBuf,
    /// Whether `burstflare dev` runs this node's worker in-process. Example: `in_process = true`.
    pub in_process: bool,
    /// Where session data directories live on this host (one per session).
    /// Example: `data_dir = "/var/lib/burstflare/sessions"`.
    pub data_dir: PathBuf,
    /// Where this node's tunnel listens: the API reaches session agents on this host through it
    /// (SSH and terminal WebSockets). Keep it on loopback or a private network.
    /// Example: `tunnel_listen = "10.0.0.5:7443"` (default `127.0.0.1:0`: any free port).
    pub tunnel_listen: SocketAddr,
    /// The tunnel's URL as the API should reach it, published in the node's heartbeat; default:
    /// `http://<tunnel_listen's bound address>`. Example: `tunnel_url = "http://host-a.internal:7443"`.
    pub tunnel_url: Option<url::Url>,
}

/// Connecting to sessions (docs/ssh.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Shared by the API and every node: agent tokens and session host keys are derived from it
    /// (HMAC-SHA256), so it must be the same everywhere, at least 32 characters, and secret.
    /// Changing it changes every session's host key. `burstflare dev` generates one.
    /// Example: `secret = "…64 hex characters…"` (or `BURSTFLARE_RUNTIME__SECRET`).
    #[serde(serialize_with = "ser_secret")]
    pub secret: SecretString,
    /// Lifetime of a runtime token (and of each renewal), in seconds.
    /// Example: `token_ttl_secs = 300`.
    pub token_ttl_secs: u64,
    /// How often a live SSH or terminal connection re-checks its access (token, membership,
    /// role, session state), in milliseconds. Example: `recheck_ms = 1000`.
    pub recheck_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { secret: SecretString::from(String::new()), token_ttl_secs: 300, recheck_ms: 1000 }
    }
}

/// Snapshots of sessions' persisted paths (docs/snapshots.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Verified snapshots kept per session; older ones are retired. The session's latest
    /// snapshot is always kept. Example: `keep = 5`.
    pub keep: u32,
    /// Failed snapshots kept per session, for the record. Example: `keep_failed = 3`.
    pub keep_failed: u32,
    /// Least time between two manual snapshots ("Save now") of one session, in seconds.
    /// Example: `min_interval_secs = 60`.
    pub min_interval_secs: u64,
    /// Largest snapshot, in bytes of file content, when neither the plan
    /// (`max_snapshot_bytes`) nor the template (`max_snapshot_bytes`) sets a smaller one.
    /// Example: `max_bytes = 10737418240`.
    pub max_bytes: u64,
    /// Chunks no snapshot refers to are deleted once they are older than this, in seconds;
    /// it must be longer than any snapshot takes (at least 7200: twice the one-hour upload
    /// limit). Example: `gc_grace_secs = 86400`.
    pub gc_grace_secs: u64,
}

impl Default for SnapshotsConfig {
    fn default() -> Self {
        Self {
            keep: 5,
            keep_failed: 3,
            min_interval_secs: 60,
            max_bytes: 10 * 1024 * 1024 * 1024,
            gc_grace_secs: 86_400,
        }
    }
}

/// Template promotion (docs/catalog.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromotionConfig {
    /// How long a promotion waits for approval (when the workspace requires it) before it is
    /// cancelled, in seconds (10..=2592000). Example: `approval_timeout_secs = 86400`.
    pub approval_timeout_secs: u64,
}

impl Default for PromotionConfig {
    fn default() -> Self {
        Self { approval_timeout_secs: 86_400 }
    }
}

/// The Cloudflare runtime target (docs/catalog.md). Every catalog change renders and checks its
/// Wrangler bundle in `bundle_dir` when that is set; it is deployed only when `account_id` and
/// `api_token` are set too.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudflareConfig {
    /// Where the Wrangler project is written and kept between deploys (its migrations are the
    /// deployment's history); empty: the Cloudflare target is off.
    /// Example: `bundle_dir = "/var/lib/burstflare/cloudflare"`.
    pub bundle_dir: Option<PathBuf>,
    /// The Worker's name. Example: `worker_name = "burstflare"`.
    pub worker_name: String,
    /// The Cloudflare account (32 hex characters) (or `BURSTFLARE_CLOUDFLARE__ACCOUNT_ID`).
    pub account_id: Option<String>,
    /// An API token allowed to edit Workers scripts and Containers
    /// (or `BURSTFLARE_CLOUDFLARE__API_TOKEN`).
    #[serde(serialize_with = "ser_secret")]
    pub api_token: SecretString,
    /// Most container instances per template (1..=1000). Example: `max_instances = 10`.
    pub max_instances: u32,
    /// The directory holding the pinned wrangler (`node_modules/.bin/wrangler`).
    /// Example: `wrangler_dir = "/opt/burstflare/deploy/cloudflare"`.
    pub wrangler_dir: PathBuf,
}

impl Default for CloudflareConfig {
    fn default() -> Self {
        Self {
            bundle_dir: None,
            worker_name: "burstflare".into(),
            account_id: None,
            api_token: SecretString::from(String::new()),
            max_instances: 10,
            wrangler_dir: PathBuf::from("deploy/cloudflare"),
        }
    }
}

impl CloudflareConfig {
    /// Whether a catalog change is deployed to Cloudflare (not only rendered and checked).
    pub fn deploys(&self) -> bool {
        self.bundle_dir.is_some()
            && self.account_id.is_some()
            && !self.api_token.expose_secret().is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildConfig {
    /// Task queue of the builder activities (`burstflare builder`). Example: `task_queue = "build"`.
    pub task_queue: String,
    /// Whether `burstflare dev` runs a builder in-process. Example: `in_process = true`.
    pub in_process: bool,
    /// Wall-clock limit of one image build, in minutes. Example: `timeout_minutes = 30`.
    pub timeout_minutes: u64,
    /// CPU limit of a build, in thousandths of a CPU. Example: `cpu_millis = 2000`.
    pub cpu_millis: u64,
    /// Memory limit of a build's containers, in MiB (at most 2047: the engine API takes a
    /// 32-bit byte count). Example: `memory_mb = 2000`.
    pub memory_mb: u64,
    /// Docker network of `RUN` steps: `none` (no network, the default) or `default`/`bridge`
    /// to let builds fetch packages. Example: `network = "none"`.
    pub network: String,
    /// Largest accepted bundle (compressed), in MiB. Example: `max_bundle_mb = 64`.
    pub max_bundle_mb: u64,
    /// Largest accepted bundle content (uncompressed), in MiB. Example: `max_content_mb = 512`.
    pub max_content_mb: u64,
    /// Most files a bundle may hold. Example: `max_files = 20000`.
    pub max_files: u64,
    /// How long a presigned bundle upload URL stays valid, in minutes. Example: `upload_url_minutes = 15`.
    pub upload_url_minutes: u64,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            task_queue: "build".into(),
            in_process: true,
            timeout_minutes: 30,
            cpu_millis: 2000,
            memory_mb: 2000,
            network: "none".into(),
            max_bundle_mb: 64,
            max_content_mb: 512,
            max_files: 20_000,
            upload_url_minutes: 15,
        }
    }
}

impl BuildConfig {
    /// The bundle limits these settings describe.
    pub fn limits(&self) -> sdk::bundle::Limits {
        sdk::bundle::Limits {
            max_bundle_bytes: self.max_bundle_mb.saturating_mul(1024 * 1024),
            max_content_bytes: self.max_content_mb.saturating_mul(1024 * 1024),
            max_files: self.max_files,
            ..sdk::bundle::Limits::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of a CLI access token, in seconds (it is refreshed silently).
    /// Example: `access_token_ttl_secs = 900`.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a CLI refresh token, in days; each use rotates it.
    /// Example: `refresh_token_ttl_days = 30`.
    pub refresh_token_ttl_days: u64,
    /// How long a device code (`flare auth login`) waits for approval, in seconds.
    /// Example: `device_code_ttl_secs = 600`.
    pub device_code_ttl_secs: u64,
    /// The polling interval the CLI is told to keep, in seconds. Example: `device_poll_interval_secs = 5`.
    pub device_poll_interval_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 900,
            refresh_token_ttl_days: 30,
            device_code_ttl_secs: 600,
            device_poll_interval_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnstileConfig {
    /// Cloudflare Turnstile secret key; empty switches the bot check off (dev). Example:
    /// `secret = "0x4AAAAAAA…"` (or `BURSTFLARE_TURNSTILE__SECRET`).
    #[serde(serialize_with = "ser_secret")]
    pub secret: SecretString,
    /// Site key the sign-up and sign-in pages give the widget; required with a secret.
    /// Example: `site_key = "0x4AAAAAAA…"`.
    pub site_key: String,
    /// Where tokens are verified. Example:
    /// `siteverify_url = "https://challenges.cloudflare.com/turnstile/v0/siteverify"`.
    pub siteverify_url: url::Url,
}

fn ser_secret<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

#[allow(clippy::expect_used)] // only called with the literal defaults below
fn url(s: &str) -> url::Url {
    url::Url::parse(s).expect("default URL literal is valid")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            public_url: url("http://127.0.0.1:8080"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            storage: StorageConfig::default(),
            temporal: TemporalConfig::default(),
            registry: RegistryConfig::default(),
            docker: DockerConfig::default(),
            node: NodeConfig::default(),
            build: BuildConfig::default(),
            runtime: RuntimeConfig::default(),
            snapshots: SnapshotsConfig::default(),
            promotion: PromotionConfig::default(),
            cloudflare: CloudflareConfig::default(),
            turnstile: TurnstileConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 8080)) }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: SecretString::from("sqlite://burstflare.db?mode=rwc"), max_connections: 10 }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            endpoint: url("http://127.0.0.1:9000"),
            bucket: "burstflare".into(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: SecretString::from(String::new()),
            force_path_style: true,
        }
    }
}

impl Default for TemporalConfig {
    fn default() -> Self {
        Self {
            address: url("http://127.0.0.1:7233"),
            namespace: "default".into(),
            task_queue: "burstflare-control".into(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self { url: url("http://127.0.0.1:5000") }
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self { socket: PathBuf::from("/var/run/docker.sock") }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: "local".into(),
            // Where `make agent` (scripts/build-agent.sh) puts it, relative to the checkout.
            agent_path: PathBuf::from(
                "target/agent/x86_64-unknown-linux-gnu/release/burstflare-agent",
            ),
            data_dir: PathBuf::from("/var/lib/burstflare/sessions"),
            in_process: true,
            tunnel_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tunnel_url: None,
        }
    }
}

impl Default for TurnstileConfig {
    fn default() -> Self {
        Self {
            secret: SecretString::from(String::new()),
            site_key: String::new(),
            siteverify_url: url(crate::botcheck::TURNSTILE_SITEVERIFY_URL),
        }
    }
}

impl Config {
    /// Defaults, then the TOML file (when given; it must exist), then `BURSTFLARE_*`
    /// variables taken from `env` (pass `std::env::vars()` in binaries).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        // Serialized defaults hold "[redacted]" for secrets; put the real defaults back.
        fig = fig.merge(Serialized::default("database.url", "sqlite://burstflare.db?mode=rwc"));
        fig = fig.merge(Serialized::default("storage.secret_access_key", ""));
        fig = fig.merge(Serialized::default("turnstile.secret", ""));
        fig = fig.merge(Serialized::default("cloudflare.api_token", ""));
        fig = fig.merge(Serialized::default("runtime.secret", ""));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile { path: path.to_path_buf() });
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("BURSTFLARE_") && !NOT_CONFIG.iter().any(|p| k.starts_with(p))
            })
            .collect();
        fig = fig.merge(env_provider(vars));
        let config: Config = fig.extract().map_err(|e| ConfigError::Parse(flatten_figment(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.public_url.scheme(), "http" | "https") {
            return Err(invalid("public_url", "must be an http or https URL"));
        }
        let db = self.database.url.expose_secret();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(invalid("database.url", "must start with sqlite: or postgres://"));
        }
        if self.database.max_connections == 0 || self.database.max_connections > 1000 {
            return Err(invalid("database.max_connections", "must be between 1 and 1000"));
        }
        validate_bucket(&self.storage.bucket)?;
        let a = &self.auth;
        if !(1..=86_400).contains(&a.access_token_ttl_secs) {
            return Err(invalid("auth.access_token_ttl_secs", "must be between 1 and 86400"));
        }
        if !(1..=365).contains(&a.refresh_token_ttl_days) {
            return Err(invalid("auth.refresh_token_ttl_days", "must be between 1 and 365"));
        }
        if !(60..=3600).contains(&a.device_code_ttl_secs) {
            return Err(invalid("auth.device_code_ttl_secs", "must be between 60 and 3600"));
        }
        if !(1..=60).contains(&a.device_poll_interval_secs) {
            return Err(invalid("auth.device_poll_interval_secs", "must be between 1 and 60"));
        }
        let sn = &self.snapshots;
        if !(1..=100).contains(&sn.keep) {
            return Err(invalid("snapshots.keep", "must be between 1 and 100"));
        }
        if sn.keep_failed > 100 {
            return Err(invalid("snapshots.keep_failed", "must be at most 100"));
        }
        if sn.min_interval_secs > 86_400 {
            return Err(invalid("snapshots.min_interval_secs", "must be at most 86400"));
        }
        if sn.max_bytes == 0 {
            return Err(invalid("snapshots.max_bytes", "must be at least 1"));
        }
        if sn.gc_grace_secs < 7200 {
            return Err(invalid(
                "snapshots.gc_grace_secs",
                "must be at least 7200 (longer than any snapshot upload)",
            ));
        }
        let pr = &self.promotion;
        if !(10..=2_592_000).contains(&pr.approval_timeout_secs) {
            return Err(invalid(
                "promotion.approval_timeout_secs",
                "must be between 10 and 2592000 (30 days)",
            ));
        }
        let cf = &self.cloudflare;
        let js_name = |n: &str| {
            !n.is_empty()
                && n.len() <= 63
                && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !n.starts_with('-')
                && !n.ends_with('-')
        };
        if !js_name(&cf.worker_name) {
            return Err(invalid(
                "cloudflare.worker_name",
                "must be 1 to 63 lowercase letters, digits and inner hyphens",
            ));
        }
        if let Some(a) = &cf.account_id
            && (a.len() != 32 || !a.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(invalid("cloudflare.account_id", "must be 32 hex characters"));
        }
        if !(1..=1000).contains(&cf.max_instances) {
            return Err(invalid("cloudflare.max_instances", "must be between 1 and 1000"));
        }
        if cf.bundle_dir.is_none()
            && (cf.account_id.is_some() || !cf.api_token.expose_secret().is_empty())
        {
            return Err(invalid(
                "cloudflare.bundle_dir",
                "must be set when cloudflare.account_id or cloudflare.api_token is",
            ));
        }
        let b = &self.build;
        if b.task_queue.is_empty() || b.task_queue.len() > 255 {
            return Err(invalid("build.task_queue", "must be 1 to 255 characters"));
        }
        if !(1..=1440).contains(&b.timeout_minutes) {
            return Err(invalid("build.timeout_minutes", "must be between 1 and 1440"));
        }
        if !(100..=256_000).contains(&b.cpu_millis) {
            return Err(invalid("build.cpu_millis", "must be between 100 and 256000"));
        }
        if !(64..=2047).contains(&b.memory_mb) {
            return Err(invalid("build.memory_mb", "must be between 64 and 2047"));
        }
        if !matches!(b.network.as_str(), "none" | "default" | "bridge") {
            return Err(invalid("build.network", "must be none, default or bridge"));
        }
        if !(1..=4096).contains(&b.max_bundle_mb) {
            return Err(invalid("build.max_bundle_mb", "must be between 1 and 4096"));
        }
        if !(1..=65_536).contains(&b.max_content_mb) || b.max_content_mb < b.max_bundle_mb {
            return Err(invalid("build.max_content_mb", "must be between max_bundle_mb and 65536"));
        }
        if !(1..=1_000_000).contains(&b.max_files) {
            return Err(invalid("build.max_files", "must be between 1 and 1000000"));
        }
        if !(1..=1440).contains(&b.upload_url_minutes) {
            return Err(invalid("build.upload_url_minutes", "must be between 1 and 1440"));
        }
        if self.temporal.namespace.is_empty() || self.temporal.namespace.len() > 255 {
            return Err(invalid("temporal.namespace", "must be 1 to 255 characters"));
        }
        if self.temporal.task_queue.is_empty() || self.temporal.task_queue.len() > 255 {
            return Err(invalid("temporal.task_queue", "must be 1 to 255 characters"));
        }
        let id_ok = !self.node.id.is_empty()
            && self.node.id.len() <= 63
            && self
                .node
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !id_ok {
            return Err(invalid("node.id", "must be 1 to 63 characters of a-z, 0-9 and '-'"));
        }
        if !matches!(self.turnstile.siteverify_url.scheme(), "http" | "https") {
            return Err(invalid("turnstile.siteverify_url", "must be an http or https URL"));
        }
        if !self.turnstile.secret.expose_secret().is_empty() && self.turnstile.site_key.is_empty() {
            return Err(invalid("turnstile.site_key", "required when turnstile.secret is set"));
        }
        let r = &self.runtime;
        let secret = r.secret.expose_secret();
        if !secret.is_empty() && secret.len() < 32 {
            return Err(invalid("runtime.secret", "must be at least 32 characters (or empty)"));
        }
        if !(30..=3600).contains(&r.token_ttl_secs) {
            return Err(invalid("runtime.token_ttl_secs", "must be between 30 and 3600"));
        }
        if !(100..=60_000).contains(&r.recheck_ms) {
            return Err(invalid("runtime.recheck_ms", "must be between 100 and 60000"));
        }
        if let Some(u) = &self.node.tunnel_url
            && !matches!(u.scheme(), "http" | "https")
        {
            return Err(invalid("node.tunnel_url", "must be an http or https URL"));
        }
        Ok(())
    }

    /// The configuration as TOML with every secret replaced by `[redacted]` and the
    /// password of the database URL masked: safe to print and log.
    pub fn redacted(&self) -> String {
        let mut value = toml::Value::try_from(self).unwrap_or(toml::Value::String(String::new()));
        if let Some(db) = value.get_mut("database").and_then(|v| v.as_table_mut()) {
            db.insert(
                "url".into(),
                toml::Value::String(redact_url_password(self.database.url.expose_secret())),
            );
        }
        toml::to_string_pretty(&value).unwrap_or_default()
    }
}

/// `BURSTFLARE_*` variables that are not configuration fields.
const NOT_CONFIG: [&str; 4] =
    ["BURSTFLARE_CONFIG", "BURSTFLARE_LOG", "BURSTFLARE_TEST_", "BURSTFLARE_RECORD_"];

fn env_provider(vars: Vec<(String, String)>) -> impl figment::Provider {
    // figment's Env reads the process environment; we feed it the variables we were given so
    // tests do not depend on (or mutate) the real environment.
    let mut dict = figment::value::Dict::new();
    for (key, value) in vars {
        let Some(rest) = key.strip_prefix("BURSTFLARE_") else { continue };
        let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        // Same parsing as figment's Env: "true" becomes a bool, "20" a number, else a string.
        let value = value
            .parse::<figment::value::Value>()
            .unwrap_or_else(|_| figment::value::Value::from(value.clone()));
        insert_path(&mut dict, &path, value);
    }
    Serialized::defaults(dict)
}

fn insert_path(dict: &mut figment::value::Dict, path: &[String], value: figment::value::Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| figment::value::Value::from(figment::value::Dict::new()));
            if let figment::value::Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            } else {
                let mut inner = figment::value::Dict::new();
                insert_path(&mut inner, rest, value);
                *entry = figment::value::Value::from(inner);
            }
        }
    }
}

fn flatten_figment(e: figment::Error) -> String {
    e.into_iter()
        .map(|err| {
            let path = err.path.join(".");
            let kind = err.kind.to_string();
            if path.is_empty() { kind } else { format!("{path}: {kind}") }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn validate_bucket(bucket: &str) -> Result<(), ConfigError> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(invalid("storage.bucket", "must be 3 to 63 characters of a-z, 0-9, '-' and '.'"))
    }
}

/// `postgres://user:secret@host/db` becomes `postgres://user:[redacted]@host/db`.
pub fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("[redacted]"));
            u.to_string().replace("%5Bredacted%5D", "[redacted]")
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid_and_suit_dev() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database.url.expose_secret(), "sqlite://burstflare.db?mode=rwc");
        assert_eq!(c.temporal.namespace, "default");
    }

    #[test]
    fn environment_overrides_the_file_and_nested_keys_use_double_underscores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("burstflare.toml");
        std::fs::write(&path, "[storage]\nbucket = \"from-file\"\nregion = \"eu\"\n").unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("BURSTFLARE_STORAGE__BUCKET", "from-env"),
                ("BURSTFLARE_DATABASE__MAX_CONNECTIONS", "42"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.storage.bucket, "from-env");
        assert_eq!(c.storage.region, "eu");
        assert_eq!(c.database.max_connections, 42);
    }

    #[test]
    fn a_missing_config_file_is_an_error_that_names_it() {
        let err = Config::load(Some(Path::new("/nonexistent/bf.toml")), env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bf.toml"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[storage]\nbuckit = \"x\"\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("buckit"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field_and_the_limit() {
        let err = Config::load(None, env(&[("BURSTFLARE_STORAGE__BUCKET", "X")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: storage.bucket: must be 3 to 63 characters of a-z, 0-9, '-' and '.'"
        );
        let err =
            Config::load(None, env(&[("BURSTFLARE_DATABASE__URL", "mysql://x")])).unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
    }

    #[test]
    fn secrets_never_appear_in_redacted_output_or_debug() {
        let c = Config::load(
            None,
            env(&[
                ("BURSTFLARE_DATABASE__URL", "postgres://bf:hunter2pw@db:5432/bf"),
                ("BURSTFLARE_STORAGE__SECRET_ACCESS_KEY", "s3cr3tkey"),
                ("BURSTFLARE_STORAGE__ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("BURSTFLARE_TURNSTILE__SECRET", "0x4AAAAAAAturnst1lesecret"),
                ("BURSTFLARE_TURNSTILE__SITE_KEY", "0x4AAAAAAAsitekey"),
            ]),
        )
        .unwrap();
        let secrets = ["hunter2pw", "s3cr3tkey", "turnst1lesecret"];
        let shown = c.redacted();
        assert!(!secrets.iter().any(|s| shown.contains(s)), "{shown}");
        assert!(shown.contains("postgres://bf:[redacted]@db:5432/bf"), "{shown}");
        assert!(shown.contains("AKIDEXAMPLE") && shown.contains("0x4AAAAAAAsitekey"), "{shown}");
        let dbg = format!("{c:?}");
        assert!(!secrets.iter().any(|s| dbg.contains(s)), "{dbg}");
        assert_eq!(c.storage.secret_access_key.expose_secret(), "s3cr3tkey");
        assert_eq!(c.turnstile.secret.expose_secret(), "0x4AAAAAAAturnst1lesecret");
    }

    #[test]
    fn the_cloudflare_target_is_off_until_configured_and_deploys_only_with_credentials() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(c.cloudflare.bundle_dir.is_none() && !c.cloudflare.deploys());
        assert_eq!(c.promotion.approval_timeout_secs, 86_400);
        let checked =
            Config::load(None, env(&[("BURSTFLARE_CLOUDFLARE__BUNDLE_DIR", "/var/lib/bf/cf")]))
                .unwrap();
        assert!(checked.cloudflare.bundle_dir.is_some() && !checked.cloudflare.deploys());
        let deploys = Config::load(
            None,
            env(&[
                ("BURSTFLARE_CLOUDFLARE__BUNDLE_DIR", "/var/lib/bf/cf"),
                ("BURSTFLARE_CLOUDFLARE__ACCOUNT_ID", "0123456789abcdef0123456789abcdef"),
                ("BURSTFLARE_CLOUDFLARE__API_TOKEN", "cf-t0ken-secret"),
            ]),
        )
        .unwrap();
        assert!(deploys.cloudflare.deploys());
        assert!(!deploys.redacted().contains("cf-t0ken-secret"), "{}", deploys.redacted());
        assert!(!format!("{deploys:?}").contains("cf-t0ken-secret"));
        // Credentials without a bundle directory, a bad account, a bad timeout: refused by name.
        let refused = [
            (("BURSTFLARE_CLOUDFLARE__API_TOKEN", "x"), "cloudflare.bundle_dir"),
            (("BURSTFLARE_CLOUDFLARE__MAX_INSTANCES", "0"), "cloudflare.max_instances"),
            (("BURSTFLARE_CLOUDFLARE__WORKER_NAME", "Bad_Name"), "cloudflare.worker_name"),
            (
                ("BURSTFLARE_PROMOTION__APPROVAL_TIMEOUT_SECS", "5"),
                "promotion.approval_timeout_secs",
            ),
        ];
        for (pair, field) in refused {
            let err = Config::load(None, env(&[pair])).unwrap_err().to_string();
            assert!(err.contains(field), "{pair:?}: {err}");
        }
        let err = Config::load(
            None,
            env(&[
                ("BURSTFLARE_CLOUDFLARE__BUNDLE_DIR", "/x"),
                ("BURSTFLARE_CLOUDFLARE__ACCOUNT_ID", "not-hex"),
            ]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cloudflare.account_id: must be 32 hex"), "{err}");
    }

    #[test]
    fn turnstile_is_off_by_default_and_a_secret_needs_a_site_key() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.turnstile.secret.expose_secret(), "");
        assert_eq!(
            c.turnstile.siteverify_url.as_str(),
            "https://challenges.cloudflare.com/turnstile/v0/siteverify"
        );
        let err = Config::load(None, env(&[("BURSTFLARE_TURNSTILE__SECRET", "0x4AAAAAAAs")]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: turnstile.site_key: required when turnstile.secret is set"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[turnstile]\nsecret = \"0x4AAAAAAAs\"\nsite_key = \"0x4AAAAAAAk\"\n\
             siteverify_url = \"http://127.0.0.1:9/siteverify\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(c.turnstile.site_key, "0x4AAAAAAAk");
        assert_eq!(c.turnstile.siteverify_url.as_str(), "http://127.0.0.1:9/siteverify");
    }
}
