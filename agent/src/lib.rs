//! `burstflare-agent`: the small static binary mounted read-only into every session container at
//! `/opt/burstflare/agent` and used as the container's entrypoint
//! (`/opt/burstflare/agent supervise -- <the image's CMD...>`). See docs/agent.md.
//!
//! It is the container's PID 1 ([`supervise`]): it starts the image's command in its own process
//! group, forwards SIGTERM/SIGINT/SIGHUP to it, reaps every zombie ([`children`]), and serves a
//! tiny HTTP API ([`http`]) that reports readiness and the session's last activity ([`activity`]).
//! On the same port it serves SSH ([`ssh`], [`sftp`]) and browser terminals ([`terminal`]) over
//! WebSockets ([`connect`]), running them as the session user ([`user`], [`spawn`]), and packs
//! and restores the session's persisted paths for snapshots ([`snapshot`]).

pub mod activity;
pub mod channel;
pub mod children;
pub mod connect;
pub mod http;
pub mod sftp;
pub mod snapshot;
pub mod spawn;
pub mod ssh;
pub mod supervise;
pub mod terminal;
pub mod user;
pub mod wsio;

use std::time::{SystemTime, UNIX_EPOCH};

/// The agent's version (the crate version), reported by `--version` and `GET /ready`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where the agent is mounted inside every session container.
pub const MOUNT_PATH: &str = "/opt/burstflare/agent";

/// The default `--listen` address of `supervise`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7070";

/// Logs one line to stderr, prefixed `burstflare-agent:`. One call per event.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("burstflare-agent: {}", format_args!($($arg)*))
    };
}

/// Milliseconds since the Unix epoch (0 for a clock before 1970).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}
