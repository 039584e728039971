//! Connecting to a session: SSH keys, runtime tokens, the session's host key, and the WebSocket
//! endpoints that carry SSH and the browser terminal. docs/ssh.md describes the design and its
//! security model.
//!
//! - A user registers SSH public keys (`/api/v1/me/ssh-keys`). The agent inside a session accepts
//!   only the session owner's registered keys, handed to it per connection by the API.
//! - `POST …/sessions/{id}/runtime-token` issues a short-lived token bound to the caller and that
//!   session. It is sent only in the `Authorization: Bearer` header of the WebSocket request to
//!   `GET …/sessions/{id}/ssh`, never in a URL. A live connection lasts while its token does:
//!   the holder renews it (`…/runtime-token/{token}/renew`) before it expires; a revoked or
//!   expired token, or a removed or downgraded member, cuts the connection within seconds.
//! - Every session has its own Ed25519 host key, stable for the session's life (restarts included)
//!   and published by `GET …/sessions/{id}/host-key`; `flare` pins it in a known_hosts file.
//! - The browser terminal is `GET …/sessions/{id}/terminal` (WebSocket, session cookie, Origin
//!   must be this site): binary messages carry terminal bytes both ways, text messages carry JSON
//!   control messages ([`TerminalControl`]).

use serde::{Deserialize, Serialize};

/// Prefix of every runtime token (so a leaked one is recognisable and can be scanned for).
pub const RUNTIME_TOKEN_PREFIX: &str = "bfrt_";

/// Suffix of the SSH host names `flare ssh-config` answers for: `<session>.<workspace>.burstflare`.
pub const SSH_HOST_SUFFIX: &str = "burstflare";

/// The SSH host name (and known_hosts alias) of session `session` (its name) in workspace `ws`.
pub fn ssh_host_alias(session: &str, ws: &str) -> String {
    format!("{session}.{ws}.{SSH_HOST_SUFFIX}")
}

/// Splits `<session>.<workspace>.burstflare` into `(session, workspace)`; `None` for anything
/// else (a bare session name, say).
pub fn parse_ssh_host_alias(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(SSH_HOST_SUFFIX)?.strip_suffix('.')?;
    let (session, ws) = rest.split_once('.')?;
    (!session.is_empty() && !ws.is_empty() && !ws.contains('.')).then_some((session, ws))
}

/// A registered SSH public key (`GET /api/v1/me/ssh-keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: String,
    /// The owner's label for it ("laptop", "flare on host x").
    pub name: String,
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `rsa-sha2-512`, …
    pub algorithm: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// The key in OpenSSH one-line form, without the comment.
    pub public_key: String,
    pub created_at: i64,
}

/// `POST /api/v1/me/ssh-keys`: adding a key twice answers with the existing one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSshKey {
    /// 1 to 64 printable characters.
    pub name: String,
    /// One line of an OpenSSH `.pub` file: `ssh-ed25519 AAAA… [comment]`.
    pub public_key: String,
}

/// The host key of a session (`GET …/sessions/{id}/host-key`, and inside [`RuntimeToken`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKey {
    /// `<session>.<workspace>.burstflare`: the `HostKeyAlias` to pin it under.
    pub host_alias: String,
    /// `ssh-ed25519`.
    pub algorithm: String,
    /// `ssh-ed25519 AAAA…` (no comment).
    pub public_key: String,
    /// `SHA256:…`
    pub fingerprint: String,
    /// A ready known_hosts line: `<host_alias> <public_key>`.
    pub known_hosts: String,
}

/// `POST …/sessions/{id}/runtime-token`. The token is shown once; only its hash is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeToken {
    /// The token's id (for renew and revoke; not secret).
    pub id: String,
    /// `bfrt_…`: the bearer for `GET …/sessions/{id}/ssh`.
    pub token: String,
    /// Session id (not name).
    pub session_id: String,
    /// Unix ms; renew before then or live connections are cut.
    pub expires_at: i64,
    /// Seconds each renewal extends it by (the token's lifetime).
    pub ttl_secs: u64,
    /// The session's host key, to pin before connecting.
    pub host_key: HostKey,
    /// The SSH user name to log in as (the session's user; any name is accepted).
    pub ssh_user: String,
}

/// `POST …/sessions/{id}/runtime-token/{token}/renew`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewedRuntimeToken {
    pub id: String,
    pub expires_at: i64,
}

/// Text messages of the browser terminal's WebSocket (JSON), in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalControl {
    /// Browser -> agent: the terminal's size changed.
    Resize { cols: u16, rows: u16 },
    /// Agent -> browser: the shell exited with this status; the socket closes next.
    Exit { code: i32 },
    /// Agent/API -> browser: why the connection is about to close (access revoked, session
    /// stopped…), in words for the user.
    Closing { reason: String },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn host_alias_round_trips() {
        let alias = ssh_host_alias("dev-abcd", "acme");
        assert_eq!(alias, "dev-abcd.acme.burstflare");
        assert_eq!(parse_ssh_host_alias(&alias), Some(("dev-abcd", "acme")));
        assert_eq!(parse_ssh_host_alias("dev-abcd"), None);
        assert_eq!(parse_ssh_host_alias("burstflare"), None);
        assert_eq!(parse_ssh_host_alias(".acme.burstflare"), None);
        assert_eq!(parse_ssh_host_alias("a.b.c.burstflare"), None);
        assert_eq!(parse_ssh_host_alias("dev.acme.example"), None);
    }

    #[test]
    fn terminal_control_is_tagged_json() {
        let r = TerminalControl::Resize { cols: 80, rows: 24 };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"type":"resize","cols":80,"rows":24}"#);
        let back: TerminalControl = serde_json::from_str(r#"{"type":"exit","code":3}"#).unwrap();
        assert_eq!(back, TerminalControl::Exit { code: 3 });
    }
}
