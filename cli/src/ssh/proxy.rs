//! The bridge of `flare ssh --stdio`, ssh's ProxyCommand: SSH bytes read from stdin go to the
//! session's SSH WebSocket as binary messages, binary messages from it are written to stdout.
//!
//! - stdin and stdout are the pipes ssh gives its ProxyCommand: read and written without
//!   blocking (`tokio::net::unix::pipe`); anything else (a socket, a file) goes through tokio's
//!   blocking stdio instead.
//! - The TCP connection has Nagle off; `wss://` is TLS with rustls and the platform's trust
//!   store, as reqwest does for the API.
//! - A ping every 15 s; 45 s without hearing anything from the server ends the connection.
//! - The runtime token travels only in the `Authorization` header of the upgrade request.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::fail::{Exit, Failure};

/// How long the TCP connection, TLS and the WebSocket upgrade may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes read from stdin at a time: one binary message at most this big.
const READ_BUF: usize = 64 * 1024;

/// The keepalive and shutdown timings of [`bridge`].
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A ping this often.
    pub ping_every: Duration,
    /// Give up when nothing at all came from the server for this long.
    pub silence_limit: Duration,
    /// After stdin closed and flare sent its close: how long to wait for the server's.
    pub close_grace: Duration,
}

pub const TIMING: Timing = Timing {
    ping_every: Duration::from_secs(15),
    silence_limit: Duration::from_secs(45),
    close_grace: Duration::from_secs(5),
};

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The server closed it: its close code (none when its frame had none) and reason (or the
    /// reason of a `closing` text message before it).
    Closed { code: Option<u16>, reason: String },
    /// ssh is done with it: stdin ended, or stdout is gone.
    Local,
    /// A signal: SIGHUP (ssh sends it to its ProxyCommand as it exits), SIGINT or SIGTERM.
    Signal(Sig),
    /// Nothing came from the server for [`Timing::silence_limit`].
    Silent(Duration),
    /// The server's side ended without a WebSocket close: the API cuts a connection that way
    /// when access is revoked, its token expired or the session stopped.
    Cut,
    /// The connection broke.
    Broken(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Hangup,
    Interrupt,
    Terminate,
}

impl End {
    /// The exit code of `flare ssh --stdio` and what it says on stderr (nothing for the ends
    /// that are normal: ssh went away, or the server closed normally without a word).
    pub fn outcome(&self, server: &str) -> (u8, Option<String>) {
        match self {
            Self::Local | Self::Signal(Sig::Hangup) => (0, None),
            Self::Signal(Sig::Interrupt) => (130, None),
            Self::Signal(Sig::Terminate) => (143, None),
            Self::Closed { code: None | Some(1000), reason } if reason.is_empty() => (0, None),
            Self::Closed { code: None | Some(1000), reason } => {
                (0, Some(format!("the server closed the connection: {reason}")))
            }
            Self::Closed { code: Some(code), reason } => {
                let why = if reason.is_empty() { close_code_words(*code) } else { reason.clone() };
                (255, Some(format!("the server closed the connection: {why}")))
            }
            Self::Silent(d) => (
                255,
                Some(format!(
                    "no answer from {server} for {} s: giving up the connection",
                    d.as_secs()
                )),
            ),
            Self::Cut => (
                255,
                Some(
                    "the server ended the connection without a reason: access revoked, the \
                     connection's token expired or the session stopped (`flare session show NAME` \
                     shows its state)"
                        .into(),
                ),
            ),
            Self::Broken(e) => (255, Some(format!("the connection to {server} broke: {e}"))),
        }
    }
}

fn close_code_words(code: u16) -> String {
    match CloseCode::from(code) {
        CloseCode::Away => "it is going away (code 1001)".into(),
        CloseCode::Policy => "access was revoked or is no longer allowed (code 1008)".into(),
        CloseCode::Error => "internal error (code 1011)".into(),
        CloseCode::Again => "try again later (code 1013)".into(),
        _ => format!("code {code}"),
    }
}

/// A message for the person at the terminal while ssh may have it in raw mode (where `\n` does
/// not return the carriage).
pub fn notice(message: &str) {
    use std::io::IsTerminal as _;
    if std::io::stderr().is_terminal() {
        eprint!("\rflare: {message}\r\n");
    } else {
        eprintln!("flare: {message}");
    }
}

/// Carries bytes between `input`/`output` and `ws` until one side ends, or `side` does (the
/// token renewal and the signals).
pub async fn bridge<S, R, W>(
    ws: WebSocketStream<S>,
    mut input: R,
    mut output: W,
    timing: Timing,
    side: impl Future<Output = End>,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut tx, mut rx) = ws.split();
    let heard = Cell::new(Instant::now());
    let closing = RefCell::new(String::new());

    let up = async {
        let mut buf = vec![0u8; READ_BUF];
        let start = tokio::time::Instant::now() + timing.ping_every;
        let mut ping = tokio::time::interval_at(start, timing.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                read = input.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                        if let Err(e) = tx.send(Message::Binary(data)).await {
                            return if is_cut(&e) { End::Cut } else { End::Broken(ws_error(&e)) };
                        }
                    }
                },
                _ = ping.tick() => {
                    if let Err(e) = tx.send(Message::Ping(Bytes::new())).await {
                        return if is_cut(&e) { End::Cut } else { End::Broken(ws_error(&e)) };
                    }
                }
            }
        }
        // ssh closed its end: close ours and give the server a moment to answer.
        let bye = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = tx.send(Message::Close(Some(bye))).await;
        tokio::time::sleep(timing.close_grace).await;
        End::Local
    };

    let down = async {
        loop {
            let message = match rx.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) if is_cut(&e) => return End::Cut,
                Some(Err(e)) => return End::Broken(ws_error(&e)),
                None => return End::Cut,
            };
            heard.set(Instant::now());
            match message {
                Message::Binary(data) => {
                    let written = async {
                        output.write_all(&data).await?;
                        output.flush().await
                    };
                    if written.await.is_err() {
                        return End::Local;
                    }
                }
                Message::Text(text) => {
                    if let Ok(sdk::TerminalControl::Closing { reason }) =
                        serde_json::from_str(text.as_str())
                    {
                        *closing.borrow_mut() = reason;
                    }
                }
                Message::Close(frame) => {
                    let (code, reason) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.as_str().to_string()),
                        None => (None, String::new()),
                    };
                    let reason = if reason.is_empty() { closing.borrow().clone() } else { reason };
                    return End::Closed { code, reason };
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    };

    let watchdog = async {
        let every = (timing.silence_limit / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            let quiet = heard.get().elapsed();
            if quiet >= timing.silence_limit {
                return End::Silent(quiet);
            }
        }
    };

    let end = tokio::select! {
        end = up => end,
        end = down => end,
        end = watchdog => end,
        end = side => end,
    };
    // Sends the answer to the server's close (or flare's own) if it is still queued.
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.close()).await;
    end
}

/// The peer went away without a closing handshake.
fn is_cut(e: &WsError) -> bool {
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    match e {
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::AlreadyClosed
        | WsError::ConnectionClosed => true,
        WsError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

fn ws_error(e: &WsError) -> String {
    match e {
        WsError::Protocol(p) => p.to_string(),
        WsError::Io(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// SIGHUP, SIGINT and SIGTERM, caught from the moment this is made (so a runtime token made
/// afterwards can still be revoked when one comes).
pub struct Signals {
    #[cfg(unix)]
    kinds: Option<[(tokio::signal::unix::Signal, Sig); 3]>,
}

impl Signals {
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let kinds = (|| {
                Some([
                    (signal(SignalKind::hangup()).ok()?, Sig::Hangup),
                    (signal(SignalKind::interrupt()).ok()?, Sig::Interrupt),
                    (signal(SignalKind::terminate()).ok()?, Sig::Terminate),
                ])
            })();
            Self { kinds }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Sig {
        #[cfg(unix)]
        if let Some([(a, sa), (b, sb), (c, sc)]) = self.kinds.as_mut() {
            return tokio::select! {
                _ = a.recv() => *sa,
                _ = b.recv() => *sb,
                _ = c.recv() => *sc,
            };
        }
        std::future::pending().await
    }
}

// ---------------------------------------------------------------------------------------------
// stdio

pub type Input = Box<dyn AsyncRead + Unpin>;
pub type Output = Box<dyn AsyncWrite + Unpin>;

/// stdin: a non-blocking pipe reader when it is a FIFO (as ssh gives it), else tokio's stdin.
pub fn stdin() -> Input {
    #[cfg(unix)]
    if let Some(pipe) = fifo(&std::io::stdin())
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
    {
        return Box::new(pipe);
    }
    Box::new(tokio::io::stdin())
}

/// stdout: a non-blocking pipe writer when it is a FIFO, else tokio's stdout.
pub fn stdout() -> Output {
    #[cfg(unix)]
    if let Some(pipe) = fifo(&std::io::stdout())
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok())
    {
        return Box::new(pipe);
    }
    Box::new(tokio::io::stdout())
}

/// A duplicate of `stdio`'s descriptor when it is a FIFO.
#[cfg(unix)]
fn fifo(stdio: &impl std::os::fd::AsFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::unix::fs::FileTypeExt as _;
    let fd = stdio.as_fd().try_clone_to_owned().ok()?;
    let file = std::fs::File::from(fd);
    file.metadata().ok()?.file_type().is_fifo().then(|| file.into())
}

// ---------------------------------------------------------------------------------------------
// connecting

/// Any byte stream a WebSocket can run over (plain TCP or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Socket = WebSocketStream<Box<dyn Io>>;

/// Opens the WebSocket at `url` (`ws://` or `wss://`) with `token` as its bearer. `what` names
/// the session in error messages.
pub async fn connect(url: &url::Url, token: &str, what: &str) -> anyhow::Result<Socket> {
    tokio::time::timeout(CONNECT_TIMEOUT, open(url, token, what)).await.map_err(|_| {
        Failure::new(
            Exit::Unreachable,
            "unreachable",
            format!(
                "no WebSocket connection to {} within {} s",
                origin(url),
                CONNECT_TIMEOUT.as_secs()
            ),
        )
        .hint("check that the server is up and reachable, then try again")
    })?
}

async fn open(url: &url::Url, token: &str, what: &str) -> anyhow::Result<Socket> {
    let unreachable = |e: &dyn std::fmt::Display| -> anyhow::Error {
        Failure::new(
            Exit::Unreachable,
            "unreachable",
            format!("could not reach the BurstFlare server at {} ({e})", origin(url)),
        )
        .hint(
            "check the server URL (--server, FLARE_SERVER or `flare config set server URL`) and \
             that the server is running",
        )
        .into()
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let tcp = match url.host() {
        Some(url::Host::Domain(d)) => tokio::net::TcpStream::connect((d, port)).await,
        Some(url::Host::Ipv4(ip)) => tokio::net::TcpStream::connect((ip, port)).await,
        Some(url::Host::Ipv6(ip)) => tokio::net::TcpStream::connect((ip, port)).await,
        None => return Err(Failure::error(format!("{} has no host", origin(url))).into()),
    }
    .map_err(|e| unreachable(&e))?;
    // SSH's keystrokes are small writes: send them at once.
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if url.scheme() == "wss" {
        let name = match url.host() {
            Some(url::Host::Ipv4(ip)) => {
                rustls::pki_types::ServerName::from(std::net::IpAddr::V4(ip))
            }
            Some(url::Host::Ipv6(ip)) => {
                rustls::pki_types::ServerName::from(std::net::IpAddr::V6(ip))
            }
            _ => rustls::pki_types::ServerName::try_from(
                url.host_str().unwrap_or_default().to_string(),
            )
            .map_err(|e| unreachable(&e))?,
        };
        let tls = tokio_rustls::TlsConnector::from(tls_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(&e))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut request = url.as_str().into_client_request()?;
    let mut bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| Failure::error("the runtime token is not a valid header value"))?;
    bearer.set_sensitive(true);
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, bearer);
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("flare/", env!("CARGO_PKG_VERSION"))),
    );
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _response)) => Ok(ws),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let message = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice::<sdk::ApiError>(b).ok())
                .map(|e| e.message)
                .unwrap_or_else(|| {
                    response.status().canonical_reason().unwrap_or("refused").to_lowercase()
                });
            Err(refused(status, &message, what).into())
        }
        Err(e) => Err(unreachable(&ws_error(&e))),
    }
}

/// The failure for an upgrade the server answered with `status`.
pub fn refused(status: u16, message: &str, what: &str) -> Failure {
    match status {
        401 => Failure::new(
            Exit::Auth,
            "unauthenticated",
            format!("the server did not accept the connection's token: {message}"),
        )
        .hint("connect again; if it keeps happening, run `flare auth login` to sign in again"),
        403 => Failure::new(Exit::Error, "forbidden", format!("no access to {what}: {message}"))
            .hint("ask an owner or admin of the workspace for access"),
        404 => Failure::not_found(format!("{what} was not found: {message}"))
            .hint("`flare session list --all` lists the workspace's sessions"),
        // The server says what is wrong (no SSH key registered, the session not running…) and
        // what to do about it.
        409 => {
            Failure::new(Exit::Error, "conflict", format!("cannot connect to {what}: {message}"))
        }
        502..=504 => Failure::new(
            Exit::Error,
            "unavailable",
            format!("the SSH server of {what} cannot be reached: {message}"),
        )
        .hint("try again in a moment; `flare session why NAME` shows what the session is doing"),
        _ => Failure::new(
            Exit::Error,
            "refused",
            format!("the server refused the SSH connection to {what} ({status}): {message}"),
        ),
    }
}

/// `https://host:port` of a WebSocket URL, for messages (no path, no query).
fn origin(url: &url::Url) -> String {
    let scheme = if url.scheme() == "wss" { "https" } else { "http" };
    match url.port() {
        Some(p) => format!("{scheme}://{}:{p}", url.host_str().unwrap_or_default()),
        None => format!("{scheme}://{}", url.host_str().unwrap_or_default()),
    }
}

/// rustls with the platform verifier, as reqwest is set up for the API; HTTP/1.1 only (the
/// WebSocket upgrade).
fn tls_config() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| Failure::error(format!("cannot set up TLS: {e}")))?
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const FAST: Timing = Timing {
        ping_every: Duration::from_millis(50),
        silence_limit: Duration::from_millis(400),
        close_grace: Duration::from_millis(300),
    };

    /// A client WebSocket over an in-memory pipe and the server end of it.
    async fn pair()
    -> (WebSocketStream<tokio::io::DuplexStream>, WebSocketStream<tokio::io::DuplexStream>) {
        let (c, s) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(tokio_tungstenite::accept_async(s));
        let (client, _) = tokio_tungstenite::client_async("ws://session/ssh", c).await.unwrap();
        (client, server.await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn bytes_flow_both_ways_and_stdin_eof_closes_cleanly() {
        let (client, mut server) = pair().await;
        let (mut ssh_in, input) = tokio::io::duplex(1 << 16);
        let (output, mut ssh_out) = tokio::io::duplex(1 << 16);
        let echo = tokio::spawn(async move {
            let mut pings = 0;
            while let Some(Ok(m)) = server.next().await {
                match m {
                    Message::Binary(b) => {
                        let mut up = b.to_vec();
                        up.make_ascii_uppercase();
                        server.send(Message::Binary(up.into())).await.unwrap();
                    }
                    Message::Ping(_) => pings += 1,
                    // Reading on sends tungstenite's answer to the close.
                    _ => {}
                }
            }
            pings
        });
        let ssh = async move {
            ssh_in.write_all(b"ssh-2.0-hello").await.unwrap();
            let mut got = vec![0u8; 13];
            ssh_out.read_exact(&mut got).await.unwrap();
            assert_eq!(got, b"SSH-2.0-HELLO");
            tokio::time::sleep(Duration::from_millis(180)).await;
            drop(ssh_in);
            ssh_out
        };
        let (end, _ssh_out) =
            tokio::join!(bridge(client, input, output, FAST, std::future::pending()), ssh);
        assert_eq!(end, End::Closed { code: Some(1000), reason: String::new() });
        assert_eq!(end.outcome("s"), (0, None));
        assert!(echo.await.unwrap() >= 2, "pings every 50 ms");
    }

    #[tokio::test]
    async fn a_close_from_the_server_ends_with_its_reason() {
        let (client, mut server) = pair().await;
        let (_ssh_in, input) = tokio::io::duplex(64);
        let (output, _ssh_out) = tokio::io::duplex(64);
        let revoke = async move {
            server
                .send(Message::text(r#"{"type":"closing","reason":"your access was revoked"}"#))
                .await
                .unwrap();
            let bye = CloseFrame { code: CloseCode::Policy, reason: "".into() };
            server.send(Message::Close(Some(bye))).await.unwrap();
            server
        };
        let (end, _server) =
            tokio::join!(bridge(client, input, output, FAST, std::future::pending()), revoke);
        assert_eq!(end, End::Closed { code: Some(1008), reason: "your access was revoked".into() });
        let (code, message) = end.outcome("https://bf");
        assert_eq!(code, 255);
        assert_eq!(message.unwrap(), "the server closed the connection: your access was revoked");
    }

    #[tokio::test]
    async fn a_server_that_drops_the_connection_without_a_close_cut_it() {
        let (client, server) = pair().await;
        let (_ssh_in, input) = tokio::io::duplex(64);
        let (output, _ssh_out) = tokio::io::duplex(64);
        let drop_it = async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(server);
        };
        let (end, ()) =
            tokio::join!(bridge(client, input, output, FAST, std::future::pending()), drop_it);
        assert_eq!(end, End::Cut);
        let (code, message) = end.outcome("s");
        assert_eq!(code, 255);
        assert!(message.unwrap().contains("access revoked"));
    }

    #[tokio::test]
    async fn a_silent_server_is_given_up() {
        let (client, server) = pair().await;
        let (_ssh_in, input) = tokio::io::duplex(64);
        let (output, _ssh_out) = tokio::io::duplex(64);
        // The server never reads, so pongs never come back.
        let end = bridge(client, input, output, FAST, std::future::pending()).await;
        drop(server);
        assert!(matches!(end, End::Silent(d) if d >= FAST.silence_limit), "{end:?}");
        assert!(end.outcome("https://bf").1.unwrap().contains("no answer from https://bf"));
    }

    #[tokio::test]
    async fn a_side_end_such_as_a_signal_ends_the_bridge() {
        let (client, _server) = pair().await;
        let (_ssh_in, input) = tokio::io::duplex(64);
        let (output, _ssh_out) = tokio::io::duplex(64);
        let end = bridge(client, input, output, TIMING, async { End::Signal(Sig::Hangup) }).await;
        assert_eq!(end.outcome("s"), (0, None), "ssh hangs up on its ProxyCommand as it exits");
    }

    #[test]
    fn refusals_say_what_to_do() {
        let f = refused(401, "token expired", "session dev");
        assert_eq!(f.exit, Exit::Auth);
        assert!(f.hint.unwrap().contains("flare auth login"));
        let f = refused(409, "the session is sleeping", "session dev");
        assert_eq!(f.message, "cannot connect to session dev: the session is sleeping");
        assert_eq!(refused(404, "x", "session dev").exit, Exit::NotFound);
        assert_eq!(refused(502, "agent down", "session dev").code, "unavailable");
    }

    #[test]
    fn origins_hide_the_path() {
        let u = url::Url::parse("wss://bf.example.com/api/v1/workspaces/a/sessions/b/ssh").unwrap();
        assert_eq!(origin(&u), "https://bf.example.com");
        let u = url::Url::parse("ws://127.0.0.1:8080/x").unwrap();
        assert_eq!(origin(&u), "http://127.0.0.1:8080");
    }

    #[test]
    fn tls_is_set_up_with_the_platform_verifier() {
        assert_eq!(tls_config().unwrap().alpn_protocols, [b"http/1.1".to_vec()]);
    }
}
