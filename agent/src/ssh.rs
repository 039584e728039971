//! The SSH server behind `GET /ssh` (russh): one SSH connection per WebSocket.
//!
//! - Authentication: public key only; the offered key must be one of the connection's
//!   `X-BurstFlare-Authorized-Keys`. Any user name is accepted (and logged): everything runs as
//!   the session user ([`crate::user`]).
//! - Session channels: shell and exec, with or without a PTY, `env` requests, window changes,
//!   signals, `exit-status` or `exit-signal`, the `sftp` subsystem (the agent's own
//!   `sftp-server` subcommand, run as the session user like any exec).
//! - `direct-tcpip` (`ssh -L`), `tcpip-forward` (`ssh -R`, loopback addresses only), agent
//!   forwarding (`ssh -A`).
//!
//! Each channel is read by a drain task ([`crate::channel`]) so that a slow consumer does not stall
//! the connection; handler methods only answer requests and never wait for slow work.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, MethodKind, MethodSet, Sig};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::channel::{self, Control, Drained};
use crate::children::ExitStatus;
use crate::connect::{Connect, Peer, is_authorized};
use crate::spawn::{self, Launch, PtyIo};
use crate::user::Identity;
use crate::wsio::{self, Counted, Counters, Socket};
use crate::{VERSION, log};

/// How long a client has for the SSH version exchange, and then for authentication.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Between SIGHUP and SIGKILL when a client goes away from a running process.
pub const HANGUP_GRACE: Duration = Duration::from_secs(2);
/// Time allowed for a `direct-tcpip` connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The program that serves SFTP: the agent itself (`burstflare-agent sftp-server`).
pub const SELF_EXE: &str = "/proc/self/exe";

/// A fresh Ed25519 host key, for an agent started without `BURSTFLARE_HOST_KEY`.
pub fn throwaway_host_key() -> Result<PrivateKey, String> {
    let mut seed = [0u8; 32];
    rustix::rand::getrandom(&mut seed, rustix::rand::GetRandomFlags::empty())
        .map_err(|err| format!("cannot make a throwaway host key: getrandom: {err}"))?;
    let keypair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    Ok(PrivateKey::from(keypair))
}

/// The server configuration: `host_key`, public key authentication only, no idle timeout (idle
/// shells are the session's business), keepalives every 30 s (3 unanswered end the connection).
pub fn server_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(format!("SSH-2.0-BurstFlare_{VERSION}").into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        max_auth_attempts: 6,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        // Messages queued per channel before russh waits; the drain tasks keep these queues short.
        channel_buffer_size: 256,
        ..Default::default()
    }
}

/// Serves one SSH connection on `socket` until it ends; logs its opening and closing.
pub async fn serve(
    socket: Socket,
    connect: Arc<Connect>,
    config: Arc<russh::server::Config>,
    peer: Peer,
    keys: Vec<PublicKey>,
) {
    let started = Instant::now();
    let counters = Arc::new(Counters::default());
    let stream = Counted::new(wsio::byte_stream(socket), counters.clone());
    log!("ssh {}: open (user {}, {} authorized keys)", peer.connection, peer.user, keys.len());
    let state = Arc::new(ConnState {
        peer: peer.clone(),
        keys,
        ssh_user: Mutex::default(),
        identity: OnceLock::new(),
        authenticated: AtomicBool::new(false),
        agent: Mutex::default(),
        forwards: Mutex::default(),
    });
    let handler = Conn { connect, state: state.clone(), started: HashSet::new() };
    let outcome = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        russh::server::run_stream(config, stream, handler),
    )
    .await
    {
        Err(_) => Err("no SSH handshake".to_string()),
        Ok(Err(err)) => Err(err.to_string()),
        Ok(Ok(session)) => {
            let handle = session.handle();
            let auth_state = state.clone();
            let deadline = tokio::spawn(async move {
                tokio::time::sleep(AUTH_TIMEOUT).await;
                if !auth_state.authenticated.load(Ordering::Relaxed) {
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "authentication timeout".to_string(),
                            String::new(),
                        )
                        .await;
                }
            });
            let result = session.await.map_err(|err| err.to_string());
            deadline.abort();
            result
        }
    };
    state.shutdown();
    let ssh_user = lock(&state.ssh_user).clone().unwrap_or_else(|| "-".to_string());
    let how = match outcome {
        Ok(()) => String::new(),
        // The client side usually just drops the WebSocket (ssh kills its ProxyCommand).
        Err(err) => format!(", {err}"),
    };
    log!(
        "ssh {}: closed (user {}, ssh user {ssh_user}) after {:.1}s, {} bytes in, {} bytes out{how}",
        peer.connection,
        peer.user,
        started.elapsed().as_secs_f64(),
        counters.read.load(Ordering::Relaxed),
        counters.written.load(Ordering::Relaxed),
    );
}

/// State of one SSH connection, shared by its handler and its channel tasks.
struct ConnState {
    peer: Peer,
    keys: Vec<PublicKey>,
    ssh_user: Mutex<Option<String>>,
    /// Resolved once authenticated: who the connection's processes run as, or why nobody can.
    identity: OnceLock<Result<Identity, String>>,
    authenticated: AtomicBool,
    agent: Mutex<Option<AgentSocket>>,
    forwards: Mutex<Forwards>,
}

impl ConnState {
    fn identity(&self) -> Result<Identity, String> {
        self.identity.get().cloned().unwrap_or_else(|| Err("not authenticated".to_string()))
    }

    fn agent_socket(&self) -> Option<PathBuf> {
        lock(&self.agent).as_ref().map(|agent| agent.path.clone())
    }

    /// Stops the connection's listeners and removes its agent socket.
    fn shutdown(&self) {
        for (_, tasks) in lock(&self.forwards).drain() {
            tasks.iter().for_each(JoinHandle::abort);
        }
        if let Some(agent) = lock(&self.agent).take() {
            agent.task.abort();
            let _ = std::fs::remove_dir_all(&agent.dir);
        }
    }
}

/// `ssh -R` listener tasks by (address, port) as the client asked for them.
type Forwards = HashMap<(String, u16), Vec<JoinHandle<()>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A forwarded agent: a socket in a private directory, served for one connection.
struct AgentSocket {
    dir: PathBuf,
    path: PathBuf,
    task: JoinHandle<()>,
}

/// The russh handler of one connection.
struct Conn {
    connect: Arc<Connect>,
    state: Arc<ConnState>,
    /// Session channels that started a shell, exec or subsystem (a second one is refused).
    started: HashSet<ChannelId>,
}

impl Conn {
    fn authorized(&self, key: &PublicKey) -> bool {
        is_authorized(&self.state.keys, key)
    }

    fn start_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if self.started.insert(channel) {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // The default accepts every key here: only authorized ones may go on to sign.
        Ok(if self.authorized(offer.public_key) { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.authorized(key.public_key) {
            return Ok(Auth::reject());
        }
        *lock(&self.state.ssh_user) =
            Some(user.chars().filter(|c| !c.is_control()).take(64).collect());
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.state.authenticated.store(true, Ordering::Relaxed);
        let identity = crate::user::resolve_system(self.connect.session_user.as_deref())
            .map_err(|err| err.to_string());
        let ssh_user = lock(&self.state.ssh_user).clone().unwrap_or_default();
        match &identity {
            Ok(identity) => log!(
                "ssh {}: authenticated as {ssh_user:?}, running as {} (uid {})",
                self.state.peer.connection,
                identity.name,
                identity.uid
            ),
            Err(err) => {
                log!("ssh {}: authenticated as {ssh_user:?}, but {err}", self.state.peer.connection)
            }
        }
        let _ = self.state.identity.set(identity);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let task = SessionChannel {
            connect: self.connect.clone(),
            state: self.state.clone(),
            handle: session.handle(),
        };
        tokio::spawn(task.run(channel));
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.started.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel task takes the request from the channel's own queue.
        if self.started.contains(&channel) {
            session.channel_failure(channel)
        } else {
            session.channel_success(channel)
        }
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if spawn::env_name_allowed(name) {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start_request(channel, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.start_request(channel, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == "sftp" {
            self.start_request(channel, session)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if lock(&self.state.agent).is_some() {
            return Ok(true);
        }
        let Ok(identity) = self.state.identity() else { return Ok(false) };
        match listen_agent(&identity, &self.state.peer.connection, session.handle()) {
            Ok(agent) => {
                *lock(&self.state.agent) = Some(agent);
                Ok(true)
            }
            Err(err) => {
                log!("ssh {}: agent forwarding refused: {err}", self.state.peer.connection);
                Ok(false)
            }
        }
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Ok(port) = u16::try_from(port) else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        let host = host.to_string();
        let activity = self.connect.activity.clone();
        // Never connect inside the handler: it runs in the connection's loop.
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, connect_tcp(&host, port)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    reply.accept().await;
                    channel::bridge(channel, stream, Some(activity)).await;
                }
                _ => reply.reject(ChannelOpenFailure::ConnectFailed).await,
            }
        });
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let connection = &self.state.peer.connection;
        let Some(addresses) = loopback_addresses(address) else {
            log!(
                "ssh {connection}: refused remote forward on {address:?}: only 127.0.0.1, ::1 and localhost"
            );
            return Ok(false);
        };
        let Ok(requested) = u16::try_from(*port) else { return Ok(false) };
        let uid = self.state.identity().map(|identity| identity.uid).unwrap_or(u32::MAX);
        if requested != 0 && requested < 1024 && uid != 0 {
            log!("ssh {connection}: refused remote forward on privileged port {requested}");
            return Ok(false);
        }
        let listeners = match bind_loopback(&addresses, requested) {
            Ok(listeners) => listeners,
            Err(err) => {
                log!("ssh {connection}: remote forward on {address}:{requested} failed: {err}");
                return Ok(false);
            }
        };
        let bound =
            listeners.first().and_then(|l| l.local_addr().ok()).map_or(requested, |a| a.port());
        let tasks = listeners
            .into_iter()
            .map(|listener| {
                let forward = Forward {
                    handle: session.handle(),
                    address: address.to_string(),
                    port: bound,
                    activity: self.connect.activity.clone(),
                };
                tokio::spawn(forward.serve(listener))
            })
            .collect();
        lock(&self.state.forwards).insert((address.to_string(), bound), tasks);
        *port = u32::from(bound);
        Ok(true)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Ok(port) = u16::try_from(port) else { return Ok(false) };
        let removed = lock(&self.state.forwards).remove(&(address.to_string(), port));
        Ok(removed.inspect(|tasks| tasks.iter().for_each(JoinHandle::abort)).is_some())
    }
}

/// Connects to `host:port` for `ssh -L`: IP literals and `localhost` directly, other names with
/// the system resolver.
async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    if host.eq_ignore_ascii_case("localhost") {
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        return match TcpStream::connect(v4).await {
            Ok(stream) => Ok(stream),
            Err(_) => TcpStream::connect(v6).await,
        };
    }
    TcpStream::connect((host, port)).await
}

/// The addresses an `ssh -R` listener may bind for `address`; `None` for anything not loopback.
pub fn loopback_addresses(address: &str) -> Option<Vec<IpAddr>> {
    match address {
        "localhost" => Some(vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]),
        _ => address.parse::<IpAddr>().ok().filter(IpAddr::is_loopback).map(|ip| vec![ip]),
    }
}

/// Binds `port` (0 = any) on the first address, then the same port on the others where possible.
fn bind_loopback(addresses: &[IpAddr], port: u16) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    let mut port = port;
    for (index, ip) in addresses.iter().enumerate() {
        let listener = match std::net::TcpListener::bind((*ip, port)) {
            Ok(listener) => listener,
            // ::1 may be missing (IPv6 disabled in the container): the first address is enough.
            Err(_) if index > 0 => continue,
            Err(err) => return Err(err),
        };
        port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        listeners.push(TcpListener::from_std(listener)?);
    }
    Ok(listeners)
}

/// One `ssh -R` listener: every connection becomes a `forwarded-tcpip` channel to the client.
struct Forward {
    handle: Handle,
    address: String,
    port: u16,
    activity: Arc<crate::activity::Activity>,
}

impl Forward {
    async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let _ = stream.set_nodelay(true);
            let handle = self.handle.clone();
            let (address, port, activity) =
                (self.address.clone(), self.port, self.activity.clone());
            tokio::spawn(async move {
                let opened = handle
                    .channel_open_forwarded_tcpip(
                        address,
                        u32::from(port),
                        peer.ip().to_string(),
                        u32::from(peer.port()),
                    )
                    .await;
                // Refused by the client (or the connection is gone): the socket just closes.
                if let Ok(channel) = opened {
                    channel::bridge(channel, stream, Some(activity)).await;
                }
            });
        }
    }
}

/// Creates the agent socket for `ssh -A`: `/tmp/burstflare-ssh-<random>/agent.<connection>` in a
/// 0700 directory owned by the session user; each connection to it opens an
/// `auth-agent@openssh.com` channel to the client.
fn listen_agent(
    identity: &Identity,
    connection: &str,
    handle: Handle,
) -> std::io::Result<AgentSocket> {
    use std::os::unix::fs::DirBuilderExt;

    let mut random = [0u8; 8];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
    let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("burstflare-ssh-{suffix}"));
    // mkdir fails if the path exists (no symlink games in /tmp); 0700 before anything is inside.
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let name: String =
        connection.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(32).collect();
    let path = dir.join(format!("agent.{name}"));
    let setup = || -> std::io::Result<UnixListener> {
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        if identity.switch {
            std::os::unix::fs::chown(&path, Some(identity.uid), Some(identity.gid))?;
            std::os::unix::fs::chown(&dir, Some(identity.uid), Some(identity.gid))?;
        }
        listener.set_nonblocking(true)?;
        UnixListener::from_std(listener)
    };
    let listener = match setup() {
        Ok(listener) => listener,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
    };
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Ok(channel) = handle.channel_open_agent().await {
                    channel::bridge(channel, stream, None).await;
                }
            });
        }
    });
    Ok(AgentSocket { dir, path, task })
}

/// A requested pseudo-terminal.
#[derive(Debug, Clone)]
struct PtyRequest {
    term: String,
    cols: u16,
    rows: u16,
}

/// What a session channel runs.
#[derive(Debug)]
enum Start {
    Shell,
    Exec(Vec<u8>),
    Sftp,
}

/// The task behind one session channel: collects requests until shell/exec/subsystem, runs the
/// process, reports how it ended.
struct SessionChannel {
    connect: Arc<Connect>,
    state: Arc<ConnState>,
    handle: Handle,
}

impl SessionChannel {
    async fn run(self, channel: Channel<Msg>) {
        let id = channel.id();
        let (read, write) = channel.split();
        let Drained { input, mut control } =
            channel::drain(read, Some(self.connect.activity.clone()));
        let mut pty: Option<PtyRequest> = None;
        let mut env: Vec<(String, String)> = Vec::new();
        let start = loop {
            match control.recv().await {
                None | Some(Control::Closed) => return,
                Some(Control::Pty { term, cols, rows, .. }) => {
                    let term = if term.is_empty() { "xterm".to_string() } else { term };
                    pty = Some(PtyRequest { term, cols: side(cols, 80), rows: side(rows, 24) });
                }
                Some(Control::Env { name, value }) => {
                    if spawn::env_name_allowed(&name) {
                        env.push((name, value));
                    }
                }
                Some(Control::WindowChange { cols, rows }) => {
                    if let Some(pty) = pty.as_mut() {
                        (pty.cols, pty.rows) = (side(cols, pty.cols), side(rows, pty.rows));
                    }
                }
                Some(Control::Shell) => break Start::Shell,
                Some(Control::Exec(command)) => break Start::Exec(command),
                Some(Control::Subsystem(name)) if name == "sftp" => break Start::Sftp,
                Some(_) => {}
            }
        };

        let identity = match self.state.identity() {
            Ok(identity) => identity,
            Err(reason) => {
                let message = format!("burstflare-agent: {reason}\r\n");
                let _ = write.extended_data_bytes(1, message.into_bytes()).await;
                finish(&write, &self.handle, id, Some(ExitStatus::Code(1))).await;
                return;
            }
        };
        let pty = pty.filter(|_| !matches!(start, Start::Sftp));
        if let Some(pty) = &pty {
            env.push(("TERM".to_string(), pty.term.clone()));
        }
        if let Some(socket) = self.state.agent_socket() {
            env.push(("SSH_AUTH_SOCK".to_string(), socket.to_string_lossy().into_owned()));
        }
        let env = spawn::session_env(&identity, &env);
        let launch = match &start {
            Start::Shell => Launch::login_shell(&identity, env),
            Start::Exec(command) => Launch::shell_command(&identity, command, env),
            Start::Sftp => Launch {
                program: SELF_EXE.into(),
                arg0: OsString::from("burstflare-agent"),
                args: vec![OsString::from("sftp-server")],
                env,
            },
        };
        let children = &self.connect.children;
        let started = match &pty {
            Some(pty) => {
                spawn::spawn_pty(children, &identity, &launch, pty.cols, pty.rows).map(Running::Pty)
            }
            None => spawn::spawn_pipes(children, &identity, &launch).map(Running::Pipes),
        };
        let running = match started {
            Ok(running) => running,
            Err(err) => {
                let program = launch.program.to_string_lossy();
                let message = format!("burstflare-agent: cannot start {program}: {err}\r\n");
                let _ = write.extended_data_bytes(1, message.into_bytes()).await;
                finish(&write, &self.handle, id, Some(ExitStatus::Code(127))).await;
                return;
            }
        };
        match running {
            Running::Pipes(child) => self.run_pipes(id, child, input, control, write).await,
            Running::Pty(child) => self.run_pty(id, child, input, control, write).await,
        }
    }

    async fn run_pipes(
        &self,
        id: ChannelId,
        child: spawn::PipeChild,
        input: tokio::sync::mpsc::UnboundedReceiver<channel::Input>,
        mut control: tokio::sync::mpsc::UnboundedReceiver<Control>,
        write: ChannelWriteHalf<Msg>,
    ) {
        let spawn::PipeChild { pid, mut exit, stdin, stdout, stderr } = child;
        let stdin_task = tokio::spawn(channel::write_input(input, stdin));
        let (exited_tx, exited) = watch::channel(false);
        let outputs = async {
            tokio::join!(
                channel::copy_output(stdout, &write, None, Some(exited.clone())),
                channel::copy_output(stderr, &write, Some(1), Some(exited.clone())),
            )
        };
        tokio::pin!(outputs);
        let mut status: Option<Option<ExitStatus>> = None;
        let mut outputs_done = false;
        loop {
            tokio::select! {
                result = &mut exit, if status.is_none() => {
                    status = Some(result.ok());
                    let _ = exited_tx.send(true);
                }
                _ = &mut outputs, if !outputs_done => outputs_done = true,
                message = control.recv() => match message {
                    Some(Control::Signal(signal)) => send_signal(pid, &signal),
                    Some(Control::Closed) | None => {
                        stdin_task.abort();
                        if status.is_none() {
                            spawn::hang_up(pid, &mut exit, HANGUP_GRACE).await;
                        }
                        return;
                    }
                    Some(_) => {}
                },
            }
            if status.is_some() && outputs_done {
                break;
            }
        }
        stdin_task.abort();
        finish(&write, &self.handle, id, status.flatten()).await;
    }

    async fn run_pty(
        &self,
        id: ChannelId,
        child: spawn::PtyChild,
        input: tokio::sync::mpsc::UnboundedReceiver<channel::Input>,
        mut control: tokio::sync::mpsc::UnboundedReceiver<Control>,
        write: ChannelWriteHalf<Msg>,
    ) {
        let spawn::PtyChild { pid, mut exit, master } = child;
        let mut input_task = tokio::spawn(channel::write_input(input, PtyIo::new(master.clone())));
        let (exited_tx, exited) = watch::channel(false);
        // Boxed so that it (and its copy of the master) can be dropped before the hang-up.
        let mut output =
            Box::pin(channel::copy_output(PtyIo::new(master.clone()), &write, None, Some(exited)));
        let mut status: Option<Option<ExitStatus>> = None;
        let mut output_done = false;
        let client_gone = loop {
            tokio::select! {
                result = &mut exit, if status.is_none() => {
                    status = Some(result.ok());
                    let _ = exited_tx.send(true);
                }
                _ = &mut output, if !output_done => output_done = true,
                message = control.recv() => match message {
                    Some(Control::WindowChange { cols, rows }) => {
                        let _ = master.resize(side(cols, 80), side(rows, 24));
                    }
                    Some(Control::Signal(signal)) => send_signal(pid, &signal),
                    Some(Control::Closed) | None => break true,
                    Some(_) => {}
                },
            }
            if status.is_some() && output_done {
                break false;
            }
        };
        // Close every copy of the master: the kernel hangs up the terminal (SIGHUP to the shell,
        // which passes it on to its jobs).
        input_task.abort();
        let _ = (&mut input_task).await;
        drop(output);
        drop(master);
        if client_gone {
            if status.is_none() && tokio::time::timeout(HANGUP_GRACE, &mut exit).await.is_err() {
                let _ = killpg(pid, Signal::SIGKILL);
            }
            return;
        }
        finish(&write, &self.handle, id, status.flatten()).await;
    }
}

/// A process that runs for a session channel.
enum Running {
    Pipes(spawn::PipeChild),
    Pty(spawn::PtyChild),
}

/// Ends a session channel: EOF, `exit-status` (or `exit-signal`), close.
async fn finish(
    write: &ChannelWriteHalf<Msg>,
    handle: &Handle,
    id: ChannelId,
    status: Option<ExitStatus>,
) {
    let _ = write.eof().await;
    match status {
        Some(ExitStatus::Code(code)) => {
            let _ = write.exit_status(u32::try_from(code).unwrap_or(255)).await;
        }
        Some(ExitStatus::Signal { signal, core_dumped }) => {
            let name = signal_name(signal);
            let _ = handle
                .exit_signal_request(id, name, core_dumped, String::new(), String::new())
                .await;
        }
        None => {}
    }
    let _ = write.close().await;
}

/// A terminal side from a requested size: 1..=1000, `default` for 0 (unknown).
fn side(value: u32, default: u16) -> u16 {
    if value == 0 {
        return default;
    }
    u16::try_from(value).unwrap_or(u16::MAX).min(crate::connect::MAX_TERMINAL_SIDE)
}

/// The RFC 4254 name of a signal (`KILL`, `TERM`…), as russh sends it in `exit-signal`.
pub fn signal_name(signal: i32) -> Sig {
    match Signal::try_from(signal) {
        Ok(Signal::SIGABRT) => Sig::ABRT,
        Ok(Signal::SIGALRM) => Sig::ALRM,
        Ok(Signal::SIGFPE) => Sig::FPE,
        Ok(Signal::SIGHUP) => Sig::HUP,
        Ok(Signal::SIGILL) => Sig::ILL,
        Ok(Signal::SIGINT) => Sig::INT,
        Ok(Signal::SIGKILL) => Sig::KILL,
        Ok(Signal::SIGPIPE) => Sig::PIPE,
        Ok(Signal::SIGQUIT) => Sig::QUIT,
        Ok(Signal::SIGSEGV) => Sig::SEGV,
        Ok(Signal::SIGTERM) => Sig::TERM,
        Ok(Signal::SIGUSR1) => Sig::USR1,
        Ok(other) => Sig::Custom(other.as_str().trim_start_matches("SIG").to_string()),
        Err(_) => Sig::Custom(format!("{signal}")),
    }
}

/// Delivers a client's `signal` request to the process group.
fn send_signal(pgid: Pid, signal: &Sig) {
    let name = match signal {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(name) => name.as_str(),
    };
    if let Ok(signal) = Signal::from_str(&format!("SIG{name}")) {
        let _ = killpg(pgid, signal);
    }
}
