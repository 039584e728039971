//! `POST /snapshot/pack` and `POST /snapshot/restore`: the agent's part of snapshots
//! (docs/snapshots.md). The node calls them with the agent token (the same bearer check as `/ssh`);
//! it chunks, compresses, hashes and uploads what pack streams, and streams a verified snapshot
//! back into restore.
//!
//! - pack: `{"paths":[...],"max_bytes":N}` -> checks the paths, measures the content (413 over
//!   `max_bytes`, before any byte is sent), then streams a deterministic pax tar ([`pack`],
//!   [`tarfmt`]).
//! - restore: paths in `X-BurstFlare-Paths`, the tar as the body -> unpacks every path into a
//!   staging directory next to it, and only when the whole stream is good swaps them in
//!   ([`restore`]).
//!
//! One pack or restore runs at a time ([`Busy`]); a second gets 409. Neither records activity.

pub mod pack;
pub mod restore;
pub mod tarfmt;

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use rustix::io::Errno;
use serde_json::json;
use tokio::sync::mpsc;

use crate::connect::Connect;
use crate::http::{Body, Reply, full, into_response};
use crate::log;

/// The request header of `POST /snapshot/restore` with its paths (a JSON array of strings).
pub const PATHS_HEADER: &str = "x-burstflare-paths";
/// Informational response header of pack: the measured content bytes.
pub const SIZE_HEADER: &str = "x-burstflare-snapshot-bytes";
/// At most this many paths per request.
pub const MAX_PATHS: usize = 32;
/// At most this many bytes per path (as templates allow).
pub const MAX_PATH_BYTES: usize = 255;
/// Largest JSON body of pack.
pub const MAX_PACK_BODY: usize = 64 * 1024;
/// A pack whose client reads nothing, or a restore whose client sends nothing, for this long is
/// abandoned (so a stuck node cannot hold the one-operation lock forever).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(300);
/// After a failed restore the rest of the body is read (so the client gets the answer) for at
/// most this long.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Kernel filesystems nothing is persisted under (as templates refuse them).
const FORBIDDEN_ROOTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// A failed request: the status, what failed, and the request field or stream entry concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: u16,
    pub message: String,
    /// `paths[1]`, `max_bytes`, `X-BurstFlare-Paths`, `body`...
    pub field: Option<String>,
    /// The archive name of the entry of a restore stream.
    pub entry: Option<String>,
}

impl Failure {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), field: None, entry: None }
    }

    /// 400 about a request field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: Some(field.into()), ..Self::new(400, message) }
    }

    /// 400 about an entry of a restore stream (its archive name, lossy UTF-8).
    pub fn entry(name: &[u8], message: impl std::fmt::Display) -> Self {
        let name = String::from_utf8_lossy(name).into_owned();
        Self {
            message: format!("entry {name:?}: {message}"),
            entry: Some(name),
            ..Self::new(400, "")
        }
    }

    /// A local I/O failure: 507 when the disk or quota is full, 500 otherwise.
    pub fn io(what: impl std::fmt::Display, err: &io::Error) -> Self {
        let full = matches!(Errno::from_io_error(err), Some(Errno::NOSPC | Errno::DQUOT));
        Self::new(if full { 507 } else { 500 }, format!("{what}: {err}"))
    }

    /// The JSON answer: `{"error":…}` plus `field` or `entry` when known.
    pub fn reply(&self) -> Reply {
        let mut body = json!({ "error": self.message });
        if let Some(field) = &self.field {
            body["field"] = json!(field);
        }
        if let Some(entry) = &self.entry {
            body["entry"] = json!(entry);
        }
        Reply { status: self.status, body: Some(body) }
    }
}

/// Checks the paths of a request (`value`, the JSON array): 1 to [`MAX_PATHS`] strings, each
/// absolute and normalized (no `//`, `.` or `..` components, no trailing `/`, not `/`), at most
/// [`MAX_PATH_BYTES`] bytes without control characters, not under `/proc`, `/sys` or `/dev`, none
/// repeated or inside another. Errors name the field: `paths` or `paths[i]`.
pub fn validate_paths(value: &serde_json::Value) -> Result<Vec<String>, Failure> {
    let Some(items) = value.as_array() else {
        return Err(Failure::field("paths", "paths must be a JSON array of absolute paths"));
    };
    if items.is_empty() {
        return Err(Failure::field("paths", "paths must name at least one path"));
    }
    if items.len() > MAX_PATHS {
        return Err(Failure::field(
            "paths",
            format!("paths has {} entries; the limit is {MAX_PATHS}", items.len()),
        ));
    }
    let mut paths: Vec<String> = Vec::with_capacity(items.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("paths[{i}]");
        let Some(path) = item.as_str() else {
            return Err(Failure::field(field, format!("paths[{i}] must be a string")));
        };
        let fail = |message: String| Err(Failure::field(format!("paths[{i}]"), message));
        if path.chars().any(char::is_control) {
            return fail(format!("paths[{i}] {path:?} contains a control character"));
        }
        if path.len() > MAX_PATH_BYTES {
            return fail(format!(
                "paths[{i}] is {} bytes; the limit is {MAX_PATH_BYTES}",
                path.len()
            ));
        }
        if !path.starts_with('/') {
            return fail(format!("paths[{i}] {path:?} must be an absolute path starting with '/'"));
        }
        if path == "/" {
            return fail(format!("paths[{i}] \"/\" cannot be snapshotted; name a directory"));
        }
        if path.contains("//") {
            return fail(format!("paths[{i}] {path:?} must not contain \"//\""));
        }
        if path.ends_with('/') {
            return fail(format!("paths[{i}] {path:?} must not end with '/'"));
        }
        if path.split('/').any(|c| c == "." || c == "..") {
            return fail(format!(
                "paths[{i}] {path:?} must not contain \".\" or \"..\" components"
            ));
        }
        if let Some(root) = FORBIDDEN_ROOTS.iter().find(|root| is_within(path, root)) {
            return fail(format!("paths[{i}] {path:?} is under {root}, which is not persisted"));
        }
        if let Some(first) = seen.get(path) {
            return fail(format!("paths[{i}] {path:?} repeats paths[{first}]"));
        }
        for (j, other) in paths.iter().enumerate() {
            if is_within(path, other) {
                return fail(format!("paths[{i}] {path:?} is inside paths[{j}] {other:?}"));
            }
            if is_within(other, path) {
                return fail(format!("paths[{i}] {path:?} contains paths[{j}] {other:?}"));
            }
        }
        seen.insert(path, i);
        paths.push(path.to_string());
    }
    Ok(paths)
}

/// Whether `path` is `root` or below it.
fn is_within(path: &str, root: &str) -> bool {
    path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// The body of `POST /snapshot/pack`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackRequest {
    pub paths: Vec<String>,
    pub max_bytes: u64,
}

impl PackRequest {
    /// Parses and checks `{"paths":[...],"max_bytes":N}`; errors name the field.
    pub fn parse(body: &[u8]) -> Result<Self, Failure> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|err| Failure::field("body", format!("the body is not JSON: {err}")))?;
        let Some(object) = value.as_object() else {
            return Err(Failure::field(
                "body",
                "the body must be a JSON object {\"paths\":[...],\"max_bytes\":N}",
            ));
        };
        if let Some(unknown) =
            object.keys().find(|key| !matches!(key.as_str(), "paths" | "max_bytes"))
        {
            return Err(Failure::field(unknown.clone(), format!("unknown field {unknown:?}")));
        }
        let paths = match object.get("paths") {
            Some(paths) => validate_paths(paths)?,
            None => return Err(Failure::field("paths", "paths is required")),
        };
        let max_bytes = match object.get("max_bytes") {
            Some(value) => value.as_u64().ok_or_else(|| {
                Failure::field("max_bytes", "max_bytes must be a whole number of bytes (0 or more)")
            })?,
            None => return Err(Failure::field("max_bytes", "max_bytes is required")),
        };
        Ok(Self { paths, max_bytes })
    }
}

/// The paths of `POST /snapshot/restore`, from the `X-BurstFlare-Paths` header.
pub fn restore_paths(headers: &hyper::HeaderMap) -> Result<Vec<String>, Failure> {
    let field = "X-BurstFlare-Paths";
    let Some(value) = headers.get(PATHS_HEADER) else {
        return Err(Failure::field(
            field,
            "missing X-BurstFlare-Paths header (a JSON array of the paths being restored)",
        ));
    };
    let value: serde_json::Value = serde_json::from_slice(value.as_bytes())
        .map_err(|err| Failure::field(field, format!("X-BurstFlare-Paths is not JSON: {err}")))?;
    validate_paths(&value)
}

/// The archive name of a path: without its leading `/`.
pub fn archive_root(path: &str) -> &[u8] {
    &path.as_bytes()[1..]
}

/// Allows one pack or restore at a time.
#[derive(Debug, Default)]
pub struct Busy(Arc<AtomicBool>);

/// Held while a pack or restore runs.
#[derive(Debug)]
pub struct BusyGuard(Arc<AtomicBool>);

impl Busy {
    /// Starts an operation, or `None` while one runs.
    pub fn try_start(&self) -> Option<BusyGuard> {
        self.0
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| BusyGuard(self.0.clone()))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

fn busy() -> Response<Body> {
    full(into_response(
        Failure::new(409, "another snapshot pack or restore is running in this session").reply(),
    ))
}

fn failed(failure: &Failure) -> Response<Body> {
    full(into_response(failure.reply()))
}

/// Answers `POST /snapshot/pack` or `POST /snapshot/restore` (`path`).
pub async fn handle(
    connect: Arc<Connect>,
    path: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    if let Err(reply) = connect.check_token(request.headers()) {
        return full(into_response(reply));
    }
    let result = if path == "/snapshot/pack" {
        handle_pack(&connect, request).await
    } else {
        handle_restore(&connect, request).await
    };
    result.unwrap_or_else(|failure| failed(&failure))
}

async fn handle_pack(
    connect: &Connect,
    request: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let body = Limited::new(request.into_body(), MAX_PACK_BODY)
        .collect()
        .await
        .map_err(|err| {
            Failure::field(
                "body",
                format!("cannot read the body (at most {MAX_PACK_BODY} bytes of JSON): {err}"),
            )
        })?
        .to_bytes();
    let request = PackRequest::parse(&body)?;
    let Some(guard) = connect.snapshots.try_start() else {
        return Ok(busy());
    };
    let started = Instant::now();
    let paths = request.paths.clone();
    let measured = tokio::task::spawn_blocking(move || pack::measure(&paths))
        .await
        .map_err(|err| Failure::new(500, format!("measuring the paths failed: {err}")))??;
    if measured.bytes > request.max_bytes {
        log!(
            "snapshot pack refused: {} hold {} bytes, more than max_bytes {}",
            request.paths.join(", "),
            measured.bytes,
            request.max_bytes
        );
        let mut reply = Failure::field(
            "max_bytes",
            format!(
                "the persisted paths hold {} bytes of file content, more than max_bytes ({})",
                measured.bytes, request.max_bytes
            ),
        )
        .reply();
        reply.status = 413;
        if let Some(body) = reply.body.as_mut() {
            body["size"] = json!(measured.bytes);
            body["max_bytes"] = json!(request.max_bytes);
        }
        return Ok(full(into_response(reply)));
    }

    let (tx, mut rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    let handle = tokio::runtime::Handle::current();
    let paths = request.paths;
    tokio::task::spawn_blocking(move || {
        let _guard = guard;
        let mut writer = pack::ChannelWriter::new(tx.clone(), handle.clone());
        let result = pack::write(&paths, &mut writer);
        let result = result.and_then(|stats| io::Write::flush(&mut writer).map(|()| stats));
        match result {
            Ok(stats) => log!(
                "snapshot pack of {}: {}; {} bytes streamed in {:.1} s",
                paths.join(", "),
                stats,
                writer.sent,
                started.elapsed().as_secs_f64()
            ),
            Err(err) => {
                log!(
                    "snapshot pack of {} failed after {} bytes: {err}",
                    paths.join(", "),
                    writer.sent
                );
                // Makes the response end without its last chunk: the client sees it failed.
                let _ = pack::send(&tx, &handle, Err(err));
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| match rx.poll_recv(cx) {
        Poll::Ready(Some(item)) => Poll::Ready(Some(item.map(Frame::data))),
        Poll::Ready(None) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream.boxed())));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    headers.insert(SIZE_HEADER, HeaderValue::from(measured.bytes));
    Ok(response)
}

async fn handle_restore(
    connect: &Connect,
    request: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let paths = restore_paths(request.headers())?;
    let Some(guard) = connect.snapshots.try_start() else {
        return Ok(busy());
    };
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    let mut pump = tokio::spawn(pump_body(request.into_body(), tx));
    let roots = paths.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _guard = guard;
        restore::restore(&roots, restore::BodyReader::new(rx))
    })
    .await
    .map_err(|err| Failure::new(500, format!("the restore failed: {err}")))?;
    match result {
        Ok(stats) => {
            log!(
                "snapshot restore of {}: {stats} in {:.1} s",
                paths.join(", "),
                started.elapsed().as_secs_f64()
            );
            Ok(full(into_response(Reply { status: 200, body: Some(stats.json()) })))
        }
        Err(failure) => {
            log!("snapshot restore of {} failed: {}", paths.join(", "), failure.message);
            // Read the rest of the body so that the client gets the answer.
            if tokio::time::timeout(DRAIN_TIMEOUT, &mut pump).await.is_err() {
                pump.abort();
            }
            Err(failure)
        }
    }
}

/// Forwards the request body to the restore through `tx`; once the restore stops reading, reads
/// and drops the rest. Ends with an error after [`STALL_TIMEOUT`] without data.
async fn pump_body(mut body: Incoming, tx: mpsc::Sender<Result<Bytes, io::Error>>) {
    let mut forwarding = true;
    loop {
        let frame = match tokio::time::timeout(STALL_TIMEOUT, body.frame()).await {
            Err(_) => {
                let err = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no data for {} s", STALL_TIMEOUT.as_secs()),
                );
                if forwarding {
                    let _ = tx.send(Err(err)).await;
                }
                return;
            }
            Ok(None) => return,
            Ok(Some(Err(err))) => {
                if forwarding {
                    let err = io::Error::other(format!("the request body failed: {err}"));
                    let _ = tx.send(Err(err)).await;
                }
                return;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data()
            && forwarding
            && !data.is_empty()
            && tx.send(Ok(data)).await.is_err()
        {
            forwarding = false;
        }
    }
}
