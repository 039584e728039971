//! Reading russh channels without ever stalling the SSH connection, and bridging channels to
//! sockets.
//!
//! russh delivers every message of a channel (data, EOF, requests, window adjustments…) through a
//! bounded queue (`channel_buffer_size` messages), and its connection loop *waits* when that queue
//! is full: one channel nobody reads, or whose consumer is slow, stalls every other channel of the
//! connection, keepalives included. russh also grants the client more window as soon as data
//! arrives, not when it is consumed, so the SSH window does not bound what a channel buffers.
//!
//! So every channel gets a [`drain`] task that reads it at once, always, until it closes:
//!
//! - Data goes to an unbounded queue, but each chunk holds permits of a per-channel byte budget
//!   ([`INPUT_BUDGET`]); they are released when the consumer has written it. Only when a consumer
//!   keeps more than the budget unwritten does the drain task wait, and then (and only then) the
//!   connection can stall, as it would without this. A consumer that is gone (the process closed
//!   its stdin, the socket closed) makes the data be dropped at once, so a slow or dead consumer
//!   does not hold the connection.
//! - Control messages (EOF, close, requests, window changes, signals) go to a second, unbounded
//!   queue that never waits.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Pty, Sig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::activity::Activity;

/// Bytes of client input one channel may hold before its drain task waits for the consumer.
pub const INPUT_BUDGET: usize = 8 << 20;

/// Client input, in order: data chunks, then possibly EOF.
#[derive(Debug)]
pub enum Input {
    /// A chunk of channel data; the permit returns its bytes to the budget when dropped.
    Data(Bytes, OwnedSemaphorePermit),
    Eof,
}

/// A channel request or event other than data.
#[derive(Debug)]
pub enum Control {
    Pty {
        term: String,
        cols: u32,
        rows: u32,
        modes: Vec<(Pty, u32)>,
    },
    Env {
        name: String,
        value: String,
    },
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
    WindowChange {
        cols: u32,
        rows: u32,
    },
    Signal(Sig),
    AgentForward,
    /// The client closed the channel, or the connection ended.
    Closed,
}

/// The receiving ends of a drained channel.
#[derive(Debug)]
pub struct Drained {
    pub input: mpsc::UnboundedReceiver<Input>,
    pub control: mpsc::UnboundedReceiver<Control>,
}

/// Starts the task that reads `read` until the channel closes; see the module docs. `activity`
/// is recorded (at most once a second) for every data message.
pub fn drain(mut read: ChannelReadHalf, activity: Option<Arc<Activity>>) -> Drained {
    let (input_tx, input) = mpsc::unbounded_channel();
    let (control_tx, control) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(INPUT_BUDGET));
    tokio::spawn(async move {
        while let Some(message) = read.wait().await {
            let control = match message {
                ChannelMsg::Data { data } => {
                    if let Some(activity) = &activity {
                        activity.touch();
                    }
                    if input_tx.is_closed() {
                        continue;
                    }
                    let bytes = u32::try_from(data.len().clamp(1, INPUT_BUDGET)).unwrap_or(1);
                    let Ok(permit) = budget.clone().acquire_many_owned(bytes).await else {
                        continue;
                    };
                    // A consumer that went away while we waited: drop the data.
                    let _ = input_tx.send(Input::Data(data, permit));
                    continue;
                }
                // Stderr from a client is not a thing; ignore it like sshd.
                ChannelMsg::ExtendedData { .. } => continue,
                ChannelMsg::Eof => {
                    let _ = input_tx.send(Input::Eof);
                    continue;
                }
                ChannelMsg::Close => Control::Closed,
                ChannelMsg::RequestPty { term, col_width, row_height, terminal_modes, .. } => {
                    Control::Pty { term, cols: col_width, rows: row_height, modes: terminal_modes }
                }
                ChannelMsg::SetEnv { variable_name, variable_value, .. } => {
                    Control::Env { name: variable_name, value: variable_value }
                }
                ChannelMsg::RequestShell { .. } => Control::Shell,
                ChannelMsg::Exec { command, .. } => Control::Exec(command),
                ChannelMsg::RequestSubsystem { name, .. } => Control::Subsystem(name),
                ChannelMsg::WindowChange { col_width, row_height, .. } => {
                    Control::WindowChange { cols: col_width, rows: row_height }
                }
                ChannelMsg::Signal { signal } => Control::Signal(signal),
                ChannelMsg::AgentForward { .. } => Control::AgentForward,
                // Window adjustments and the rest: nothing to do, but they must be read.
                _ => continue,
            };
            let _ = control_tx.send(control);
        }
        // The connection ended (or the channel was closed and forgotten).
        let _ = control_tx.send(Control::Closed);
    });
    Drained { input, control }
}

/// Writes channel input to `writer` until EOF (then shuts `writer` down) or until `writer` fails.
/// Either way it then drops the queue, so whatever the client still sends is dropped at once
/// instead of holding the channel's budget.
pub async fn write_input<W: AsyncWrite + Unpin>(
    mut input: mpsc::UnboundedReceiver<Input>,
    mut writer: W,
) {
    while let Some(message) = input.recv().await {
        match message {
            Input::Data(data, _permit) => {
                if writer.write_all(&data).await.is_err() {
                    return;
                }
            }
            Input::Eof => {
                let _ = writer.shutdown().await;
                return;
            }
        }
    }
}

/// Copies `reader` into the channel (`ext` = Some(1) for stderr) until EOF or an error; the
/// channel's writer waits for the client's window, which is the backpressure on the process.
///
/// With `exited` (a process's exit), the copy also ends once the process has exited and `reader`
/// then stays silent for [`OUTPUT_IDLE_AFTER_EXIT`]: a background job may keep the pipe or the
/// terminal open forever. Waiting for the client's window never counts as silence.
pub async fn copy_output<R: AsyncRead + Unpin>(
    mut reader: R,
    write: &ChannelWriteHalf<Msg>,
    ext: Option<u32>,
    mut exited: Option<watch::Receiver<bool>>,
) {
    let mut writer = write.make_writer_ext(ext);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = tokio::select! {
            read = reader.read(&mut buf) => read,
            () = idle_after_exit(exited.as_mut()) => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if writer.write_all(chunk).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
}

/// How long output may stay silent after its process exited.
pub const OUTPUT_IDLE_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Resolves [`OUTPUT_IDLE_AFTER_EXIT`] after `exited` turned true; never without one.
async fn idle_after_exit(exited: Option<&mut watch::Receiver<bool>>) {
    if let Some(exited) = exited
        && exited.wait_for(|exited| *exited).await.is_ok()
    {
        tokio::time::sleep(OUTPUT_IDLE_AFTER_EXIT).await;
        return;
    }
    std::future::pending().await
}

/// Bridges a channel and a connected socket (direct-tcpip, forwarded-tcpip, agent forwarding):
/// bytes both ways, EOF passed on both ways, the channel closed once both directions ended or
/// the client closed it.
pub async fn bridge<S>(channel: Channel<Msg>, socket: S, activity: Option<Arc<Activity>>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = channel.split();
    let Drained { input, mut control } = drain(read, activity);
    let (socket_read, socket_write) = tokio::io::split(socket);
    let mut to_socket = tokio::spawn(write_input(input, socket_write));
    let from_socket = async {
        copy_output(socket_read, &write, None, None).await;
        let _ = write.eof().await;
    };
    tokio::pin!(from_socket);
    let (mut outbound_done, mut inbound_done) = (false, false);
    loop {
        tokio::select! {
            () = &mut from_socket, if !outbound_done => outbound_done = true,
            _ = &mut to_socket, if !inbound_done => inbound_done = true,
            message = control.recv() => match message {
                Some(Control::Closed) | None => break,
                Some(_) => {}
            },
        }
        if outbound_done && inbound_done {
            break;
        }
    }
    to_socket.abort();
    let _ = write.close().await;
}
