//! The agent's HTTP/1.1 API (JSON bodies), served on `supervise --listen`:
//!
//! - `GET /ready` -> 200 `{"ready":true,"version":"0.1.0","started_at":<unix ms>,
//!   "command":{"running":bool,"pid":<u32|null>,"exit_code":<i32|null>}}`
//! - `GET /activity` -> 200 `{"last_active_at":<unix ms>}`
//! - `POST /activity` -> 204 (records activity now)
//! - anything else -> 404 `{"error":"not found"}`
//!
//! [`route`] is that API as a pure function; [`serve`] puts it behind hyper, together with the
//! WebSocket endpoints `GET /ssh` and `GET /pty` ([`crate::connect`]) and the streaming
//! `POST /snapshot/pack` and `POST /snapshot/restore` ([`crate::snapshot`]).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;

use crate::activity::Activity;
use crate::connect::Connect;
use crate::{VERSION, log};

/// The state of the supervised command, as `GET /ready` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandStatus {
    /// The command is running (started and not reaped yet).
    pub running: bool,
    /// Its process id, once started (kept after it exits).
    pub pid: Option<u32>,
    /// Its exit code once it exited: the code it passed to exit(), 128 + the signal number when a
    /// signal killed it, 127 when it could not be started.
    pub exit_code: Option<i32>,
}

/// Everything the API reports: shared by the supervisor (which updates the command status) and the
/// connections.
#[derive(Debug)]
pub struct AgentState {
    /// Session activity; [`Activity::record`] is what `POST /activity` calls.
    pub activity: Arc<Activity>,
    command: Mutex<CommandStatus>,
}

impl AgentState {
    /// State of an agent started at `started_at_ms` that watches the pseudo-terminals in `pts_dir`.
    pub fn new(started_at_ms: u64, pts_dir: impl Into<PathBuf>) -> Self {
        Self {
            activity: Arc::new(Activity::new(started_at_ms, pts_dir)),
            command: Mutex::default(),
        }
    }

    /// The supervised command's current status.
    pub fn command(&self) -> CommandStatus {
        *self.lock_command()
    }

    /// Replaces the supervised command's status.
    pub fn set_command(&self, status: CommandStatus) {
        *self.lock_command() = status;
    }

    fn lock_command(&self) -> MutexGuard<'_, CommandStatus> {
        // A plain Copy value cannot be left half-written, so a poisoned lock is still usable.
        self.command.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An API answer: a status code and an optional JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Option<serde_json::Value>,
}

/// The whole API: answers `method` on `path` (without the query string).
pub fn route(method: &str, path: &str, state: &AgentState) -> Reply {
    match (method, path) {
        ("GET", "/ready") => Reply {
            status: 200,
            body: Some(json!({
                "ready": true,
                "version": VERSION,
                "started_at": state.activity.started_at_ms(),
                "command": state.command(),
            })),
        },
        ("GET", "/activity") => Reply {
            status: 200,
            body: Some(json!({ "last_active_at": state.activity.last_active_at_ms() })),
        },
        ("POST", "/activity") => {
            state.activity.record();
            Reply { status: 204, body: None }
        }
        _ => Reply { status: 404, body: Some(json!({ "error": "not found" })) },
    }
}

/// The body of every response: a whole one ([`full`]) or a stream (snapshot pack).
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A whole-body response as a [`Body`] response.
pub(crate) fn full(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

pub(crate) fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    let body = reply.body.map(|value| value.to_string()).unwrap_or_default();
    let has_body = !body.is_empty();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if has_body {
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    response
}

/// Serves the API, the WebSocket and the snapshot endpoints on `listener` until the process
/// exits. Every response has a Content-Length (or no body), so proxies that wait for the end of a
/// body never hang, except the tar stream of `POST /snapshot/pack` (chunked).
pub async fn serve(listener: TcpListener, state: Arc<AgentState>, connect: Arc<Connect>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // EMFILE and friends: do not spin.
                log!("accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // SSH keystrokes and terminal echo are small writes: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let (state, connect) = (state.clone(), connect.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let (state, connect) = (state.clone(), connect.clone());
                async move {
                    let path = request.uri().path().to_string();
                    let method = request.method().clone();
                    let response =
                        if method == Method::GET && matches!(path.as_str(), "/ssh" | "/pty") {
                            full(connect.handle(&path, request))
                        } else if method == Method::POST
                            && matches!(path.as_str(), "/snapshot/pack" | "/snapshot/restore")
                        {
                            crate::snapshot::handle(connect, &path, request).await
                        } else {
                            full(into_response(route(method.as_str(), &path, &state)))
                        };
                    Ok::<_, Infallible>(response)
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            // Client resets and timeouts are routine; nothing to log.
            let _ = connection.await;
        });
    }
}
