//! `TurnstileStandIn`: a local stand-in for Cloudflare Turnstile's siteverify endpoint, because
//! Turnstile is a third-party SaaS the tests cannot reach. It implements the documented contract
//! (<https://developers.cloudflare.com/turnstile/get-started/server-side-validation/>): a
//! form-encoded POST of `secret`, `response` and optional `remoteip`, answered with JSON
//! `{"success": bool, "error-codes": [...]}`. It knows one secret and one good token (reusable,
//! like Cloudflare's own dummy test token) and records every request so tests can check what the
//! server sent and whether it called at all.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where the stand-in answers, relative to its base URL (same path as Cloudflare's).
pub const SITEVERIFY_PATH: &str = "/turnstile/v0/siteverify";

/// One siteverify request as the stand-in received it. The secret is not kept: tests only need
/// to know whether it matched, which the reply already says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub response: Option<String>,
    pub remoteip: Option<String>,
}

#[derive(Clone)]
struct Shared {
    secret: String,
    good_token: String,
    received: Arc<Mutex<Vec<Received>>>,
}

pub struct TurnstileStandIn {
    siteverify_url: url::Url,
    received: Arc<Mutex<Vec<Received>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TurnstileStandIn {
    /// Starts the stand-in on 127.0.0.1 and a free port. It accepts `good_token` when the request
    /// carries `secret`; it stops when `stop` is awaited or the value is dropped.
    pub async fn start(secret: &str, good_token: &str) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the Turnstile stand-in to 127.0.0.1:0")?;
        let addr: SocketAddr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            secret: secret.to_owned(),
            good_token: good_token.to_owned(),
            received: received.clone(),
        };
        let app = axum::Router::new().route(SITEVERIFY_PATH, post(siteverify)).with_state(shared);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        let siteverify_url = url::Url::parse(&format!("http://{addr}{SITEVERIFY_PATH}"))
            .context("building the stand-in's URL")?;
        Ok(Self { siteverify_url, received, shutdown: Some(tx), task: Some(task) })
    }

    /// The URL to configure as `turnstile.siteverify_url`.
    pub fn siteverify_url(&self) -> url::Url {
        self.siteverify_url.clone()
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Stops serving and waits until the port is closed, so a test can see the service down.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TurnstileStandIn {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn failure(code: &str) -> Json<Value> {
    Json(json!({ "success": false, "error-codes": [code], "messages": [] }))
}

/// Checks in the order Cloudflare documents: the body, the secret, then the response token.
async fn siteverify(State(s): State<Shared>, headers: HeaderMap, body: String) -> Json<Value> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let mut secret = None;
    let mut response = None;
    let mut remoteip = None;
    for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
        match k.as_ref() {
            "secret" => secret = Some(v.into_owned()),
            "response" => response = Some(v.into_owned()),
            "remoteip" => remoteip = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Ok(mut r) = s.received.lock() {
        r.push(Received { response: response.clone(), remoteip });
    }
    if !is_form {
        return failure("bad-request");
    }
    match secret.as_deref() {
        None | Some("") => return failure("missing-input-secret"),
        Some(got) if got != s.secret => return failure("invalid-input-secret"),
        Some(_) => {}
    }
    match response.as_deref() {
        None | Some("") => failure("missing-input-response"),
        Some(got) if got != s.good_token => failure("invalid-input-response"),
        Some(_) => Json(json!({
            "success": true,
            "challenge_ts": "2025-01-01T00:00:00.000Z",
            "hostname": "127.0.0.1",
            "error-codes": [],
            "action": "",
            "cdata": "",
            "metadata": {},
        })),
    }
}
