//! `burstflare-agent supervise`: the container's init.
//!
//! - Becomes a child subreaper (harmless as PID 1; outside a container it makes orphans of the
//!   command come to the agent, so it reaps them exactly as PID 1 would).
//! - Starts the command (if any) in its own process group with the agent's stdio and environment.
//! - On SIGCHLD reaps every exited child with `waitpid(-1, WNOHANG)` until none is left: the
//!   command, and any orphan re-parented to the agent.
//! - Forwards SIGTERM, SIGINT and SIGHUP to the command's process group. SIGTERM and SIGINT also
//!   ask the agent to stop: it exits with 0 as soon as the command has exited (at once when no
//!   command runs).
//! - When the command exits by itself, logs its status and keeps serving (a session outlives its
//!   command), unless `--exit-with-command` was given: then it exits with the command's code.
//!
//! All reaping happens here: nothing else in the agent may wait for a child (no
//! `tokio::process`/`Child::wait`), or the two would steal each other's exit statuses. Code that
//! starts processes later (SSH exec, terminals) must report them to the supervisor instead.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::Arc;

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::activity::PTS_DIR;
use crate::http::{AgentState, CommandStatus};
use crate::{log, now_ms};

/// Exit code reported for a command that could not be started (as a shell does).
pub const EXIT_NOT_STARTED: i32 = 127;

/// What `supervise` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Exit with the command's exit code when it exits, instead of serving on.
    pub exit_with_command: bool,
    /// The command and its arguments; empty = serve only.
    pub command: Vec<OsString>,
}

/// Runs the supervisor on a single-threaded Tokio runtime and returns the process exit code.
pub fn run(options: Options) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            log!("cannot start the runtime: {err}");
            return 1;
        }
    };
    match runtime.block_on(supervise(options)) {
        Ok(code) => code,
        Err(err) => {
            log!("error: {err:#}");
            1
        }
    }
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
    // The command's pid while it runs (and has not been reaped).
    let mut command: Option<Pid> = None;
    if !options.command.is_empty() {
        match start(&options.command) {
            Ok(pid) => {
                log!("started command (pid {pid}): {}", display(&options.command));
                state.set_command(CommandStatus {
                    running: true,
                    pid: u32::try_from(pid.as_raw()).ok(),
                    exit_code: None,
                });
                command = Some(pid);
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

    tokio::spawn(crate::http::serve(listener, state.clone()));

    let mut stopping = false;
    loop {
        let signal = tokio::select! {
            _ = sigchld.recv() => {
                for (pid, code) in reap() {
                    if Some(pid) != command {
                        log!("reaped orphan pid {pid} (status {code})");
                        continue;
                    }
                    command = None;
                    log!("command (pid {pid}) exited with status {code}");
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
                }
                continue;
            }
            _ = sigterm.recv() => Signal::SIGTERM,
            _ = sigint.recv() => Signal::SIGINT,
            _ = sighup.recv() => Signal::SIGHUP,
        };
        let stop = matches!(signal, Signal::SIGTERM | Signal::SIGINT);
        match command {
            Some(pid) => {
                log!("received {signal}; forwarding it to the command's process group {pid}");
                forward(pid, signal);
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

/// Starts `command` in a new process group (its pid is the group id) with the agent's stdio.
fn start(command: &[OsString]) -> io::Result<Pid> {
    let Some((program, args)) = command.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty command"));
    };
    let child = std::process::Command::new(program).args(args).process_group(0).spawn()?;
    let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
    // Dropping a `Child` neither waits for nor kills it: the SIGCHLD loop reaps it.
    drop(child);
    Ok(Pid::from_raw(pid))
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

/// Reaps every child that has exited, without blocking: `(pid, exit code)` pairs, where a child
/// killed by a signal has the code 128 + the signal number.
pub fn reap() -> Vec<(Pid, i32)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => reaped.push((pid, code)),
            Ok(WaitStatus::Signaled(pid, signal, _core)) => reaped.push((pid, 128 + signal as i32)),
            // No child has exited (more may be running).
            Ok(WaitStatus::StillAlive) => break,
            // Stopped/continued children are not reported without WUNTRACED/WCONTINUED.
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            // No children at all.
            Err(Errno::ECHILD) => break,
            Err(err) => {
                log!("waitpid failed: {err}");
                break;
            }
        }
    }
    reaped
}

fn display(command: &[OsString]) -> String {
    command.iter().map(|arg| arg.to_string_lossy()).collect::<Vec<_>>().join(" ")
}
