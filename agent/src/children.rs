//! The child registry: the one place where the agent's children are waited for.
//!
//! The supervisor reaps every exited child in its SIGCHLD loop with `waitpid(-1, WNOHANG)`
//! ([`Children::reap`]). Code that starts a process (the supervised command, SSH shells and exec,
//! `sftp-server`, browser terminals) does it through [`Children::spawn`], which registers the pid and
//! hands back a [`oneshot::Receiver`] that gets the exit status when the supervisor reaps it.
//!
//! `spawn` holds the registry lock across `fork`/`exec` and the registration, and `reap` holds it
//! around `waitpid` and the dispatch, so a child that exits at once is never reaped before it is
//! registered (its status would be lost), and the standard library's own `waitpid` on a child
//! whose `exec` failed never races the reaper. Nothing else may wait for a child: no
//! `tokio::process` (its orphan queue calls `waitpid` too) and no `Child::wait`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::log;

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called exit() with this code.
    Code(i32),
    /// A signal killed it.
    Signal { signal: i32, core_dumped: bool },
}

impl ExitStatus {
    /// The shell's view: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(code) => code,
            ExitStatus::Signal { signal, .. } => 128 + signal,
        }
    }

    /// The status of an exited or killed child; `None` for other wait results.
    pub fn from_wait(status: WaitStatus) -> Option<(Pid, ExitStatus)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, ExitStatus::Code(code))),
            WaitStatus::Signaled(pid, signal, core_dumped) => {
                Some((pid, ExitStatus::Signal { signal: signal as i32, core_dumped }))
            }
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(code) => write!(f, "{code}"),
            ExitStatus::Signal { signal, core_dumped } => {
                let name = Signal::try_from(signal).map_or("unknown signal", Signal::as_str);
                let core = if core_dumped { ", core dumped" } else { "" };
                write!(f, "{} (killed by {name}{core})", 128 + signal)
            }
        }
    }
}

/// Registered children waiting for their exit status; see the module docs.
#[derive(Debug, Default)]
pub struct Children {
    waiting: Mutex<HashMap<i32, oneshot::Sender<ExitStatus>>>,
}

impl Children {
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns `command` and registers its pid, atomically with respect to [`Children::reap`].
    /// The returned `Child` gives access to its pipes; never wait on it (dropping it does not).
    pub fn spawn(
        &self,
        command: &mut Command,
    ) -> io::Result<(Child, oneshot::Receiver<ExitStatus>)> {
        let mut waiting = self.lock();
        let child = command.spawn()?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        let (sender, receiver) = oneshot::channel();
        waiting.insert(pid, sender);
        Ok((child, receiver))
    }

    /// Reaps every child that has exited, without blocking. Registered children get their status
    /// through their channel; the others (orphans re-parented to the agent) are returned.
    pub fn reap(&self) -> Vec<(Pid, ExitStatus)> {
        let mut unclaimed = Vec::new();
        let mut waiting = self.lock();
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(status) => {
                    // Stopped/continued children are not reported without WUNTRACED/WCONTINUED.
                    let Some((pid, exit)) = ExitStatus::from_wait(status) else { continue };
                    match waiting.remove(&pid.as_raw()) {
                        // The receiver may be gone (nobody cares any more): fine.
                        Some(sender) => drop(sender.send(exit)),
                        None => unclaimed.push((pid, exit)),
                    }
                }
                Err(Errno::EINTR) => {}
                // No children at all.
                Err(Errno::ECHILD) => break,
                Err(err) => {
                    log!("waitpid failed: {err}");
                    break;
                }
            }
        }
        unclaimed
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, oneshot::Sender<ExitStatus>>> {
        // Inserts and removes cannot leave the map half-written.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
