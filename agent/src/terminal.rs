//! Browser terminals behind `GET /pty?cols=C&rows=R&tid=ID`: a login shell on a pseudo-terminal
//! per terminal, binary WebSocket messages for terminal bytes, JSON text messages for control
//! ([`TerminalControl`]).
//!
//! A terminal with a `tid` outlives its WebSocket: after a drop the shell keeps running for
//! [`DETACHED_LIFETIME`], and a connection with the same `tid` reattaches, first receiving the
//! last [`SCROLLBACK`] bytes of output. A second connection to an attached terminal takes it over
//! (the older socket gets a `closing` message and is closed). When the shell exits, the attached
//! socket gets `{"type":"exit","code":N}` and is closed, and the terminal is forgotten.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::children::ExitStatus;
use crate::connect::{Connect, MAX_TERMINAL_SIDE, Peer, PtyParams};
use crate::log;
use crate::spawn::{self, Launch, PtyIo, PtyMaster};
use crate::wsio::Socket;

/// Output kept for a reattaching browser.
pub const SCROLLBACK: usize = 64 * 1024;
/// How long a dropped terminal with a `tid` waits for a reconnect before its shell is ended.
pub const DETACHED_LIFETIME: Duration = Duration::from_secs(5 * 60);
/// Between SIGHUP and SIGKILL when a terminal is ended.
const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Unwritten terminal input one connection may queue before it is closed.
const INPUT_LIMIT: usize = 4 << 20;
/// After the shell exited, how long output may stay silent before the terminal ends.
const OUTPUT_IDLE_AFTER_EXIT: Duration = Duration::from_millis(500);
/// `TERM` of browser terminals (xterm.js).
pub const TERM: &str = "xterm-256color";

/// Text messages of the terminal WebSocket (JSON), mirroring `sdk::TerminalControl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalControl {
    /// Browser -> agent: the terminal's size changed.
    Resize { cols: u16, rows: u16 },
    /// Agent -> browser: the shell exited with this status; the socket closes next.
    Exit { code: i32 },
    /// Agent -> browser: why the connection is about to close, in words for the user.
    Closing { reason: String },
}

impl TerminalControl {
    fn message(&self) -> Message {
        Message::text(serde_json::to_string(self).unwrap_or_default())
    }
}

/// The reconnectable terminals (those with a `tid`) of this agent.
#[derive(Debug, Default)]
pub struct Terminals {
    by_tid: Mutex<HashMap<String, Arc<Terminal>>>,
}

impl Terminals {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Terminal>>> {
        self.by_tid.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One shell on a pseudo-terminal.
#[derive(Debug)]
struct Terminal {
    tid: Option<String>,
    pid: Pid,
    master: Arc<PtyMaster>,
    exited: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    scrollback: VecDeque<u8>,
    attached: Option<Attachment>,
    next_attachment: u64,
    /// Counts detaches, so that an old detach timer does not end a reattached terminal.
    detaches: u64,
    ended: bool,
}

#[derive(Debug)]
struct Attachment {
    id: u64,
    output: mpsc::Sender<Output>,
    cancel: CancellationToken,
}

/// What a terminal sends its attached connection.
#[derive(Debug)]
enum Output {
    Data(Bytes),
    Exit(i32),
}

/// A connection's hold on a terminal.
struct Attached {
    id: u64,
    output: mpsc::Receiver<Output>,
    cancel: CancellationToken,
    replay: Vec<u8>,
}

impl Terminal {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches a new connection (taking over from the current one); `None` once ended.
    fn attach(&self) -> Option<Attached> {
        let mut inner = self.lock();
        if inner.ended {
            return None;
        }
        inner.next_attachment += 1;
        let id = inner.next_attachment;
        let (sender, output) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let attachment = Attachment { id, output: sender, cancel: cancel.clone() };
        if let Some(previous) = inner.attached.replace(attachment) {
            previous.cancel.cancel();
        }
        let replay = inner.scrollback.iter().copied().collect();
        Some(Attached { id, output, cancel, replay })
    }

    /// Detaches connection `id`: a terminal without a `tid` ends now, one with a `tid` after
    /// [`DETACHED_LIFETIME`] unless a connection reattaches.
    fn detach(self: &Arc<Self>, id: u64) {
        let detaches = {
            let mut inner = self.lock();
            if inner.attached.as_ref().is_none_or(|attached| attached.id != id) {
                return;
            }
            inner.attached = None;
            inner.detaches += 1;
            if inner.ended {
                return;
            }
            inner.detaches
        };
        let terminal = self.clone();
        tokio::spawn(async move {
            if terminal.tid.is_some() {
                tokio::time::sleep(DETACHED_LIFETIME).await;
                let inner = terminal.lock();
                if inner.ended || inner.attached.is_some() || inner.detaches != detaches {
                    return;
                }
            }
            terminal.hang_up().await;
        });
    }

    /// Ends the shell: SIGHUP to its process group (an interactive shell passes it on to its
    /// jobs), SIGKILL if it has not exited after [`HANGUP_GRACE`].
    async fn hang_up(&self) {
        let _ = killpg(self.pid, Signal::SIGHUP);
        tokio::time::sleep(HANGUP_GRACE).await;
        if !self.exited.load(Ordering::Relaxed) {
            let _ = killpg(self.pid, Signal::SIGKILL);
        }
    }

    /// Reads the shell's output into the scrollback and to the attached connection until the
    /// shell has exited, then reports the exit and forgets the terminal.
    async fn run(self: Arc<Self>, mut exit: oneshot::Receiver<ExitStatus>, connect: Arc<Connect>) {
        let mut reader = PtyIo::new(self.master.clone());
        let mut buf = vec![0u8; 32 * 1024];
        let mut status: Option<ExitStatus> = None;
        let mut output_ended = false;
        loop {
            tokio::select! {
                result = &mut exit, if status.is_none() => {
                    status = Some(result.unwrap_or(ExitStatus::Code(255)));
                    self.exited.store(true, Ordering::Relaxed);
                    if output_ended {
                        break;
                    }
                }
                read = reader.read(&mut buf), if !output_ended => match read {
                    Ok(n) if n > 0 => self.deliver(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default())).await,
                    _ => {
                        output_ended = true;
                        if status.is_some() {
                            break;
                        }
                    }
                },
                () = tokio::time::sleep(OUTPUT_IDLE_AFTER_EXIT), if status.is_some() => break,
            }
        }
        let code = status.map_or(255, ExitStatus::code);
        let attached = {
            let mut inner = self.lock();
            inner.ended = true;
            inner.attached.take()
        };
        if let Some(tid) = &self.tid {
            let mut terminals = connect.terminals.lock();
            if terminals.get(tid).is_some_and(|terminal| Arc::ptr_eq(terminal, &self)) {
                terminals.remove(tid);
            }
        }
        if let Some(attached) = attached {
            tokio::select! {
                _ = attached.output.send(Output::Exit(code)) => {}
                () = attached.cancel.cancelled() => {}
            }
        }
    }

    async fn deliver(&self, data: Bytes) {
        let attached = {
            let mut inner = self.lock();
            inner.scrollback.extend(data.iter());
            let excess = inner.scrollback.len().saturating_sub(SCROLLBACK);
            inner.scrollback.drain(..excess);
            inner.attached.as_ref().map(|a| (a.output.clone(), a.cancel.clone()))
        };
        // A slow browser slows the shell down (the terminal's own flow control); a taken-over
        // or dropped one does not.
        if let Some((output, cancel)) = attached {
            tokio::select! {
                _ = output.send(Output::Data(data)) => {}
                () = cancel.cancelled() => {}
            }
        }
    }
}

/// Finds the terminal `params.tid` names (or starts one) and attaches to it, under the registry
/// lock so that two simultaneous connections agree on one shell. `Err` is the reason for the user.
fn open(
    connect: &Arc<Connect>,
    params: &PtyParams,
) -> Result<(Arc<Terminal>, Attached, bool), String> {
    let mut terminals = connect.terminals.lock();
    if let Some(tid) = &params.tid
        && let Some(terminal) = terminals.get(tid)
        && let Some(attached) = terminal.attach()
    {
        let _ = terminal.master.resize(params.cols, params.rows);
        return Ok((terminal.clone(), attached, true));
    }
    let identity = crate::user::resolve_system(connect.session_user.as_deref())
        .map_err(|err| err.to_string())?;
    let env = spawn::session_env(&identity, &[("TERM".to_string(), TERM.to_string())]);
    let launch = Launch::login_shell(&identity, env);
    let child = spawn::spawn_pty(&connect.children, &identity, &launch, params.cols, params.rows)
        .map_err(|err| {
        format!("cannot start the shell {}: {err}", launch.program.to_string_lossy())
    })?;
    let terminal = Arc::new(Terminal {
        tid: params.tid.clone(),
        pid: child.pid,
        master: child.master,
        exited: AtomicBool::new(false),
        inner: Mutex::default(),
    });
    let attached = terminal.attach().ok_or_else(|| "the terminal ended at once".to_string())?;
    tokio::spawn(terminal.clone().run(child.exit, connect.clone()));
    if let Some(tid) = &params.tid {
        terminals.insert(tid.clone(), terminal.clone());
    }
    Ok((terminal, attached, false))
}

/// Serves one browser terminal connection until it drops, is taken over, or the shell exits.
pub async fn serve(socket: Socket, connect: Arc<Connect>, params: PtyParams, peer: Peer) {
    let started = Instant::now();
    let (mut sink, mut stream) = socket.split();
    let tid = params.tid.as_deref().unwrap_or("-");
    let (terminal, attached, reattached) = match open(&connect, &params) {
        Ok(opened) => opened,
        Err(reason) => {
            log!("pty {}: refused (user {}, tid {tid}): {reason}", peer.connection, peer.user);
            let _ = sink.send(TerminalControl::Closing { reason }.message()).await;
            let _ = sink.close().await;
            return;
        }
    };
    let how = if reattached { "reattached" } else { "new shell" };
    log!(
        "pty {}: open (user {}, tid {tid}, {how}, pid {})",
        peer.connection,
        peer.user,
        terminal.pid
    );
    let Attached { id, mut output, cancel, replay } = attached;

    // Input goes through its own task: a shell that does not read must not stop its output.
    let pending = Arc::new(AtomicUsize::new(0));
    let (input, mut queued) = mpsc::unbounded_channel::<Bytes>();
    let writer = {
        let (pending, mut pty) = (pending.clone(), PtyIo::new(terminal.master.clone()));
        tokio::spawn(async move {
            while let Some(data) = queued.recv().await {
                if pty.write_all(&data).await.is_err() {
                    break;
                }
                pending.fetch_sub(data.len(), Ordering::Relaxed);
            }
        })
    };
    let (mut bytes_in, mut bytes_out) = (0u64, replay.len() as u64);
    let mut end = "dropped";
    if replay.is_empty() || send(&mut sink, Message::binary(replay), &cancel).await {
        loop {
            tokio::select! {
                // Taken over: say so, whatever else is ready (the output queue ends too).
                biased;
                () = cancel.cancelled() => {
                    let reason = "this terminal was opened in another window".to_string();
                    let _ = sink.send(TerminalControl::Closing { reason }.message()).await;
                    end = "taken over";
                    break;
                }
                out = output.recv() => match out {
                    Some(Output::Data(data)) => {
                        bytes_out += data.len() as u64;
                        if !send(&mut sink, Message::Binary(data), &cancel).await {
                            break;
                        }
                    }
                    Some(Output::Exit(code)) => {
                        let _ = sink.send(TerminalControl::Exit { code }.message()).await;
                        end = "shell exited";
                        break;
                    }
                    None => break,
                },
                message = stream.next() => match message {
                    Some(Ok(Message::Binary(data))) => {
                        connect.activity.touch();
                        bytes_in += data.len() as u64;
                        if pending.fetch_add(data.len(), Ordering::Relaxed) + data.len() > INPUT_LIMIT {
                            let reason = "too much input: the shell is not reading".to_string();
                            let _ = sink.send(TerminalControl::Closing { reason }.message()).await;
                            break;
                        }
                        let _ = input.send(data);
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(TerminalControl::Resize { cols, rows }) = serde_json::from_str(&text)
                            && (1..=MAX_TERMINAL_SIDE).contains(&cols)
                            && (1..=MAX_TERMINAL_SIDE).contains(&rows)
                        {
                            let _ = terminal.master.resize(cols, rows);
                        }
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    writer.abort();
    let _ = sink.close().await;
    terminal.detach(id);
    log!(
        "pty {}: closed (user {}, tid {tid}, {end}) after {:.1}s, {bytes_in} bytes in, {bytes_out} bytes out",
        peer.connection,
        peer.user,
        started.elapsed().as_secs_f64(),
    );
}

/// Sends `message` unless the connection is taken over meanwhile; false when it cannot go on.
async fn send(
    sink: &mut SplitSink<Socket, Message>,
    message: Message,
    cancel: &CancellationToken,
) -> bool {
    tokio::select! {
        sent = sink.send(message) => sent.is_ok(),
        () = cancel.cancelled() => true,
    }
}
