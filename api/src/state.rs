//! Shared state of the API handlers: the store, the blob store, and handles to Temporal,
//! Docker and the registry.

use std::sync::Arc;
use std::time::Duration;

use domain::blob::BlobStore;
use domain::{Config, Store};

use crate::temporal::TemporalHandle;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Inner>,
}

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub blob: BlobStore,
    pub temporal: TemporalHandle,
    /// The Docker client, or why it could not be made (reported by /api/health).
    pub docker: Result<bollard::Docker, String>,
    pub http: reqwest::Client,
    /// The WebAuthn relying party (this installation's `public_url`).
    pub passkeys: domain::passkeys::RelyingParty,
    pub bot_check: std::sync::Arc<dyn domain::botcheck::BotCheck>,
    /// The last health report shown on the home page, so page views do not probe every
    /// dependency each time (`/api/health` always probes).
    pub health_cache: tokio::sync::Mutex<Option<(std::time::Instant, sdk::HealthResponse)>>,
    /// Wrong device user codes per user (rate limit of the approval page).
    pub code_attempts: crate::device::CodeAttempts,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl AppState {
    pub fn new(config: Config, store: Store) -> anyhow::Result<Self> {
        let blob = BlobStore::new(&config.storage);
        let temporal = TemporalHandle::new(&config.temporal);
        // Connecting is lazy: a Docker engine that is down shows up in /api/health.
        let docker = bollard::Docker::connect_with_unix(
            &config.docker.socket.to_string_lossy(),
            30,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| e.to_string());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let passkeys = domain::passkeys::RelyingParty::new(&config.public_url)?;
        let bot_check = domain::botcheck::from_config(&config.turnstile);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                store,
                blob,
                temporal,
                docker,
                http,
                passkeys,
                bot_check,
                health_cache: tokio::sync::Mutex::new(None),
                code_attempts: Default::default(),
            }),
        })
    }
}
