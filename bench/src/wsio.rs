//! `burstflare-bench __ws-stdio URL`: the ProxyCommand of the benchmarks' **direct** paths.
//! It does what `flare ssh --stdio` does after the API has let it through, but straight to a
//! session agent's published port (`ws://127.0.0.1:PORT/ssh`) with the agent token the node
//! tunnel would add: SSH bytes from stdin go out as binary WebSocket messages, binary messages
//! come back on stdout. Built like flare's bridge (`cli/src/ssh/proxy.rs`) so that the two
//! paths differ only by the hops in between: a current-thread runtime, Nagle off, 64 KiB reads,
//! non-blocking pipes when ssh hands it pipes.
//!
//! The agent token comes from `BFBENCH_AGENT_TOKEN`, the keys the connection may use (OpenSSH
//! public key lines, base64 as the agent wants them) from `BFBENCH_AUTHORIZED_KEYS`.

use anyhow::Context;
use futures::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// The first argument that selects this mode (hidden: only ssh runs it).
pub const ARG: &str = "__ws-stdio";
pub const TOKEN_ENV: &str = "BFBENCH_AGENT_TOKEN";
pub const KEYS_ENV: &str = "BFBENCH_AUTHORIZED_KEYS";

const READ_BUF: usize = 64 * 1024;

/// Runs the bridge to `url` until either side ends; the process's exit code.
pub fn main(url: &str) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("burstflare-bench {ARG}: {e}");
            return 255;
        }
    };
    match rt.block_on(bridge(url)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("burstflare-bench {ARG}: {e:#}");
            255
        }
    }
}

async fn bridge(url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    let host = parsed.host_str().context("the URL has no host")?;
    anyhow::ensure!(host == "127.0.0.1", "only 127.0.0.1 is allowed, not {host}");
    let port = parsed.port_or_known_default().unwrap_or(80);
    let token = std::env::var(TOKEN_ENV).with_context(|| format!("{TOKEN_ENV} is not set"))?;
    let keys = std::env::var(KEYS_ENV).with_context(|| format!("{KEYS_ENV} is not set"))?;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    tcp.set_nodelay(true)?;
    let mut req = url.into_client_request()?;
    req.headers_mut().insert("authorization", HeaderValue::from_str(&format!("Bearer {token}"))?);
    req.headers_mut().insert("x-burstflare-authorized-keys", HeaderValue::from_str(&keys)?);
    let (ws, _) = tokio_tungstenite::client_async(req, tcp).await.context("WebSocket upgrade")?;
    let (mut tx, mut rx) = ws.split();
    let mut input = stdin();
    let mut output = stdout();
    let up = async {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match input.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if tx.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(Message::Close(None)).await;
    };
    let down = async {
        while let Some(Ok(m)) = rx.next().await {
            let written = match m {
                Message::Binary(data) => {
                    output.write_all(&data).await.is_ok() && output.flush().await.is_ok()
                }
                Message::Close(_) => false,
                _ => true,
            };
            if !written {
                break;
            }
        }
    };
    tokio::select! {
        () = up => {},
        () = down => {},
    }
    Ok(())
}

type Input = Box<dyn AsyncRead + Unpin>;
type Output = Box<dyn AsyncWrite + Unpin>;

/// stdin: a non-blocking pipe reader when it is a FIFO (as ssh gives it), else tokio's stdin.
fn stdin() -> Input {
    if let Some(pipe) = fifo(&std::io::stdin())
        .and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
    {
        return Box::new(pipe);
    }
    Box::new(tokio::io::stdin())
}

/// stdout: a non-blocking pipe writer when it is a FIFO, else tokio's stdout.
fn stdout() -> Output {
    if let Some(pipe) = fifo(&std::io::stdout())
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd).ok())
    {
        return Box::new(pipe);
    }
    Box::new(tokio::io::stdout())
}

fn fifo(stdio: &impl std::os::fd::AsFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::unix::fs::FileTypeExt as _;
    let fd = stdio.as_fd().try_clone_to_owned().ok()?;
    let file = std::fs::File::from(fd);
    let is_fifo = file.metadata().ok()?.file_type().is_fifo();
    is_fifo.then(|| std::os::fd::OwnedFd::from(file))
}
