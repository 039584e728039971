//! `GET /ssh` and `GET /pty` end to end: the test-built agent as a process; the real OpenSSH
//! client (`ssh`, `scp`, `sftp`) through a local TCP -> WebSocket bridge that adds the control
//! plane's headers (what `flare ssh --stdio` and the node tunnel do together); a tokio-tungstenite
//! client for the browser terminal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../common/mod.rs"]
mod common;
mod pty;
mod ssh;
mod support;
