//! Forwarding WebSocket upgrades byte for byte, and the node tunnel built on it (docs/ssh.md).
//!
//! Neither the API nor the node speaks WebSocket on these paths: each forwards the client's
//! upgrade request (its `Sec-WebSocket-Key` included) to the next hop and relays the answer, so
//! the handshake happens end to end between the client and the session agent, and after the
//! `101` both sides are spliced as plain byte streams. No re-framing, no extra copies, and the
//! agent is the only WebSocket implementation on the path.
//!
//! The node tunnel (`burstflare node`, in-process under `dev`) listens on `[node] tunnel_listen`
//! and answers `GET /v1/sessions/{session}/{generation}/{ssh|pty}`: it checks the agent token
//! (derived from `[runtime] secret`, so a node needs no database), finds that container's agent
//! port on 127.0.0.1 and forwards the upgrade there.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long connecting to and hearing back from the next hop may take.
const HOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of an error body relayed from the next hop.
const MAX_ERROR_BODY: usize = 4096;

/// Request headers of the WebSocket handshake that travel to the next hop.
const HANDSHAKE_HEADERS: [HeaderName; 4] = [
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::ORIGIN,
];
/// Response headers of the next hop's `101` that travel back.
const ANSWER_HEADERS: [HeaderName; 2] =
    [header::SEC_WEBSOCKET_ACCEPT, header::SEC_WEBSOCKET_PROTOCOL];

/// Whether `headers` ask for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has = |name: HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
        && headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Where and how to forward an upgrade.
pub struct Hop {
    /// `host:port` to connect to.
    pub authority: String,
    /// Path and query on the next hop.
    pub path_and_query: String,
    /// Extra headers for the next hop (credentials, who is connecting).
    pub headers: HeaderMap,
}

/// Why forwarding failed before the splice.
#[derive(Debug)]
pub enum HopError {
    /// The next hop could not be reached or broke the protocol.
    Unreachable(String),
    /// The next hop refused with this status and body (relayed as is).
    Refused { status: StatusCode, content_type: Option<HeaderValue>, body: Bytes },
}

impl IntoResponse for HopError {
    fn into_response(self) -> Response {
        match self {
            HopError::Unreachable(why) => {
                tracing::warn!("forwarding a WebSocket upgrade: {why}");
                let body = sdk::ApiError::new(
                    sdk::ErrorCode::Unavailable,
                    "the session's runtime host could not be reached; retry in a moment",
                );
                (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
            }
            HopError::Refused { status, content_type, body } => {
                let mut r = Response::new(Body::from(body));
                *r.status_mut() = status;
                if let Some(ct) = content_type {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                r
            }
        }
    }
}

/// Sends the upgrade request of `client` (its handshake headers) to `hop` and waits for the
/// `101`. Returns the response to give the client and the next hop's upgraded stream.
pub async fn open(client: &HeaderMap, hop: Hop) -> Result<(Response, Upgraded), HopError> {
    let unreachable = |what: &str, e: &dyn std::fmt::Display| {
        HopError::Unreachable(format!("{what} {}: {e}", hop.authority))
    };
    let stream = tokio::time::timeout(HOP_TIMEOUT, TcpStream::connect(&hop.authority))
        .await
        .map_err(|e| unreachable("connecting to", &e))?
        .map_err(|e| unreachable("connecting to", &e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable("handshake with", &e))?;
    tokio::spawn(async move {
        // Ends when the upgraded stream is handed over (or the hop hangs up).
        let _ = conn.with_upgrades().await;
    });
    let mut req = hyper::Request::builder()
        .method("GET")
        .uri(&hop.path_and_query)
        .header(header::HOST, &hop.authority)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket");
    for name in HANDSHAKE_HEADERS {
        for v in client.get_all(&name) {
            req = req.header(&name, v);
        }
    }
    for (name, v) in &hop.headers {
        req = req.header(name, v);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| unreachable("request for", &e))?;
    let mut res = tokio::time::timeout(HOP_TIMEOUT, sender.send_request(req))
        .await
        .map_err(|e| unreachable("waiting for", &e))?
        .map_err(|e| unreachable("waiting for", &e))?;
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = res.status();
        let content_type = res.headers().get(header::CONTENT_TYPE).cloned();
        let body = match tokio::time::timeout(HOP_TIMEOUT, res.body_mut().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => Bytes::new(),
        };
        let body = body.slice(..body.len().min(MAX_ERROR_BODY));
        return Err(HopError::Refused { status, content_type, body });
    }
    let mut answer = Response::new(Body::empty());
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    answer.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    answer.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    for name in ANSWER_HEADERS {
        if let Some(v) = res.headers().get(&name) {
            answer.headers_mut().insert(name, v.clone());
        }
    }
    let upgraded = tokio::time::timeout(HOP_TIMEOUT, hyper::upgrade::on(&mut res))
        .await
        .map_err(|e| unreachable("upgrading", &e))?
        .map_err(|e| unreachable("upgrading", &e))?;
    Ok((answer, upgraded))
}

/// Bytes that went each way through a splice.
#[derive(Debug, Default)]
pub struct Traffic {
    /// From the client to the session.
    pub up: AtomicU64,
    /// From the session to the client.
    pub down: AtomicU64,
}

impl Traffic {
    pub fn totals(&self) -> (u64, u64) {
        (self.up.load(Ordering::Relaxed), self.down.load(Ordering::Relaxed))
    }
}

/// An I/O stream that counts what is read from it.
struct Counted<T> {
    inner: T,
    read: Arc<Traffic>,
    up: bool,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let counter = if self.up { &self.read.up } else { &self.read.down };
            counter.fetch_add(n, Ordering::Relaxed);
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Takes the client's pending upgrade out of `req` (present when the server runs with upgrades,
/// which axum's does).
pub fn take_upgrade(req: &mut Request) -> Option<OnUpgrade> {
    req.extensions_mut().remove::<OnUpgrade>()
}

/// Where a server-to-client WebSocket byte stream is, frame by frame, so a close frame can be
/// put between two frames (never inside one).
#[derive(Debug, Default)]
pub struct FrameTracker {
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// The bytes of a frame header seen so far (a header can span reads).
    header: Vec<u8>,
}

impl FrameTracker {
    /// Between two frames.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.header.is_empty()
    }

    /// Consumes `data`; with `stop_at_boundary`, stops at the first frame boundary and returns
    /// how many bytes belong before it (all of them otherwise).
    pub fn feed(&mut self, data: &[u8], stop_at_boundary: bool) -> usize {
        let mut i = 0;
        while i < data.len() {
            if stop_at_boundary && self.at_boundary() {
                return i;
            }
            if self.remaining > 0 {
                let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(data.len() - i);
                self.remaining -= n as u64;
                i += n;
                continue;
            }
            self.header.push(data[i]);
            i += 1;
            if let Some((header_len, payload_len)) = parse_header(&self.header)
                && self.header.len() == header_len
            {
                self.header.clear();
                self.remaining = payload_len;
            }
        }
        i
    }
}

/// `(header length, payload length)` of a frame whose header starts with `h`, once enough of it
/// is known.
fn parse_header(h: &[u8]) -> Option<(usize, u64)> {
    let b1 = *h.get(1)?;
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let (ext, payload) = match b1 & 0x7f {
        126 => (2, u64::from(u16::from_be_bytes([*h.get(2)?, *h.get(3)?]))),
        127 => {
            let bytes: [u8; 8] = h.get(2..10)?.try_into().ok()?;
            (8, u64::from_be_bytes(bytes))
        }
        n => (0, u64::from(n)),
    };
    Some((2 + ext + mask, payload))
}

/// A server-to-client close frame (policy violation, 1008) carrying `reason` (cut to fit).
pub fn close_frame(reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(120);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    let mut frame = vec![0x88, u8::try_from(2 + reason.len()).unwrap_or(125)];
    frame.extend_from_slice(&1008u16.to_be_bytes());
    frame.extend_from_slice(reason);
    frame
}

/// How long a cut waits for the frame in flight to end before it drops the connection.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

fn ended(r: std::io::Result<u64>) -> String {
    match r {
        Ok(_) => "closed".to_owned(),
        // A peer that vanishes without a closing handshake (ssh kills its ProxyCommand) is the
        // normal end of an SSH connection.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            "closed".to_owned()
        }
        Err(e) => format!("closed: {e}"),
    }
}

/// Splices the client's upgraded connection with the next hop's until either side closes or
/// `stop` resolves, counting bytes into `traffic`. When `stop` cuts the connection, the client
/// gets a WebSocket close frame with the reason at the next frame boundary (within
/// [`CLOSE_GRACE`]). Returns why it ended.
pub async fn splice(
    client: OnUpgrade,
    hop: Upgraded,
    traffic: Arc<Traffic>,
    stop: impl std::future::Future<Output = String>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let client = match tokio::time::timeout(HOP_TIMEOUT, client).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return format!("client upgrade failed: {e}"),
        Err(_) => return "client upgrade timed out".to_owned(),
    };
    let client = Counted { inner: TokioIo::new(client), read: traffic.clone(), up: true };
    let hop = Counted { inner: TokioIo::new(hop), read: traffic, up: false };
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut hop_read, mut hop_write) = tokio::io::split(hop);
    let up = async {
        // The same 64 KiB as `down`: `tokio::io::copy`'s own 8 KiB buffer made uploads (scp, rsync)
        // take eight reads and writes per 64 KiB frame (make bench, ssh-throughput, strace).
        let mut client_read = tokio::io::BufReader::with_capacity(64 * 1024, &mut client_read);
        let r = tokio::io::copy_buf(&mut client_read, &mut hop_write).await;
        let _ = hop_write.shutdown().await;
        ended(r)
    };
    let down = async {
        let mut frames = FrameTracker::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut stop = std::pin::pin!(stop);
        let mut cut: Option<(String, tokio::time::Instant)> = None;
        loop {
            if let Some((reason, _)) = &cut
                && frames.at_boundary()
            {
                let _ = client_write.write_all(&close_frame(reason)).await;
                let _ = client_write.shutdown().await;
                return reason.clone();
            }
            let grace = cut.as_ref().map(|(_, at)| *at);
            tokio::select! {
                r = hop_read.read(&mut buf) => {
                    let n = match r {
                        Ok(0) => {
                            let _ = client_write.shutdown().await;
                            return cut.map_or_else(|| "closed".to_owned(), |(r, _)| r);
                        }
                        Ok(n) => n,
                        Err(e) => return cut.map_or_else(|| ended(Err(e)), |(r, _)| r),
                    };
                    let keep = frames.feed(&buf[..n], cut.is_some());
                    if let Err(e) = client_write.write_all(&buf[..keep]).await {
                        return cut.map_or_else(|| ended(Err(e)), |(r, _)| r);
                    }
                }
                why = &mut stop, if cut.is_none() => {
                    cut = Some((why, tokio::time::Instant::now() + CLOSE_GRACE));
                }
                () = tokio::time::sleep_until(grace.unwrap_or_else(tokio::time::Instant::now)), if grace.is_some() => {
                    return cut.map_or_else(String::new, |(r, _)| r);
                }
            }
        }
    };
    tokio::select! {
        why = up => why,
        why = down => why,
    }
}

/// The tunnel of one runtime host.
pub struct NodeTunnel {
    url: url::Url,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct TunnelState {
    secret: Arc<Vec<u8>>,
    runtime: Arc<dyn activities::runtime::RuntimeProvider>,
}

impl NodeTunnel {
    /// Listens on `listen` and serves until the task is aborted. `advertised` is the URL the API
    /// should use (default: `http://` + the bound address).
    pub async fn start(
        listen: SocketAddr,
        advertised: Option<url::Url>,
        secret: Vec<u8>,
        runtime: Arc<dyn activities::runtime::RuntimeProvider>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
            format!("node tunnel: cannot listen on {listen} (node.tunnel_listen)")
        })?;
        let local = listener.local_addr()?;
        let url = match advertised {
            Some(u) => u,
            None => url::Url::parse(&format!("http://{local}"))?,
        };
        let state = TunnelState { secret: Arc::new(secret), runtime };
        let app = axum::Router::new()
            .route("/v1/sessions/{session}/{generation}/{kind}", axum::routing::get(tunnel))
            .with_state(state);
        let task = tokio::spawn(async move {
            use axum::serve::ListenerExt;
            // SSH's handshake is many small writes each way: without it, each waits for a
            // delayed ACK at this hop (BENCHMARKS.md, cold start).
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("node tunnel stopped: {e}");
            }
        });
        Ok(Self { url, task })
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    pub fn into_task(self) -> tokio::task::JoinHandle<()> {
        self.task
    }
}

fn refuse(status: StatusCode, code: sdk::ErrorCode, message: &str) -> Response {
    (status, axum::Json(sdk::ApiError::new(code, message))).into_response()
}

async fn tunnel(
    State(state): State<TunnelState>,
    Path((session, generation, kind)): Path<(String, u64, String)>,
    mut req: Request,
) -> Response {
    if !matches!(kind.as_str(), "ssh" | "pty") {
        return refuse(StatusCode::NOT_FOUND, sdk::ErrorCode::NotFound, "not found");
    }
    if state.secret.is_empty() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            sdk::ErrorCode::Unavailable,
            "this node has no runtime.secret: connections are disabled",
        );
    }
    let expected = domain::connect::agent_token(&state.secret, &session, generation);
    let presented = crate::auth::bearer(req.headers()).unwrap_or("");
    if !domain::secrets::constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            sdk::ErrorCode::Unauthenticated,
            "the agent token does not match this session",
        );
    }
    if !is_websocket_upgrade(req.headers()) {
        return refuse(
            StatusCode::BAD_REQUEST,
            sdk::ErrorCode::InvalidRequest,
            "expected a WebSocket upgrade",
        );
    }
    let name = activities::runtime::container_name(&session, generation);
    // The runtime's own view of the container: `agent_port` is set only while it runs.
    let port = match state.runtime.inspect(&name).await {
        Ok(Some(info)) => match info.agent_port {
            Some(port) => port,
            None => {
                return refuse(
                    StatusCode::CONFLICT,
                    sdk::ErrorCode::Conflict,
                    "the session's container is not running",
                );
            }
        },
        Ok(None) => {
            return refuse(
                StatusCode::NOT_FOUND,
                sdk::ErrorCode::NotFound,
                "no container for this session generation on this node",
            );
        }
        Err(e) => {
            tracing::warn!("node tunnel: inspecting {name}: {e}");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                sdk::ErrorCode::Unavailable,
                "the node's container runtime did not answer; retry in a moment",
            );
        }
    };
    let Some(client) = take_upgrade(&mut req) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            sdk::ErrorCode::InvalidRequest,
            "this connection cannot be upgraded",
        );
    };
    let mut headers = HeaderMap::new();
    for (name, v) in req.headers() {
        let n = name.as_str();
        if n == "authorization" || n.starts_with("x-burstflare-") {
            headers.append(name.clone(), v.clone());
        }
    }
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let hop = Hop {
        authority: format!("127.0.0.1:{port}"),
        path_and_query: format!("/{kind}{query}"),
        headers,
    };
    match open(req.headers(), hop).await {
        Ok((answer, upstream)) => {
            tokio::spawn(async move {
                let traffic = Arc::new(Traffic::default());
                splice(client, upstream, traffic, std::future::pending()).await;
            });
            answer
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn frame(payload: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match payload {
            0..=125 => f.push(m | u8::try_from(payload).unwrap()),
            126..=65535 => {
                f.push(m | 126);
                f.extend_from_slice(&u16::try_from(payload).unwrap().to_be_bytes());
            }
            _ => {
                f.push(m | 127);
                f.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(7u8, payload));
        f
    }

    #[test]
    fn frames_are_tracked_across_reads_of_any_size() {
        let stream: Vec<u8> =
            [frame(3, false), frame(300, false), frame(70_000, false), frame(0, true)].concat();
        for chunk in [1, 2, 3, 7, 1000, stream.len()] {
            let mut t = FrameTracker::default();
            let mut boundaries = Vec::new();
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                let mut off = 0;
                while off < piece.len() {
                    let n = t.feed(&piece[off..], true);
                    if n == 0 {
                        // At a boundary: step over one byte to go on.
                        let m = t.feed(&piece[off..off + 1], false);
                        off += m;
                        at += m;
                        continue;
                    }
                    off += n;
                    at += n;
                    if t.at_boundary() {
                        boundaries.push(at);
                    }
                }
            }
            assert!(t.at_boundary(), "chunk {chunk}");
            let want = [5, 5 + 304, 5 + 304 + 70_010, stream.len()];
            for w in want {
                assert!(boundaries.contains(&w), "chunk {chunk}: {w} not in {boundaries:?}");
            }
        }
    }

    #[test]
    fn a_cut_stops_at_the_end_of_the_frame_in_flight() {
        let stream = [frame(10, false), frame(10, false)].concat();
        let mut t = FrameTracker::default();
        assert_eq!(t.feed(&stream[..4], false), 4);
        // Stopping mid-frame still lets the rest of that frame through, and no more.
        assert_eq!(t.feed(&stream[4..], true), 8);
        assert!(t.at_boundary());
    }

    #[test]
    fn close_frames_carry_code_1008_and_a_cut_reason() {
        let f = close_frame("runtime token revoked");
        assert_eq!(&f[..4], &[0x88, 23, 0x03, 0xf0]);
        assert_eq!(&f[4..], b"runtime token revoked");
        let long = "é".repeat(100);
        let f = close_frame(&long);
        assert!(f.len() <= 2 + 125 && std::str::from_utf8(&f[4..]).is_ok());
    }
}
