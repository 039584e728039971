//! `GET /ssh` and `GET /pty`: the WebSocket endpoints through which the control plane connects
//! SSH clients and browser terminals to the session (docs/ssh.md, "Agent protocol").
//!
//! This module checks a request (bearer token, headers, query), answers `101 Switching Protocols`
//! and hands the upgraded connection to [`crate::ssh`] or [`crate::terminal`]. The checks are pure
//! functions ([`check_bearer`], [`parse_authorized_keys`], [`PtyParams::parse`]) so they are unit
//! tested without a socket. The snapshot endpoints ([`crate::snapshot`]) use the same token check
//! ([`Connect::check_token`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, HeaderMap};
use hyper::{Request, Response, StatusCode};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::activity::Activity;
use crate::children::Children;
use crate::http::{Reply, into_response};
use crate::terminal::Terminals;
use crate::{log, ssh, terminal, wsio};

/// The header with the public keys one SSH connection may authenticate with.
pub const AUTHORIZED_KEYS_HEADER: &str = "x-burstflare-authorized-keys";
/// Who connects (a user id), for log lines only.
pub const USER_HEADER: &str = "x-burstflare-user";
/// The connection's id, for log lines only.
pub const CONNECTION_HEADER: &str = "x-burstflare-connection";

/// Terminal size limits for `/pty` (`cols`, `rows`) and the default size.
pub const MAX_TERMINAL_SIDE: u16 = 1000;
pub const DEFAULT_COLS: u16 = 80;
pub const DEFAULT_ROWS: u16 = 24;

/// The secrets and settings `main` takes out of the environment before anything starts.
#[derive(Default)]
pub struct Secrets {
    /// `BURSTFLARE_AGENT_TOKEN`.
    pub token: Option<String>,
    /// `BURSTFLARE_HOST_KEY`: an OpenSSH private key.
    pub host_key: Option<String>,
    /// `BURSTFLARE_SESSION_USER`: a user name or uid.
    pub session_user: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("host_key", &self.host_key.as_ref().map(|_| "<redacted>"))
            .field("session_user", &self.session_user)
            .finish()
    }
}

/// Everything the `/ssh` and `/pty` endpoints share.
pub struct Connect {
    token: Option<String>,
    /// The SSH server's configuration (host key included), or why there is none.
    ssh: Result<Arc<russh::server::Config>, String>,
    /// `BURSTFLARE_SESSION_USER`, resolved again for every connection.
    pub session_user: Option<String>,
    pub children: Arc<Children>,
    pub activity: Arc<Activity>,
    pub terminals: Terminals,
    /// One snapshot pack or restore at a time.
    pub snapshots: crate::snapshot::Busy,
    next_connection: AtomicU64,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connect")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("session_user", &self.session_user)
            .finish_non_exhaustive()
    }
}

impl Connect {
    /// Sets up the endpoints from `secrets`, logging what is missing: no token (both endpoints
    /// answer 503), no host key (a throwaway Ed25519 key), an invalid host key (`/ssh` answers 503).
    pub fn new(secrets: Secrets, children: Arc<Children>, activity: Arc<Activity>) -> Self {
        if secrets.token.is_none() {
            log!("BURSTFLARE_AGENT_TOKEN is not set: /ssh, /pty and /snapshot/* answer 503");
        }
        let host_key = match secrets.host_key.as_deref() {
            Some(text) => PrivateKey::from_openssh(text.trim())
                .map_err(|err| {
                    format!("BURSTFLARE_HOST_KEY is not a valid OpenSSH private key: {err}")
                })
                .and_then(|key| {
                    if key.is_encrypted() {
                        Err("BURSTFLARE_HOST_KEY is encrypted (it must have no passphrase)"
                            .to_string())
                    } else {
                        Ok((key, "BURSTFLARE_HOST_KEY"))
                    }
                }),
            None => {
                ssh::throwaway_host_key().map(|key| (key, "throwaway, BURSTFLARE_HOST_KEY not set"))
            }
        };
        let ssh = match host_key {
            Ok((key, source)) => {
                log!(
                    "SSH host key {} {} ({source})",
                    key.algorithm(),
                    key.public_key().fingerprint(HashAlg::Sha256)
                );
                Ok(Arc::new(ssh::server_config(key)))
            }
            Err(reason) => {
                log!("{reason}; /ssh answers 503");
                Err(reason)
            }
        };
        match crate::user::resolve_system(secrets.session_user.as_deref()) {
            Ok(identity) if identity.switch => {
                log!("session user {} (uid {}, gid {})", identity.name, identity.uid, identity.gid)
            }
            Ok(identity) => {
                if secrets.session_user.is_some() {
                    log!(
                        "not running as root: BURSTFLARE_SESSION_USER ignored, sessions run as the \
                         agent's own user {} (uid {})",
                        identity.name,
                        identity.uid
                    );
                }
            }
            Err(err) => log!("{err}; SSH and terminal connections are refused until it exists"),
        }
        Self {
            token: secrets.token,
            ssh,
            session_user: secrets.session_user,
            children,
            activity,
            terminals: Terminals::default(),
            snapshots: crate::snapshot::Busy::default(),
            next_connection: AtomicU64::new(1),
        }
    }

    /// The bearer check of every token-protected endpoint ([`check_bearer`] with the agent token).
    pub fn check_token(&self, headers: &HeaderMap) -> Result<(), Reply> {
        check_bearer(self.token.as_deref(), headers)
    }

    /// Answers `GET /ssh` or `GET /pty` (`path`): an error, or `101` with the connection handed to
    /// the SSH server or a terminal once hyper has upgraded it.
    pub fn handle<B>(
        self: &Arc<Self>,
        path: &str,
        mut request: Request<B>,
    ) -> Response<Full<Bytes>> {
        if let Err(reply) = self.check_token(request.headers()) {
            return into_response(reply);
        }
        let Some(accept) = wsio::accept_key(request.headers()) else {
            return into_response(error(400, "expected a WebSocket upgrade request"));
        };
        let peer = Peer::from_headers(request.headers(), || {
            format!("a{}", self.next_connection.fetch_add(1, Ordering::Relaxed))
        });
        let endpoint = if path == "/ssh" {
            let config = match &self.ssh {
                Ok(config) => config.clone(),
                Err(reason) => return into_response(error(503, reason)),
            };
            let header = request.headers().get(AUTHORIZED_KEYS_HEADER);
            let keys = header
                .map_or(Ok(""), |value| value.to_str().map_err(|_| "not ASCII".to_string()))
                .and_then(parse_authorized_keys);
            match keys {
                Ok(keys) => Endpoint::Ssh { config, keys },
                Err(reason) => {
                    let message = format!("invalid X-BurstFlare-Authorized-Keys header: {reason}");
                    return into_response(error(400, &message));
                }
            }
        } else {
            match PtyParams::parse(request.uri().query()) {
                Ok(params) => Endpoint::Pty(params),
                Err(reason) => return into_response(error(400, &reason)),
            }
        };
        let on_upgrade = hyper::upgrade::on(&mut request);
        let connect = self.clone();
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let socket = wsio::from_upgraded(upgraded).await;
                    match endpoint {
                        Endpoint::Ssh { config, keys } => {
                            ssh::serve(socket, connect, config, peer, keys).await;
                        }
                        Endpoint::Pty(params) => {
                            terminal::serve(socket, connect, params, peer).await
                        }
                    }
                }
                Err(err) => log!("WebSocket upgrade failed: {err}"),
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (name, value) in wsio::switching_headers(accept) {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// What an upgraded connection is for.
enum Endpoint {
    Ssh { config: Arc<russh::server::Config>, keys: Vec<PublicKey> },
    Pty(PtyParams),
}

/// Who is on the other end of a connection, from the control plane's headers (for logs).
#[derive(Debug, Clone)]
pub struct Peer {
    /// `X-BurstFlare-Connection`, or a local id.
    pub connection: String,
    /// `X-BurstFlare-User`, or `-`.
    pub user: String,
}

impl Peer {
    fn from_headers(headers: &HeaderMap, local_id: impl FnOnce() -> String) -> Self {
        let header = |name| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| {
                    value.chars().filter(|c| c.is_ascii_graphic()).take(100).collect::<String>()
                })
                .filter(|value| !value.is_empty())
        };
        Self {
            connection: header(CONNECTION_HEADER).unwrap_or_else(local_id),
            user: header(USER_HEADER).unwrap_or_else(|| "-".to_string()),
        }
    }
}

fn error(status: u16, message: &str) -> Reply {
    Reply { status, body: Some(json!({ "error": message })) }
}

/// Checks `Authorization: Bearer <token>` against the agent token, in constant time: 503 when the
/// agent has no token, 401 when the header is missing or wrong.
pub fn check_bearer(token: Option<&str>, headers: &HeaderMap) -> Result<(), Reply> {
    let Some(token) = token else {
        return Err(error(
            503,
            "the agent has no token (BURSTFLARE_AGENT_TOKEN): connections are disabled",
        ));
    };
    let offered = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credentials)| credentials.trim());
    match offered {
        Some(offered) if bool::from(offered.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(error(401, "invalid bearer token")),
        None => Err(error(401, "missing bearer token (Authorization: Bearer <agent token>)")),
    }
}

/// Parses the `X-BurstFlare-Authorized-Keys` value: base64 (standard alphabet, padded) of
/// newline-separated OpenSSH public keys (`ssh-ed25519 AAAA… comment`). Blank lines and `#`
/// comments are skipped; at least one key is required.
pub fn parse_authorized_keys(value: &str) -> Result<Vec<PublicKey>, String> {
    if value.trim().is_empty() {
        return Err("missing or empty".to_string());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|err| format!("not base64: {err}"))?;
    let text = String::from_utf8(decoded).map_err(|_| "not UTF-8 text".to_string())?;
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(line)
            .map_err(|err| format!("line {} is not an OpenSSH public key: {err}", index + 1))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("no keys".to_string());
    }
    Ok(keys)
}

/// Whether `offered` is one of `authorized`: same algorithm and key data (comments do not count).
pub fn is_authorized(authorized: &[PublicKey], offered: &PublicKey) -> bool {
    authorized.iter().any(|key| key.key_data() == offered.key_data())
}

/// The query of `GET /pty`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyParams {
    pub cols: u16,
    pub rows: u16,
    /// A reconnectable terminal's id.
    pub tid: Option<String>,
}

impl PtyParams {
    /// Parses `cols=C&rows=R&tid=ID` (each optional; 80x24 by default). Errors name the parameter.
    pub fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut params = Self { cols: DEFAULT_COLS, rows: DEFAULT_ROWS, tid: None };
        for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "cols" => params.cols = parse_side("cols", value)?,
                "rows" => params.rows = parse_side("rows", value)?,
                "tid" => {
                    let valid = (1..=64).contains(&value.len())
                        && value
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if !valid {
                        return Err(
                            "invalid tid: 1 to 64 characters of A-Z, a-z, 0-9, _ and -".to_string()
                        );
                    }
                    params.tid = Some(value.to_string());
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn parse_side(name: &str, value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .ok()
        .filter(|side| (1..=MAX_TERMINAL_SIDE).contains(side))
        .ok_or_else(|| format!("invalid {name}: a number from 1 to {MAX_TERMINAL_SIDE}"))
}
