//! A typed HTTP client for the BurstFlare API, used by `flare` and by the tests.

use serde::de::DeserializeOwned;

use crate::{ApiError, HealthResponse, VersionResponse, routes};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "could not reach the BurstFlare server at {url} ({cause}); check --server (or FLARE_SERVER) \
         and that the server is running"
    )]
    Transport { url: String, cause: String },
    #[error("server answered {status}: {error}")]
    Api { status: u16, error: ApiError },
    #[error("server answered {status} with a body this client does not understand: {body}")]
    UnexpectedBody { status: u16, body: String },
}

#[derive(Debug, Clone)]
pub struct Client {
    base: url::Url,
    http: reqwest::Client,
}

impl Client {
    /// `base` is the server's public URL, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl { url: base.to_string(), reason };
        let base = url::Url::parse(base).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("burstflare-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { base, http })
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// `GET /api/health`. A degraded server answers 503 with the same body, which is
    /// returned as `Ok` so callers can show which check failed.
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.get_allowing(routes::HEALTH, &[503]).await
    }

    pub async fn version(&self) -> Result<VersionResponse, ClientError> {
        self.get_allowing(routes::VERSION, &[]).await
    }

    async fn get_allowing<T: DeserializeOwned>(
        &self,
        path: &str,
        also_ok: &[u16],
    ) -> Result<T, ClientError> {
        let url = self.base.join(path).map_err(|e| ClientError::InvalidUrl {
            url: self.base.to_string(),
            reason: e.to_string(),
        })?;
        let resp =
            self.http.get(url.clone()).send().await.map_err(|source| transport(&url, source))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| transport(&url, source))?;
        if (200..300).contains(&status) || also_ok.contains(&status) {
            return serde_json::from_slice(&body).map_err(|_| ClientError::UnexpectedBody {
                status,
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(error) => Err(ClientError::Api { status, error }),
            Err(_) => Err(ClientError::UnexpectedBody {
                status,
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            }),
        }
    }
}

fn transport(url: &url::Url, source: reqwest::Error) -> ClientError {
    // reqwest's own message ("error sending request") hides the useful part: the root cause.
    let mut cause: &(dyn std::error::Error + 'static) = &source;
    while let Some(next) = cause.source() {
        cause = next;
    }
    ClientError::Transport { url: url.to_string(), cause: cause.to_string() }
}
