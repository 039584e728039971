//! `burstflare-agent supervise`: the container's init.
//!
//! - Becomes a child subreaper (harmless as PID 1; outside a container it makes orphans of the
//!   command come to the agent, so it reaps them exactly as PID 1 would).
//! - Starts the command (if any) in its own process group with the agent's stdio and environment.
//! - On SIGCHLD reaps every exited child with `waitpid(-1, WNOHANG)` until none is left: the
//!   command, the processes started for SSH and terminals, and any orphan re-parented to the agent
//!   ([`Children::reap`]).
//! - Forwards SIGTERM, SIGINT and SIGHUP to the command's process group. SIGTERM and SIGINT also
//!   ask the agent to stop: it exits with 0 as soon as the command has exited (at once when no
//!   command runs).
//! - When the command exits by itself, logs its status and keeps serving (a session outlives its
//!   command), unless `--exit-with-command` was given: then it exits with the command's code.
//!
//! - Serves the HTTP API, `GET /ssh` and `GET /pty` on a two-thread runtime, so that the SSH
//!   crypto of one connection does not hold up the others.
//!
//! All reaping happens here: nothing else in the agent may wait for a child (no
//! `tokio::process`/`Child::wait`), or the two would steal each other's exit statuses. Code that
//! starts processes (the command, SSH exec, terminals) does it through the [`Children`] registry,
//! which hands it the exit status.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use crate::activity::PTS_DIR;
use crate::children::{Children, ExitStatus};
use crate::connect::{Connect, Secrets};
use crate::http::{AgentState, CommandStatus};
use crate::{log, now_ms};

/// Exit code reported for a command that could not be started (as a shell does).
pub const EXIT_NOT_STARTED: i32 = 127;

/// What `supervise` was asked to do.
#[derive(Debug)]
pub struct Options {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Exit with the command's exit code when it exits, instead of serving on.
    pub exit_with_command: bool,
    /// The command and its arguments; empty = serve only.
    pub command: Vec<OsString>,
    /// Token, host key and session user, taken out of the environment by `main`.
    pub secrets: Secrets,
}

/// Runs the supervisor on a two-thread Tokio runtime and returns the process exit code.
pub fn run(options: Options) -> i32 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("burstflare-agent")
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            log!("cannot start the runtime: {err}");
            return 1;
        }
    };
    let code = match runtime.block_on(supervise(options)) {
        Ok(code) => code,
        Err(err) => {
            log!("error: {err:#}");
            1
        }
    };
    // Connections still open are cut; nothing to wait for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

async fn supervise(options: Options) -> anyhow::Result<i32> {
    let started_at_ms = now_ms();
    log!("version {} starting as pid {}", crate::VERSION, std::process::id());
    if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
        log!("cannot become a child subreaper (orphans will not be reaped unless pid 1): {err}");
    }

    // Listen for signals before the command starts, so that no SIGCHLD is missed.
    let mut sigchld = signal(SignalKind::child()).context("SIGCHLD handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("SIGHUP handler")?;

    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let local = listener.local_addr().context("listener address")?;
    log!("listening on http://{local}");

    let state = Arc::new(AgentState::new(started_at_ms, PTS_DIR));
    let children = Arc::new(Children::new());
    let connect = Arc::new(Connect::new(options.secrets, children.clone(), state.activity.clone()));
    // The command's pid and exit status while it runs.
    let mut command: Option<(Pid, oneshot::Receiver<ExitStatus>)> = None;
    if !options.command.is_empty() {
        match start(&children, &options.command) {
            Ok((pid, exit)) => {
                log!("started command (pid {pid}): {}", display(&options.command));
                state.set_command(CommandStatus {
                    running: true,
                    pid: u32::try_from(pid.as_raw()).ok(),
                    exit_code: None,
                });
                command = Some((pid, exit));
            }
            Err(err) => {
                log!("cannot start command {}: {err}", display(&options.command));
                state.set_command(CommandStatus {
                    running: false,
                    pid: None,
                    exit_code: Some(EXIT_NOT_STARTED),
                });
                if options.exit_with_command {
                    return Ok(EXIT_NOT_STARTED);
                }
            }
        }
    } else {
        log!("no command given; serving only");
    }

    tokio::spawn(crate::http::serve(listener, state.clone(), connect));

    let mut stopping = false;
    loop {
        let signal = tokio::select! {
            _ = sigchld.recv() => {
                for (pid, status) in children.reap() {
                    log!("reaped orphan pid {pid} (status {status})");
                }
                continue;
            }
            status = command_exit(&mut command) => {
                let Some((pid, _)) = command.take() else { continue };
                // A registry that went away cannot happen while we hold it; report it as 255.
                let status = status.unwrap_or(ExitStatus::Code(255));
                let code = status.code();
                log!("command (pid {pid}) exited with status {status}");
                state.set_command(CommandStatus {
                    running: false,
                    pid: u32::try_from(pid.as_raw()).ok(),
                    exit_code: Some(code),
                });
                if stopping {
                    log!("stopped");
                    return Ok(0);
                }
                if options.exit_with_command {
                    log!("exiting with the command's status {code} (--exit-with-command)");
                    return Ok(code);
                }
                log!("serving on without a command");
                continue;
            }
            _ = sigterm.recv() => Signal::SIGTERM,
            _ = sigint.recv() => Signal::SIGINT,
            _ = sighup.recv() => Signal::SIGHUP,
        };
        let stop = matches!(signal, Signal::SIGTERM | Signal::SIGINT);
        match &command {
            Some((pid, _)) => {
                log!("received {signal}; forwarding it to the command's process group {pid}");
                forward(*pid, signal);
                if stop && !stopping {
                    stopping = true;
                    log!("stopping once the command exits");
                }
            }
            None if stop => {
                log!("received {signal}; no command running, stopping");
                return Ok(0);
            }
            None => log!("received {signal}; no command running, ignoring it"),
        }
    }
}

/// The command's exit status; never resolves without a command.
async fn command_exit(
    command: &mut Option<(Pid, oneshot::Receiver<ExitStatus>)>,
) -> Option<ExitStatus> {
    match command {
        Some((_, exit)) => exit.await.ok(),
        None => std::future::pending().await,
    }
}

/// Starts `command` in a new process group (its pid is the group id) with the agent's stdio.
fn start(
    children: &Children,
    command: &[OsString],
) -> io::Result<(Pid, oneshot::Receiver<ExitStatus>)> {
    let Some((program, args)) = command.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let (child, exit) =
        children.spawn(std::process::Command::new(program).args(args).process_group(0))?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    // Dropping a `Child` neither waits for nor kills it: the SIGCHLD loop reaps it.
    drop(child);
    Ok((Pid::from_raw(pid), exit))
}

/// Sends `signal` to the process group led by `pid`; to `pid` alone if that group is gone (the
/// command moved itself to another group).
fn forward(pid: Pid, signal: Signal) {
    let result = match killpg(pid, signal) {
        Err(Errno::ESRCH) => kill(pid, signal),
        other => other,
    };
    if let Err(err) = result {
        log!("cannot send {signal} to pid {pid}: {err}");
    }
}

fn display(command: &[OsString]) -> String {
    command.iter().map(|arg| arg.to_string_lossy()).collect::<Vec<_>>().join(" ")
}
