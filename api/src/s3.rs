//! The S3 server embedded in `burstflare dev`: s3s over a directory (s3s-fs), with SigV4
//! authentication, on a loopback port. Everything else talks to it through aws-sdk-s3, exactly
//! as production talks to R2, Garage, MinIO or AWS.
//!
//! For tests and drills, [`S3Faults`] makes the server fail or delay chosen requests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{HttpError, HttpResponse};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a failed request's body is read (and dropped) at most before the fault is answered.
const FAULT_DRAIN: Duration = Duration::from_secs(30);

/// Requests the embedded server fails or delays on purpose (tests and drills). Empty by
/// default: then every request goes straight to storage (one atomic load per request). Clones
/// share the rules.
#[derive(Debug, Clone, Default)]
pub struct S3Faults {
    inner: Arc<FaultsInner>,
}

#[derive(Debug, Default)]
struct FaultsInner {
    /// Whether any rule is armed (the fast path when none is).
    armed: AtomicBool,
    rules: Mutex<Vec<Armed>>,
    hits: AtomicU64,
}

#[derive(Debug)]
struct Armed {
    rule: FaultRule,
    used: u32,
}

/// Which requests to fail or delay, and how.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// `None`: any method.
    pub method: Option<http::Method>,
    /// substring of the request path (the object key appears in it)
    pub path_contains: String,
    /// how many matching requests to fail (or delay); 0 = unlimited until cleared
    pub times: u32,
    pub action: FaultAction,
}

#[derive(Debug, Clone)]
pub enum FaultAction {
    /// Answer with this status and an S3-style XML error body (none for `HEAD`), without
    /// touching storage. The request body is read and dropped first, as a server would.
    Status(u16),
    /// Wait, then serve normally.
    Delay(Duration),
}

impl S3Faults {
    /// Arms `r`. Rules are tried in the order they were added; a request takes the first that
    /// matches (its method, if any, and `path_contains` within the request's path as sent, e.g.
    /// `/<bucket>/workspaces/ws-1/chunks/ab/ab12…`). A rule with `times` > 0 is dropped once it
    /// has affected that many requests.
    pub fn add(&self, r: FaultRule) {
        let mut rules = self.inner.rules.lock().unwrap_or_else(|e| e.into_inner());
        rules.push(Armed { rule: r, used: 0 });
        self.inner.armed.store(true, Ordering::SeqCst);
    }

    /// Drops every rule and resets [`Self::hits`].
    pub fn clear(&self) {
        let mut rules = self.inner.rules.lock().unwrap_or_else(|e| e.into_inner());
        rules.clear();
        self.inner.armed.store(false, Ordering::SeqCst);
        self.inner.hits.store(0, Ordering::SeqCst);
    }

    /// requests a rule has affected so far
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// The action for a request, counting it against its rule.
    fn take(&self, method: &http::Method, path: &str) -> Option<FaultAction> {
        if !self.inner.armed.load(Ordering::SeqCst) {
            return None;
        }
        let mut rules = self.inner.rules.lock().unwrap_or_else(|e| e.into_inner());
        let i = rules.iter().position(|a| {
            a.rule.method.as_ref().is_none_or(|m| m == method)
                && path.contains(&a.rule.path_contains)
        })?;
        let armed = &mut rules[i];
        armed.used = armed.used.saturating_add(1);
        let action = armed.rule.action.clone();
        if armed.rule.times > 0 && armed.used >= armed.rule.times {
            rules.remove(i);
            if rules.is_empty() {
                self.inner.armed.store(false, Ordering::SeqCst);
            }
        }
        self.inner.hits.fetch_add(1, Ordering::SeqCst);
        Some(action)
    }
}

/// The s3s service behind the fault rules.
#[derive(Clone)]
struct FaultyService {
    inner: S3Service,
    faults: S3Faults,
}

impl hyper::service::Service<http::Request<Incoming>> for FaultyService {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = BoxFuture<'static, Result<HttpResponse, HttpError>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        match self.faults.take(req.method(), req.uri().path()) {
            None => hyper::service::Service::call(&self.inner, req),
            Some(FaultAction::Delay(d)) => {
                let inner = self.inner.clone();
                Box::pin(async move {
                    tokio::time::sleep(d).await;
                    hyper::service::Service::call(&inner, req).await
                })
            }
            Some(FaultAction::Status(status)) => Box::pin(fault_response(req, status)),
        }
    }
}

/// The S3 error code a real server would give with `status`.
fn fault_code(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "InvalidRequest",
        403 => "AccessDenied",
        404 => "NoSuchKey",
        409 => "OperationAborted",
        412 => "PreconditionFailed",
        429 | 503 => "ServiceUnavailable",
        500 => "InternalError",
        501 => "NotImplemented",
        _ => "InjectedFault",
    }
}

async fn fault_response(
    req: http::Request<Incoming>,
    status: u16,
) -> Result<HttpResponse, HttpError> {
    let status =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let (parts, body) = req.into_parts();
    // Read the body as a server does before it answers, so the client gets the answer rather
    // than a connection reset in the middle of its upload.
    let _ = tokio::time::timeout(FAULT_DRAIN, body.collect()).await;
    let code = fault_code(status);
    let body = if parts.method == http::Method::HEAD {
        s3s::Body::empty()
    } else {
        s3s::Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
             <Message>fault injected by the test server</Message><Resource>{}</Resource>\
             <RequestId>injected-fault</RequestId></Error>",
            xml_escape(parts.uri.path())
        ))
    };
    let mut resp = http::Response::new(body);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
    headers.insert("x-amz-request-id", http::HeaderValue::from_static("injected-fault"));
    Ok(resp)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub struct EmbeddedS3 {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    faults: S3Faults,
}

impl EmbeddedS3 {
    /// Serves `root` on 127.0.0.1 at a free port, accepting only `access_key`/`secret_key`.
    pub async fn start(root: &Path, access_key: &str, secret_key: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating the S3 data directory {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| {
            anyhow::anyhow!("opening the S3 data directory {}: {e:?}", root.display())
        })?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key.to_string()));
        let faults = S3Faults::default();
        let service = FaultyService { inner: builder.build(), faults: faults.clone() };

        let listener =
            TcpListener::bind(("127.0.0.1", 0)).await.context("binding the S3 server")?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            loop {
                let (socket, _) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!("S3 server accept failed: {e}");
                        continue;
                    }
                };
                // Without it, a response's last segment waits for the client's delayed ACK:
                // ~40 ms per small GET (BENCHMARKS.md, the snapshot profile).
                let _ = socket.set_nodelay(true);
                let conn =
                    http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("S3 connection ended with an error: {e}");
                    }
                });
            }
        });
        Ok(Self { addr, task, faults })
    }

    /// The server's fault rules (shared: rules added to the returned value apply at once).
    pub fn faults(&self) -> S3Faults {
        self.faults.clone()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}
