//! WebSocket plumbing on the agent's hyper server: the upgrade handshake, and a WebSocket as a
//! byte stream for the SSH server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{SinkExt, StreamExt, future};
use hyper::header::{CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY};
use hyper::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

/// A server-side WebSocket on an upgraded hyper connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The `Sec-WebSocket-Accept` value for a valid WebSocket upgrade request (GET with
/// `Connection: upgrade`, `Upgrade: websocket`, version 13 and a key); `None` otherwise.
pub fn accept_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |name, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value.to_str().is_ok_and(|value| {
                value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let version_13 = headers.get(SEC_WEBSOCKET_VERSION).is_some_and(|v| v.as_bytes() == b"13");
    if !(has_token(CONNECTION, "upgrade") && has_token(UPGRADE, "websocket") && version_13) {
        return None;
    }
    let key = headers.get(SEC_WEBSOCKET_KEY)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

/// The headers of the `101 Switching Protocols` answer, besides `Sec-WebSocket-Accept`.
pub fn switching_headers(accept: HeaderValue) -> [(hyper::header::HeaderName, HeaderValue); 3] {
    [
        (UPGRADE, HeaderValue::from_static("websocket")),
        (CONNECTION, HeaderValue::from_static("upgrade")),
        (SEC_WEBSOCKET_ACCEPT, accept),
    ]
}

/// Completes the server side of the handshake once hyper has handed over the connection.
pub async fn from_upgraded(upgraded: Upgraded) -> Socket {
    // Defaults: 64 MiB messages, 16 MiB frames; SSH writes are at most a few MiB.
    let config = WebSocketConfig::default();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await
}

/// Bytes read from and written to a stream.
#[derive(Debug, Default)]
pub struct Counters {
    pub read: AtomicU64,
    pub written: AtomicU64,
}

/// A stream that counts the bytes through it.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S> Counted<S> {
    pub fn new(inner: S, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.counters.read.fetch_add(read, Ordering::Relaxed);
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &result {
            self.counters.written.fetch_add(*written as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A WebSocket as a byte stream: each binary message is a chunk of the stream (boundaries mean
/// nothing), a text message is an error, a close ends it; each write+flush is one binary message.
pub fn byte_stream(socket: Socket) -> impl AsyncRead + AsyncWrite + Unpin + Send + 'static {
    let (sink, stream) = socket.split();
    let reader = StreamReader::new(
        stream
            .take_while(|message| future::ready(!matches!(message, Ok(Message::Close(_)))))
            .filter_map(|message| {
                future::ready(match message {
                    Ok(Message::Binary(bytes)) => Some(Ok::<Bytes, io::Error>(bytes)),
                    Ok(Message::Text(_)) => Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on a byte-stream WebSocket",
                    ))),
                    // Pings are answered by tungstenite; pongs and raw frames carry nothing.
                    Ok(_) => None,
                    Err(err) => Some(Err(io::Error::other(err))),
                })
            }),
    );
    let writer = SinkWriter::new(CopyToBytes::new(
        sink.with(|bytes: Bytes| {
            future::ready(Ok::<_, tokio_tungstenite::tungstenite::Error>(Message::Binary(bytes)))
        })
        .sink_map_err(io::Error::other),
    ));
    tokio::io::join(reader, writer)
}
