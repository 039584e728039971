//! Starting session processes (SSH shells and exec, `sftp-server`, browser terminals) as the session
//! user, with pipes or a pseudo-terminal, registered with the [`Children`] registry.
//!
//! Between fork and exec the child resets every signal disposition and its signal mask (the agent
//! may have been started with SIGHUP ignored, which exec would pass on, and then a hangup would not
//! end the shell's jobs), becomes a session leader with the terminal as its controlling terminal
//! (PTY) or leads its own process group (pipes), and drops to the session user: `setgroups`,
//! `setgid`, `setuid`, in that order. Each of these is a single system call, safe after `fork` in a
//! multi-threaded program.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, killpg};
use nix::unistd::Pid;
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use crate::children::{Children, ExitStatus};
use crate::user::Identity;

/// The agent's own variables: `main` removes them from its environment at start; never passed on.
pub const SECRET_VARS: [&str; 3] =
    ["BURSTFLARE_AGENT_TOKEN", "BURSTFLARE_HOST_KEY", "BURSTFLARE_SESSION_USER"];

/// `PATH` for children when the container's environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run: program, `argv[0]`, arguments and the complete environment.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: OsString,
    pub arg0: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl Launch {
    /// `identity`'s login shell as a login shell (`argv[0]` = `-bash`, as sshd and login do).
    pub fn login_shell(identity: &Identity, env: Vec<(OsString, OsString)>) -> Self {
        let shell = identity.shell_path();
        let mut arg0 = OsString::from("-");
        arg0.push(shell.file_name().unwrap_or(shell.as_os_str()));
        Self { program: shell.as_os_str().to_owned(), arg0, args: Vec::new(), env }
    }

    /// `shell -c command` with `identity`'s login shell, as sshd runs exec requests.
    pub fn shell_command(
        identity: &Identity,
        command: &[u8],
        env: Vec<(OsString, OsString)>,
    ) -> Self {
        let shell = identity.shell_path();
        Self {
            program: shell.as_os_str().to_owned(),
            arg0: shell.file_name().unwrap_or(shell.as_os_str()).to_owned(),
            args: vec![OsString::from("-c"), OsStr::from_bytes(command).to_owned()],
            env,
        }
    }
}

/// Whether a client may set the environment variable `name` (SSH `env` requests): a shell-style
/// name, but not the dynamic loader's (`LD_*`) nor the agent's own (`BURSTFLARE_*`).
pub fn env_name_allowed(name: &str) -> bool {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid && !name.starts_with("LD_") && !name.starts_with("BURSTFLARE_")
}

/// The environment of a session process: the container's environment (the agent's, without
/// [`SECRET_VARS`], which `main` removed already), then `extra` (client requests, TERM, SSH_AUTH_SOCK…) in order,
/// then the identity's `HOME`, `USER`, `LOGNAME` and `SHELL`; `PATH` defaults to [`DEFAULT_PATH`].
pub fn session_env(identity: &Identity, extra: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| !SECRET_VARS.iter().any(|secret| name == secret))
        .collect();
    let mut set = |name: &OsStr, value: &OsStr| {
        env.retain(|(existing, _)| existing != name);
        env.push((name.to_owned(), value.to_owned()));
    };
    for (name, value) in extra {
        set(name.as_ref(), value.as_ref());
    }
    set("HOME".as_ref(), identity.home.as_os_str());
    set("USER".as_ref(), identity.name.as_ref());
    set("LOGNAME".as_ref(), identity.name.as_ref());
    set("SHELL".as_ref(), identity.shell_path().as_os_str());
    if !env.iter().any(|(name, _)| name == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// A child with pipes for stdin, stdout and stderr, in its own process group.
#[derive(Debug)]
pub struct PipeChild {
    pub pid: Pid,
    pub exit: oneshot::Receiver<ExitStatus>,
    pub stdin: pipe::Sender,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
}

/// Starts `launch` as `identity` with pipes, in its own process group (pid = group id).
pub fn spawn_pipes(
    children: &Children,
    identity: &Identity,
    launch: &Launch,
) -> io::Result<PipeChild> {
    let mut command = command(identity, launch);
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    let setup = ChildSetup::new(identity, false);
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe system
    // calls on data prepared before the fork (see ChildSetup::apply).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || setup.apply());
    }
    let (mut child, exit) = children.spawn(&mut command)?;
    let pid = pid_of(&child)?;
    let missing = || io::Error::other("child pipe missing");
    let stdin = OwnedFd::from(child.stdin.take().ok_or_else(missing)?);
    let stdout = OwnedFd::from(child.stdout.take().ok_or_else(missing)?);
    let stderr = OwnedFd::from(child.stderr.take().ok_or_else(missing)?);
    Ok(PipeChild {
        pid,
        exit,
        stdin: pipe::Sender::from_owned_fd(stdin)?,
        stdout: pipe::Receiver::from_owned_fd(stdout)?,
        stderr: pipe::Receiver::from_owned_fd(stderr)?,
    })
}

/// A child on a new pseudo-terminal, leader of its own session (pid = session and group id).
#[derive(Debug)]
pub struct PtyChild {
    pub pid: Pid,
    pub exit: oneshot::Receiver<ExitStatus>,
    pub master: Arc<PtyMaster>,
}

/// Starts `launch` as `identity` on a new pseudo-terminal of `cols` x `rows`.
pub fn spawn_pty(
    children: &Children,
    identity: &Identity,
    launch: &Launch,
    cols: u16,
    rows: u16,
) -> io::Result<PtyChild> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave = match rustix::pty::ioctl_tiocgptpeer(&master, flags) {
        Ok(slave) => slave,
        // Kernels before 4.13: open the slave by name.
        Err(_) => {
            let name = rustix::pty::ptsname(&master, Vec::new())?;
            let mode = rustix::fs::Mode::empty();
            rustix::fs::open(
                name.as_c_str(),
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
                mode,
            )?
        }
    };
    rustix::termios::tcsetwinsize(&slave, winsize(cols, rows))?;
    if identity.switch {
        // The terminal belongs to the session user, as login and sshd do (mode 0620 stays).
        let fd = slave.as_fd();
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(identity.uid)),
            Some(rustix::fs::Gid::from_raw(identity.gid)),
        )?;
    }

    let mut command = command(identity, launch);
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    let setup = ChildSetup::new(identity, true);
    // SAFETY: as in spawn_pipes.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || setup.apply());
    }
    let (child, exit) = children.spawn(&mut command)?;
    // Our copies of the slave went with `command`: only the child holds the terminal now, so
    // the master reads EOF (EIO) once the child and its jobs have closed it.
    drop(command);
    let pid = pid_of(&child)?;
    Ok(PtyChild { pid, exit, master: Arc::new(PtyMaster::new(master)?) })
}

fn command(identity: &Identity, launch: &Launch) -> Command {
    let mut command = Command::new(&launch.program);
    command
        .arg0(&launch.arg0)
        .args(&launch.args)
        .env_clear()
        .envs(launch.env.iter().map(|(name, value)| (name, value)))
        .current_dir(identity.cwd());
    command
}

fn pid_of(child: &std::process::Child) -> io::Result<Pid> {
    Ok(Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?))
}

fn winsize(cols: u16, rows: u16) -> Winsize {
    Winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 }
}

/// What the child does between fork and exec, prepared before the fork (no allocation after).
struct ChildSetup {
    terminal: bool,
    credentials: Option<(rustix::fs::Uid, rustix::fs::Gid, Vec<rustix::fs::Gid>)>,
}

impl ChildSetup {
    fn new(identity: &Identity, terminal: bool) -> Self {
        let credentials = identity.switch.then(|| {
            (
                rustix::fs::Uid::from_raw(identity.uid),
                rustix::fs::Gid::from_raw(identity.gid),
                identity.groups.iter().map(|&gid| rustix::fs::Gid::from_raw(gid)).collect(),
            )
        });
        Self { terminal, credentials }
    }

    /// Runs in the child after fork (stdio already on 0, 1, 2): async-signal-safe calls only.
    fn apply(&self) -> io::Result<()> {
        reset_signals()?;
        if self.terminal {
            rustix::process::setsid()?;
            // SAFETY: fd 0 is the terminal's slave, set up by Command before this closure runs.
            #[allow(unsafe_code)]
            let stdin = unsafe { BorrowedFd::borrow_raw(0) };
            rustix::process::ioctl_tiocsctty(stdin)?;
        }
        if let Some((uid, gid, groups)) = &self.credentials {
            // Only this thread exists after fork, so the per-thread system calls change the process.
            rustix::thread::set_thread_groups(groups)?;
            rustix::thread::set_thread_res_gid(*gid, *gid, *gid)?;
            rustix::thread::set_thread_res_uid(*uid, *uid, *uid)?;
        }
        Ok(())
    }
}

/// Default dispositions for every signal and an empty mask (pitfall: an agent started with SIGHUP
/// ignored would pass that on through exec).
fn reset_signals() -> io::Result<()> {
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL runs no code in the child; sigaction is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) }
            .map_err(io::Error::from)?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(io::Error::from)
}

/// The master side of a pseudo-terminal, non-blocking, shared by a reader and a writer task.
#[derive(Debug)]
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        // SAFETY: an OwnedFd stays open for as long as the AsyncFd that owns it.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Sets the terminal size (the kernel sends SIGWINCH to the foreground process group).
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        Ok(rustix::termios::tcsetwinsize(self.fd.get_ref(), winsize(cols, rows))?)
    }
}

/// Reads and writes a shared [`PtyMaster`]: terminal output and input. Reading ends (0 bytes) when
/// Linux reports EIO, which it does once no process holds the terminal open.
#[derive(Debug, Clone)]
pub struct PtyIo(Arc<PtyMaster>);

impl PtyIo {
    pub fn new(master: Arc<PtyMaster>) -> Self {
        Self(master)
    }
}

impl AsyncRead for PtyIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut *unfilled)?)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) if err.raw_os_error() == Some(Errno::EIO as i32) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for PtyIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), data)?)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A terminal has no half-close: client EOF leaves it open (as sshd does).
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Ends a session process group: SIGHUP now, SIGKILL if `exit` has not fired within `grace`.
pub async fn hang_up(pgid: Pid, exit: &mut oneshot::Receiver<ExitStatus>, grace: Duration) {
    let _ = killpg(pgid, Signal::SIGHUP);
    if tokio::time::timeout(grace, &mut *exit).await.is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}
