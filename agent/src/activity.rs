//! The session's last activity: the latest of the agent's start, the last recorded activity
//! (`POST /activity`, and input on SSH channels and browser terminals), and the
//! newest modification time among the `/dev/pts/*` entries.
//!
//! The kernel updates a pseudo-terminal's times when it is read or written (at most every 8 seconds,
//! so that keystroke timing does not leak), which makes the pts mtimes a cheap, real activity signal
//! for interactive shells, whoever opened them (`docker exec -it`, SSH, the browser terminal).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{now_ms, unix_ms};

/// Where the container's pseudo-terminals live.
pub const PTS_DIR: &str = "/dev/pts";

/// Activity bookkeeping shared by the HTTP API and in-process callers.
#[derive(Debug)]
pub struct Activity {
    started_at_ms: u64,
    /// The last recorded activity; 0 = none yet.
    recorded_at_ms: AtomicU64,
    pts_dir: PathBuf,
}

impl Activity {
    /// Activity that started at `started_at_ms` and watches the pseudo-terminals in `pts_dir`
    /// (normally [`PTS_DIR`]).
    pub fn new(started_at_ms: u64, pts_dir: impl Into<PathBuf>) -> Self {
        Self { started_at_ms, recorded_at_ms: AtomicU64::new(0), pts_dir: pts_dir.into() }
    }

    /// Records activity now. SSH and terminal code call this for every session they serve.
    pub fn record(&self) {
        self.record_at(now_ms());
    }

    /// Records activity now unless some was recorded less than a second ago: cheap enough for
    /// every chunk of SSH or terminal input.
    pub fn touch(&self) {
        let now = now_ms();
        if now.saturating_sub(self.recorded_at_ms.load(Ordering::Relaxed)) >= 1_000 {
            self.record_at(now);
        }
    }

    /// Records activity at `at_ms`; an older time than the one already recorded is ignored.
    pub fn record_at(&self, at_ms: u64) {
        self.recorded_at_ms.fetch_max(at_ms, Ordering::Relaxed);
    }

    /// The last recorded activity, if any.
    pub fn recorded_at_ms(&self) -> Option<u64> {
        Some(self.recorded_at_ms.load(Ordering::Relaxed)).filter(|&ms| ms > 0)
    }

    /// When the agent started.
    pub fn started_at_ms(&self) -> u64 {
        self.started_at_ms
    }

    /// The latest of start, recorded activity and pseudo-terminal mtimes, in Unix milliseconds.
    pub fn last_active_at_ms(&self) -> u64 {
        last_active_at(self.started_at_ms, self.recorded_at_ms(), newest_mtime_ms(&self.pts_dir))
    }
}

/// The latest of the three activity signals.
pub fn last_active_at(
    started_at_ms: u64,
    recorded_at_ms: Option<u64>,
    pts_mtime_ms: Option<u64>,
) -> u64 {
    [recorded_at_ms, pts_mtime_ms].into_iter().flatten().fold(started_at_ms, u64::max)
}

/// The newest modification time (Unix milliseconds) among the entries of `dir`, without following
/// symlinks; `None` when `dir` cannot be read or is empty.
pub fn newest_mtime_ms(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok()?.metadata().ok()?.modified().ok())
        .map(unix_ms)
        .max()
}
