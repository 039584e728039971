//! Reaching sessions with the real OpenSSH client (docs/ssh.md): flare's own key, host-key
//! pinning, the `ssh` command line, the `~/.ssh/config` include, waking a session, and the
//! ProxyCommand that carries SSH over a WebSocket (`flare ssh --stdio`).

pub mod args;
pub mod config_file;
pub mod keys;
pub mod known_hosts;
pub mod proxy;
pub mod wake;

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::fail::Failure;
use crate::store::{Paths, create_private_dir, open_private};

/// How long to wait for another `flare` process to finish with the SSH files.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// `<config dir>/ssh/`: flare's key pair, the pinned host keys and the lock that guards them.
#[derive(Debug, Clone)]
pub struct SshPaths {
    pub dir: PathBuf,
}

impl SshPaths {
    /// Under the configuration directory, made absolute: these paths are written into ssh's
    /// options and configuration.
    pub fn new(paths: &Paths) -> Self {
        let dir = paths.dir.join("ssh");
        Self { dir: std::path::absolute(&dir).unwrap_or(dir) }
    }

    /// flare's own private key; its public key is next to it (`.pub`).
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Held while the key is made or known_hosts rewritten (an OS file lock, gone with the
    /// process).
    pub async fn lock(&self) -> anyhow::Result<File> {
        create_private_dir(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join("lock");
        let file = open_private(&path).with_context(|| format!("opening {}", path.display()))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Failure::error(format!(
                        "another flare process has held {} for {} s",
                        path.display(),
                        LOCK_WAIT.as_secs()
                    ))
                    .hint("wait for it to finish (or stop it) and try again")
                    .into());
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
        }
    }
}

/// The path of the running `flare`, for ProxyCommands: the command it was started as when that
/// is this very program (so a symlink such as `/usr/local/bin/flare` stays one and survives
/// upgrades), else the executable's own path.
pub fn flare_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the path of the running flare")?;
    let same = |p: &std::path::Path| {
        std::fs::canonicalize(p)
            .ok()
            .zip(std::fs::canonicalize(&exe).ok())
            .is_some_and(|(a, b)| a == b)
    };
    if let Some(arg0) = std::env::args_os().next().map(PathBuf::from) {
        let found = if arg0.components().count() > 1 {
            std::path::absolute(&arg0).ok()
        } else {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .filter(|d| d.is_absolute())
                    .map(|d| d.join(&arg0))
                    .find(|p| p.is_file())
            })
        };
        if let Some(p) = found.filter(|p| same(p)) {
            return Ok(p);
        }
    }
    Ok(exe)
}
