//! `flare ssh`, `flare ssh --stdio`, `flare port-forward`, `flare ssh-config` and
//! `flare ssh-key`: reaching sessions with the system's OpenSSH client (docs/ssh.md).
//!
//! `flare ssh` and `flare port-forward` do the preparation (flare's key registered, the session
//! woken, its host key pinned) and then replace themselves with `ssh`, whose ProxyCommand is
//! `flare ssh --stdio`: that one wakes the session too (for `ssh-config` users), takes a runtime
//! token, pins the host key again and carries the bytes over the session's SSH WebSocket.
//! Under `flare ssh` the ProxyCommand skips those steps: the runtime token `flare ssh` took to
//! pin the host key is handed down to it in the environment ([`HANDOFF_ENV`]), which saves
//! three API calls per connection (make bench, cold start).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use sdk::{RuntimeToken, SessionDetail, SshKey};
use serde::Serialize;

use crate::commands::session::session_error;
use crate::fail::{Exit, Failure};
use crate::output;
use crate::session::{Authed, Ctx};
use crate::ssh::args::{self, Forward, Selection, SshCommand};
use crate::ssh::config_file::{self, SshConfigPaths};
use crate::ssh::keys::{self, Identity};
use crate::ssh::proxy::{self, End};
use crate::ssh::{SshPaths, flare_path, known_hosts, wake};

/// Revoking the runtime token on the way out may take this long at most.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(2);
/// One renewal of the runtime token may take this long.
const RENEW_TIMEOUT: Duration = Duration::from_secs(20);
/// After a failed renewal, the next try comes this soon (or at the usual time if sooner).
const RENEW_RETRY: Duration = Duration::from_secs(5);
/// The environment variable through which `flare ssh` hands its runtime token (and the session
/// it is for) down to its ProxyCommand. Only processes of the same user can read it; a
/// ProxyCommand that does not use it (ssh reused a multiplexed connection) leaves the token to
/// expire unrenewed.
const HANDOFF_ENV: &str = "BURSTFLARE_SSH_HANDOFF";
/// A handed-down token with less life left than this is not used (a fresh one is taken).
const HANDOFF_MARGIN_MS: i64 = 10_000;

/// What `flare ssh` hands down to its ProxyCommand.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Handoff {
    workspace: String,
    session: SessionDetail,
    token: RuntimeToken,
}

impl Handoff {
    /// The handed-down token, when it is for the session `t` names and has life left.
    fn take(raw: Option<String>, t: &Target, now_ms: i64) -> Option<(SessionDetail, RuntimeToken)> {
        let h: Handoff = serde_json::from_str(&raw?).ok()?;
        let same = h.workspace == t.ws
            && (h.session.name == t.id || h.session.id == t.id)
            && h.token.session_id == h.session.id;
        (same && h.token.expires_at - now_ms > HANDOFF_MARGIN_MS).then_some((h.session, h.token))
    }
}

// ---------------------------------------------------------------------------------------------
// which session

/// A session as the user named it: its name or ID in a workspace, or its host alias
/// `<session>.<workspace>.burstflare` (what `ssh-config` hands over as `%h`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub ws: String,
    pub id: String,
    pub alias: Option<String>,
}

pub fn target(ctx: &Ctx, session: &str) -> anyhow::Result<Target> {
    parse_target(session, || ctx.workspace(None))
}

fn parse_target(
    session: &str,
    workspace: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<Target> {
    let session = session.trim();
    if let Some((name, ws)) = sdk::parse_ssh_host_alias(session) {
        return Ok(Target {
            ws: ws.to_string(),
            id: name.to_string(),
            alias: Some(session.to_string()),
        });
    }
    if session.ends_with(&format!(".{}", sdk::SSH_HOST_SUFFIX)) {
        return Err(Failure::usage(format!(
            "`{session}` is not a session host name: they are SESSION.WORKSPACE.{}",
            sdk::SSH_HOST_SUFFIX
        ))
        .hint(format!(
            "e.g. `dev.acme.{}`, or the session's name with --workspace",
            sdk::SSH_HOST_SUFFIX
        ))
        .into());
    }
    if session.is_empty() {
        return Err(Failure::usage("no session given")
            .hint("`flare session list` lists the workspace's sessions")
            .into());
    }
    Ok(Target { ws: workspace()?, id: session.to_string(), alias: None })
}

/// The ProxyCommand's `flare` options: the same configuration directory and profile, and for
/// `flare ssh` the very server in use (`ssh-config` only keeps a server given explicitly, so a
/// profile's server can change later).
fn selection(ctx: &Ctx, for_ssh_config: bool) -> anyhow::Result<Selection> {
    let dir = &ctx.paths()?.dir;
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    Ok(Selection {
        config_dir: Some(dir.to_string_lossy().into_owned()),
        server: if for_ssh_config { ctx.server_flag() } else { Some(ctx.server()) },
        profile: (ctx.profile != crate::DEFAULT_PROFILE).then(|| ctx.profile.clone()),
    })
}

// ---------------------------------------------------------------------------------------------
// flare ssh, flare port-forward

/// Everything `ssh` needs, ready.
struct Prepared {
    session: SessionDetail,
    ws: String,
    identity: Identity,
    alias: String,
    user: String,
    known_hosts: PathBuf,
    /// The runtime token that pinned the host key, handed down to the ProxyCommand.
    token: RuntimeToken,
}

/// Resolves the session, makes sure the key is registered, wakes the session and pins its host
/// key (from a runtime token, which also names the SSH user; it is handed down to the
/// ProxyCommand, which connects with it).
async fn prepare(ctx: &Ctx, session: &str, identity: Option<&Path>) -> anyhow::Result<Prepared> {
    let t = target(ctx, session)?;
    let ssh = SshPaths::new(ctx.paths()?);
    let mut authed = ctx.signed_in()?;
    let identity = match identity {
        Some(path) => keys::read_identity(path)?,
        None => keys::own_identity(&ssh).await?.0,
    };
    let s = authed
        .call(async |c| c.session(&t.ws, &t.id).await)
        .await
        .map_err(|e| session_error(e, &t.id, &t.ws))?;
    keys::ensure_registered(&mut authed, &identity.key, &keys::default_key_name()).await?;
    let s = wake::until_running(&mut authed, &t.ws, &t.id, s).await?;
    let token = runtime_token(&mut authed, &t.ws, &s).await?;
    if let Err(e) = pin(&ssh, &t, &token).await {
        revoke(&mut authed, &t.ws, &s.id, &token.id).await;
        return Err(e);
    }
    Ok(Prepared {
        alias: token.host_key.host_alias.clone(),
        user: token.ssh_user.clone(),
        session: s,
        ws: t.ws,
        identity,
        known_hosts: ssh.known_hosts(),
        token,
    })
}

impl Prepared {
    fn handoff(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(&Handoff {
            workspace: self.ws.clone(),
            session: self.session.clone(),
            token: self.token.clone(),
        })?)
    }

    /// Runs ssh with the token handed down; when ssh cannot even start, revokes the token.
    async fn exec(&self, ctx: &Ctx, args: &[String]) -> anyhow::Result<Exit> {
        let error = exec_ssh(args, &self.handoff()?);
        if let Ok(mut authed) = ctx.signed_in() {
            revoke(&mut authed, &self.ws, &self.session.id, &self.token.id).await;
        }
        error
    }
}

async fn runtime_token(
    authed: &mut Authed<'_>,
    ws: &str,
    s: &SessionDetail,
) -> anyhow::Result<RuntimeToken> {
    authed
        .call(async |c| c.runtime_token(ws, &s.id).await)
        .await
        .map_err(|e| session_error(e, &s.name, ws))
        .with_context(|| format!("getting a connection token for session {}", s.name))
}

/// Pins the token's host key under its alias, and under the alias the user typed when that
/// differs (ssh looks the key up by the name it was given).
async fn pin(ssh: &SshPaths, t: &Target, token: &RuntimeToken) -> anyhow::Result<()> {
    let mut aliases = vec![token.host_key.host_alias.as_str()];
    if let Some(a) = t.alias.as_deref().filter(|a| *a != token.host_key.host_alias) {
        aliases.push(a);
    }
    known_hosts::pin(ssh, &aliases, &token.host_key.public_key).await
}

/// Best effort, briefly: the token expires by itself anyway.
async fn revoke(authed: &mut Authed<'_>, ws: &str, id: &str, token_id: &str) {
    let call = authed.call(async |c| c.revoke_runtime_token(ws, id, token_id).await);
    let _ = tokio::time::timeout(REVOKE_TIMEOUT, call).await;
}

fn ssh_command<'a>(
    ctx: &Ctx,
    p: &'a Prepared,
    extra: &'a [String],
    forward: Option<String>,
    command: &'a [String],
) -> anyhow::Result<SshCommand<'a>> {
    let ws = args::target_word(&p.ws);
    let name = args::target_word(&p.session.name);
    let proxy_command =
        args::proxy_command(&flare_path()?, &selection(ctx, false)?, &["--workspace", &ws, &name]);
    Ok(SshCommand {
        proxy_command,
        identity: &p.identity.private,
        known_hosts: &p.known_hosts,
        alias: &p.alias,
        user: &p.user,
        extra,
        forward,
        command,
    })
}

/// `flare ssh SESSION [-- COMMAND…]`: never returns when ssh starts; flare's exit status is
/// ssh's.
pub async fn ssh(
    ctx: &Ctx,
    session: &str,
    identity: Option<&Path>,
    extra: &[String],
    command: &[String],
) -> anyhow::Result<Exit> {
    let p = prepare(ctx, session, identity).await?;
    let cmd = ssh_command(ctx, &p, extra, None, command)?;
    p.exec(ctx, &cmd.args()).await
}

/// `flare port-forward SESSION LOCAL:REMOTE`
pub async fn port_forward(
    ctx: &Ctx,
    session: &str,
    spec: &str,
    identity: Option<&Path>,
    extra: &[String],
) -> anyhow::Result<Exit> {
    let forward = Forward::parse(spec).map_err(|e| {
        Failure::usage(format!("LOCAL:REMOTE `{spec}`: {e}"))
            .hint("e.g. `8080:3000` (local 8080 to the session's 3000) or `5432:db:5432`")
    })?;
    let p = prepare(ctx, session, identity).await?;
    let cmd = ssh_command(ctx, &p, extra, Some(forward.ssh_spec()), &[])?;
    let local = format!("127.0.0.1:{}", forward.local);
    if ctx.text() {
        println!(
            "Forwarding {local} -> {} in session {} ({}); Ctrl-C to stop",
            forward.remote_display(),
            p.session.name,
            p.ws
        );
    } else {
        output::json(&serde_json::json!({
            "session": p.session.name,
            "workspace": p.ws,
            "local": local,
            "remote": forward.remote_display(),
        }))?;
    }
    p.exec(ctx, &cmd.args()).await
}

/// Replaces flare with `ssh ARGS`, `handoff` in its environment for the ProxyCommand. Returns
/// only when ssh could not be run.
fn exec_ssh(args: &[String], handoff: &str) -> anyhow::Result<Exit> {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let mut command = std::process::Command::new("ssh");
    command.args(args).env(HANDOFF_ENV, handoff);
    #[cfg(unix)]
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    #[cfg(not(unix))]
    let error = match command.status() {
        Ok(status) => std::process::exit(status.code().unwrap_or(255)),
        Err(e) => e,
    };
    Err(if error.kind() == std::io::ErrorKind::NotFound {
        Failure::error("ssh was not found: flare runs the system's OpenSSH client")
            .hint("install it (`apt install openssh-client`, `brew install openssh`…)")
    } else {
        Failure::error(format!("could not run ssh: {error}"))
    }
    .into())
}

// ---------------------------------------------------------------------------------------------
// flare ssh --stdio

/// `flare ssh --stdio SESSION`: the ProxyCommand. Returns the exit code: 0 when the connection
/// ended normally; errors (which the caller prints) exit 255.
pub async fn stdio(ctx: &Ctx, session: &str) -> anyhow::Result<u8> {
    // From here on SIGHUP, SIGINT and SIGTERM are caught, so the token can be revoked.
    let mut signals = proxy::Signals::new();
    let t = target(ctx, session)?;
    let ssh = SshPaths::new(ctx.paths()?);
    let server = ctx.server();
    let mut authed = ctx.signed_in()?;

    let handed = Handoff::take(std::env::var(HANDOFF_ENV).ok(), &t, output::now_ms());
    let (s, token) = match handed {
        // `flare ssh` resolved, woke and pinned just before it ran ssh.
        Some(ready) => ready,
        None => tokio::select! {
            ready = ready(&mut authed, &t, &ssh) => ready?,
            sig = signals.recv() => return Ok(End::Signal(sig).outcome(&server).0),
        },
    };
    let url = ctx.client()?.ssh_socket_url(&t.ws, &s.id)?;
    let what = format!("session {}", s.name);
    let connected = tokio::select! {
        ws = proxy::connect(&url, &token.token, &what) => Ok(ws),
        sig = signals.recv() => Err(sig),
    };
    let socket = match connected {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            revoke(&mut authed, &t.ws, &s.id, &token.id).await;
            return Err(e);
        }
        Err(sig) => {
            revoke(&mut authed, &t.ws, &s.id, &token.id).await;
            return Ok(End::Signal(sig).outcome(&server).0);
        }
    };
    let end = {
        let side = async {
            tokio::select! {
                end = keep_renewed(&mut authed, &ctx.profile, &t.ws, &s.id, &token) => end,
                sig = signals.recv() => End::Signal(sig),
            }
        };
        proxy::bridge(socket, proxy::stdin(), proxy::stdout(), proxy::TIMING, side).await
    };
    revoke(&mut authed, &t.ws, &s.id, &token.id).await;
    let (code, message) = end.outcome(&server);
    if let Some(m) = message {
        proxy::notice(&m);
    }
    Ok(code)
}

/// The session running, a runtime token for it and its host key pinned.
async fn ready(
    authed: &mut Authed<'_>,
    t: &Target,
    ssh: &SshPaths,
) -> anyhow::Result<(SessionDetail, RuntimeToken)> {
    let s = authed
        .call(async |c| c.session(&t.ws, &t.id).await)
        .await
        .map_err(|e| session_error(e, &t.id, &t.ws))?;
    let s = wake::until_running(authed, &t.ws, &t.id, s).await?;
    let token = runtime_token(authed, &t.ws, &s).await?;
    if let Err(e) = pin(ssh, t, &token).await {
        revoke(authed, &t.ws, &s.id, &token.id).await;
        return Err(e);
    }
    Ok((s, token))
}

/// Renews the token every third of its lifetime; says once on stderr when renewing fails (the
/// server ends the connection when the token expires). Never ends by itself.
async fn keep_renewed(
    authed: &mut Authed<'_>,
    profile: &str,
    ws: &str,
    id: &str,
    token: &RuntimeToken,
) -> End {
    let every = Duration::from_secs((token.ttl_secs / 3).max(1));
    let mut expires_at = token.expires_at;
    let mut wait = every;
    let mut failing = false;
    loop {
        tokio::time::sleep(wait).await;
        let call = authed.call(async |c| c.renew_runtime_token(ws, id, &token.id).await);
        match tokio::time::timeout(RENEW_TIMEOUT, call).await {
            Ok(Ok(renewed)) => {
                expires_at = renewed.expires_at;
                wait = every;
                if failing {
                    proxy::notice("renewed the connection's token again");
                    failing = false;
                }
            }
            failed => {
                if !failing {
                    let why = match failed {
                        Ok(Err(e)) => {
                            let f = crate::fail::classify(&e, profile);
                            match f.hint {
                                Some(h) => format!("{} ({h})", f.message),
                                None => f.message,
                            }
                        }
                        _ => format!("no answer within {} s", RENEW_TIMEOUT.as_secs()),
                    };
                    let left = output::span(expires_at - output::now_ms());
                    proxy::notice(&format!(
                        "could not renew the connection's token: {why}; the connection ends in \
                         {left} unless a later try works"
                    ));
                    failing = true;
                }
                wait = every.min(RENEW_RETRY);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// flare ssh-config

#[derive(Serialize)]
struct SshConfigOutput {
    /// `written`, `unchanged`, `removed`, `absent`.
    status: &'static str,
    ssh_config: PathBuf,
    include_file: PathBuf,
    changes: config_file::Changes,
}

pub async fn ssh_config(ctx: &Ctx, remove: bool, print: bool) -> anyhow::Result<()> {
    let paths = SshConfigPaths::resolve()?;
    if remove {
        let changes = config_file::uninstall(&paths)?;
        let status = if changes.ssh_config || changes.include_file { "removed" } else { "absent" };
        if !ctx.text() {
            return output::json(&SshConfigOutput {
                status,
                ssh_config: paths.config,
                include_file: paths.include,
                changes,
            });
        }
        if status == "removed" {
            println!(
                "Removed {} and its Include line from {}.",
                paths.include.display(),
                paths.config.display()
            );
        } else {
            println!(
                "Nothing to remove: {} does not include flare's block.",
                paths.config.display()
            );
        }
        return Ok(());
    }
    let ssh = SshPaths::new(ctx.paths()?);
    let proxy_command = args::proxy_command(&flare_path()?, &selection(ctx, true)?, &["%h"]);
    let content = config_file::block(&proxy_command, &ssh.key(), &ssh.known_hosts());
    if print {
        if !ctx.text() {
            return output::json(&serde_json::json!({
                "include_file": paths.include,
                "include_line": paths.include_line(),
                "content": content,
            }));
        }
        print!("{content}");
        return Ok(());
    }
    let mut authed = ctx.signed_in()?;
    let (identity, _) = keys::own_identity(&ssh).await?;
    keys::ensure_registered(&mut authed, &identity.key, &keys::default_key_name()).await?;
    let changes = config_file::install(&paths, &content)?;
    let status = if changes.ssh_config || changes.include_file { "written" } else { "unchanged" };
    if !ctx.text() {
        return output::json(&SshConfigOutput {
            status,
            ssh_config: paths.config,
            include_file: paths.include,
            changes,
        });
    }
    if status == "written" {
        println!(
            "Wrote {} and included it from the first line of {}.",
            paths.include.display(),
            paths.config.display()
        );
    } else {
        println!("{} is up to date; nothing changed.", paths.include.display());
    }
    let ws = ctx.default_workspace().unwrap_or_else(|| "WORKSPACE".into());
    println!(
        "Sessions are now reachable as SESSION.{ws}.{suffix}: `ssh dev.{ws}.{suffix}`; scp, sftp, \
         rsync and editors' remote SSH work the same way. `flare ssh-config --remove` undoes this.",
        suffix = sdk::SSH_HOST_SUFFIX
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// flare ssh-key

pub async fn key_list(ctx: &Ctx) -> anyhow::Result<()> {
    let mut authed = ctx.signed_in()?;
    let list = authed.call(async |c| c.ssh_keys().await).await.context("listing your SSH keys")?;
    if !ctx.text() {
        return output::json(&list);
    }
    if list.is_empty() {
        println!(
            "No SSH keys yet; `flare ssh-key add` registers flare's own key (`flare ssh` does it \
             by itself), `flare ssh-key add PATH.pub` another one."
        );
        return Ok(());
    }
    println!("{}", key_table(&list));
    Ok(())
}

fn key_table(list: &[SshKey]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                k.name.clone(),
                k.algorithm.clone(),
                k.fingerprint.clone(),
                output::date(k.created_at),
            ]
        })
        .collect();
    output::table(&["ID", "NAME", "TYPE", "FINGERPRINT", "ADDED"], &rows)
}

pub async fn key_add(ctx: &Ctx, path: Option<&Path>, name: Option<&str>) -> anyhow::Result<()> {
    let name = match name {
        Some(n) => check_key_name(n)?,
        None => keys::default_key_name(),
    };
    let (file, key) = match path {
        Some(p) => keys::read_public(p)?,
        None => {
            let (id, _) = keys::own_identity(&SshPaths::new(ctx.paths()?)).await?;
            (id.public, id.key)
        }
    };
    let mut authed = ctx.signed_in()?;
    let list = authed.call(async |c| c.ssh_keys().await).await.context("listing your SSH keys")?;
    let fingerprint = key.fingerprint();
    if let Some(existing) = list.into_iter().find(|k| k.fingerprint == fingerprint) {
        if !ctx.text() {
            return output::json(&existing);
        }
        println!(
            "SSH key {} ({}, {}) is already registered as {}.",
            file.display(),
            existing.algorithm,
            fingerprint,
            existing.name
        );
        return Ok(());
    }
    let body = sdk::AddSshKey { name: name.clone(), public_key: key.openssh() };
    let added = authed
        .call(async |c| c.add_ssh_key(&body).await)
        .await
        .with_context(|| format!("registering SSH key {name}"))?;
    if !ctx.text() {
        return output::json(&added);
    }
    println!(
        "Registered SSH key {} as {} ({}, {}).",
        file.display(),
        added.name,
        added.algorithm,
        added.fingerprint
    );
    Ok(())
}

fn check_key_name(name: &str) -> anyhow::Result<String> {
    let name = name.trim();
    let ok = !name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control);
    if ok {
        Ok(name.to_string())
    } else {
        Err(Failure::usage(format!("--name `{name}`: a key name is 1 to 64 printable characters"))
            .into())
    }
}

pub async fn key_remove(ctx: &Ctx, which: &str) -> anyhow::Result<()> {
    let mut authed = ctx.signed_in()?;
    let list = authed.call(async |c| c.ssh_keys().await).await.context("listing your SSH keys")?;
    let key = pick_key(list, which)?;
    authed
        .call(async |c| c.remove_ssh_key(&key.id).await)
        .await
        .with_context(|| format!("removing SSH key {}", key.name))?;
    if !ctx.text() {
        return output::json(&key);
    }
    println!("Removed SSH key {} ({}).", key.name, key.fingerprint);
    Ok(())
}

/// The key `which` names: its ID, its fingerprint, or its name when no other key has it.
fn pick_key(list: Vec<SshKey>, which: &str) -> anyhow::Result<SshKey> {
    let which = which.trim();
    let by_name: Vec<&SshKey> = list.iter().filter(|k| k.name == which).collect();
    if let Some(k) = list.iter().find(|k| k.id == which || k.fingerprint == which) {
        return Ok(k.clone());
    }
    match by_name.as_slice() {
        [k] => Ok((*k).clone()),
        [] => Err(Failure::not_found(format!("you have no SSH key {which}"))
            .hint("`flare ssh-key list` shows your keys and their IDs")
            .into()),
        _ => Err(Failure::usage(format!("{} of your SSH keys are named {which}", by_name.len()))
            .hint("give its ID or fingerprint instead (`flare ssh-key list` shows them)")
            .into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn handoff(ws: &str, expires_at: i64) -> String {
        let session = SessionDetail {
            id: "s-1".into(),
            name: "dev".into(),
            state: "running".into(),
            template: "rust".into(),
            version: "v1".into(),
            owner: sdk::UserRef { id: "u-1".into(), display_name: "Alice".into() },
            node: Some("n1".into()),
            workflow_id: "session-s-1".into(),
            created_at: 1,
            updated_at: 2,
            started_at: Some(2),
            stopped_at: None,
            last_active_at: None,
            error: None,
        };
        let token = RuntimeToken {
            id: "rt-1".into(),
            token: "bfrt_secret".into(),
            session_id: "s-1".into(),
            expires_at,
            ttl_secs: 300,
            host_key: sdk::HostKey {
                host_alias: "dev.acme.burstflare".into(),
                algorithm: "ssh-ed25519".into(),
                public_key: "ssh-ed25519 AAAA".into(),
                fingerprint: "SHA256:x".into(),
                known_hosts: "dev.acme.burstflare ssh-ed25519 AAAA".into(),
            },
            ssh_user: "dev".into(),
        };
        serde_json::to_string(&Handoff { workspace: ws.into(), session, token }).unwrap()
    }

    #[test]
    fn a_handed_down_token_is_used_only_for_its_own_session_while_it_has_life_left() {
        let now = 1_000_000;
        let t = |id: &str, ws: &str| Target { ws: ws.into(), id: id.into(), alias: None };
        let fresh = handoff("acme", now + 300_000);
        let (s, token) = Handoff::take(Some(fresh.clone()), &t("dev", "acme"), now).unwrap();
        assert_eq!((s.id.as_str(), token.id.as_str()), ("s-1", "rt-1"));
        assert!(Handoff::take(Some(fresh.clone()), &t("s-1", "acme"), now).is_some());
        // Another session, another workspace, nothing handed down, garbage: a fresh token.
        assert!(Handoff::take(Some(fresh.clone()), &t("other", "acme"), now).is_none());
        assert!(Handoff::take(Some(fresh), &t("dev", "personal"), now).is_none());
        assert!(Handoff::take(None, &t("dev", "acme"), now).is_none());
        assert!(Handoff::take(Some("{".into()), &t("dev", "acme"), now).is_none());
        // Too little life left to connect and renew.
        let stale = handoff("acme", now + HANDOFF_MARGIN_MS - 1);
        assert!(Handoff::take(Some(stale), &t("dev", "acme"), now).is_none());
    }

    #[test]
    fn a_target_is_a_name_an_id_or_a_host_alias() {
        let ws = || Ok("acme".to_string());
        assert_eq!(
            parse_target("dev", ws).unwrap(),
            Target { ws: "acme".into(), id: "dev".into(), alias: None }
        );
        assert_eq!(
            parse_target("dev.beta.burstflare", || unreachable!()).unwrap(),
            Target {
                ws: "beta".into(),
                id: "dev".into(),
                alias: Some("dev.beta.burstflare".into())
            }
        );
        let e = parse_target("dev.burstflare", ws).unwrap_err();
        let f = crate::fail::classify(&e, "default");
        assert_eq!(f.exit, Exit::Usage);
        assert!(f.message.contains("SESSION.WORKSPACE.burstflare"), "{}", f.message);
        assert!(parse_target(" ", ws).is_err());
        // Without a workspace the usual error comes back.
        let e = parse_target("dev", || Err(Failure::usage("no workspace selected").into()));
        assert!(e.unwrap_err().to_string().contains("no workspace"));
    }

    fn key(id: &str, name: &str, fp: &str) -> SshKey {
        SshKey {
            id: id.into(),
            name: name.into(),
            algorithm: "ssh-ed25519".into(),
            fingerprint: fp.into(),
            public_key: "ssh-ed25519 AAAA".into(),
            created_at: 0,
        }
    }

    #[test]
    fn keys_are_picked_by_id_fingerprint_or_unique_name() {
        let list = || {
            vec![
                key("k1", "laptop", "SHA256:a"),
                key("k2", "ci", "SHA256:b"),
                key("k3", "ci", "SHA256:c"),
            ]
        };
        assert_eq!(pick_key(list(), "k2").unwrap().id, "k2");
        assert_eq!(pick_key(list(), "SHA256:c").unwrap().id, "k3");
        assert_eq!(pick_key(list(), "laptop").unwrap().id, "k1");
        let f = crate::fail::classify(&pick_key(list(), "ci").unwrap_err(), "default");
        assert_eq!(f.exit, Exit::Usage);
        let f = crate::fail::classify(&pick_key(list(), "nope").unwrap_err(), "default");
        assert_eq!(f.exit, Exit::NotFound);
    }

    #[test]
    fn the_key_table_shows_id_name_type_fingerprint_and_date() {
        let t = key_table(&[key("k1", "laptop", "SHA256:a"), key("k2", "ci", "SHA256:b")]);
        assert_eq!(
            t,
            "ID  NAME    TYPE         FINGERPRINT  ADDED\n\
             k1  laptop  ssh-ed25519  SHA256:a     1970-01-01\n\
             k2  ci      ssh-ed25519  SHA256:b     1970-01-01"
        );
    }

    #[test]
    fn key_names_are_checked_before_anything_is_sent() {
        assert_eq!(check_key_name(" laptop ").unwrap(), "laptop");
        assert!(check_key_name("").is_err());
        assert!(check_key_name(&"x".repeat(65)).is_err());
        assert!(check_key_name("a\nb").is_err());
    }
}
