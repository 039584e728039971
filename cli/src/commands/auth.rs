//! `flare auth`: sign in with the device flow or an API token, sign out, and show who is signed in.

use std::io::{IsTerminal as _, Read as _};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::fail::{Exit, Failure, login_command};
use crate::output;
use crate::session::{Ctx, env_token};
use crate::store::{Config, CredentialKind, Credentials};

/// Added to the poll interval each time the server answers `slow_down` (RFC 8628 §3.5).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
const REVOKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct LoginOutput<'a> {
    profile: &'a str,
    server: &'a str,
    /// `device` or `api_token`.
    method: &'a str,
    user: sdk::UserInfo,
}

pub async fn login(ctx: &Ctx, no_browser: bool, with_token: bool) -> anyhow::Result<()> {
    let server = ctx.server();
    let anon = ctx.client()?;
    let (creds, me) = if with_token {
        let token = read_token(&server)?;
        let me = anon.clone().with_token(token.clone()).me().await.map_err(|e| {
            if e.is_unauthenticated() {
                Failure::new(
                    Exit::Auth,
                    "unauthenticated",
                    format!("{server} rejected this API token"),
                )
                .hint(format!(
                    "check that it was copied whole and has not expired or been revoked; \
                     create a new one at {server}/account#tokens"
                ))
                .into()
            } else {
                anyhow::Error::from(e)
            }
        })?;
        (Credentials::api_token(&server, token), me)
    } else {
        let pair = device_flow(ctx, &anon, &server, no_browser).await?;
        let creds = Credentials::from_pair(&server, pair);
        match anon.clone().with_token(creds.access_token.clone()).me().await {
            Ok(me) => (creds, me),
            Err(e) => {
                // Not stored, so not usable: do not leave the new login open on the server.
                if let Some(refresh_token) = creds.refresh_token {
                    let req = sdk::RefreshRequest { refresh_token };
                    let _ = tokio::time::timeout(REVOKE_TIMEOUT, anon.revoke_token(&req)).await;
                }
                return Err(e.into());
            }
        }
    };

    let store = ctx.store()?;
    let lock = store.lock().await?;
    // Replacing a device login: end the old one on the server too, best effort.
    let previous = store.load(&ctx.profile).ok().flatten();
    store.save(&lock, &ctx.profile, Some(creds.clone()))?;
    drop(lock);
    if let Some(old) = previous
        && old.kind == CredentialKind::Device
        && let Some(refresh_token) = old.refresh_token
        && let Ok(client) = sdk::Client::new(&old.server)
    {
        let req = sdk::RefreshRequest { refresh_token };
        let _ = tokio::time::timeout(REVOKE_TIMEOUT, client.revoke_token(&req)).await;
    }

    // A profile's credentials belong to one server: signing in binds the profile to it, so
    // later commands need no --server (and never send these tokens elsewhere).
    let paths = ctx.paths()?;
    let mut config = Config::load(&paths.config_file())?;
    let before = config.profile(&ctx.profile).and_then(|p| p.server.clone());
    let rebound = before.as_deref() != Some(server.as_str());
    if rebound {
        config.profile_mut(&ctx.profile).server = Some(server.clone());
        config.save(&paths.config_file())?;
    }

    let method = if with_token { "api_token" } else { "device" };
    if !ctx.text() {
        return output::json(&LoginOutput {
            profile: &ctx.profile,
            server: &server,
            method,
            user: me.user,
        });
    }
    println!(
        "Signed in to {server} as {} <{}> (profile {}).",
        me.user.display_name, me.user.email, ctx.profile
    );
    match (&before, rebound) {
        (None, _) => println!("Saved {server} as the server of profile {}.", ctx.profile),
        (Some(old), true) => {
            println!("Profile {} now uses {server} (it used {old}).", ctx.profile)
        }
        (Some(_), false) => {}
    }
    if me.must_add_passkey {
        println!("This account must add a passkey in the web UI before it can do anything else.");
    }
    if ctx.default_workspace().is_none()
        && let Some(first) = me.workspaces.first()
    {
        println!(
            "Pick a default workspace with `flare workspace switch {}` (`flare workspace list` shows all).",
            first.slug
        );
    }
    Ok(())
}

/// The API token from `FLARE_TOKEN`, else from stdin (prompting when stdin is a terminal).
fn read_token(server: &str) -> anyhow::Result<String> {
    if let Some(t) = env_token() {
        return Ok(t);
    }
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprint!("Paste an API token (create one at {server}/account#tokens): ");
        stdin.read_line(&mut text)?;
    } else {
        stdin.lock().read_to_string(&mut text)?;
    }
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(Failure::usage("no API token on stdin and FLARE_TOKEN is not set")
            .hint("pipe it in (`flare auth login --token < token.txt`) or set FLARE_TOKEN")
            .into());
    }
    Ok(token)
}

/// RFC 8628: ask for a code, show it, let the person approve it in a browser, poll for tokens.
async fn device_flow(
    ctx: &Ctx,
    anon: &sdk::Client,
    server: &str,
    no_browser: bool,
) -> anyhow::Result<sdk::TokenPair> {
    let client_name: String = format!("flare {} on {}", env!("CARGO_PKG_VERSION"), hostname())
        .chars()
        .take(100)
        .collect();
    let code = anon.device_code(&sdk::DeviceCodeRequest { client_name }).await?;

    // Instructions go to stderr, so stdout carries only the result (text or JSON).
    eprintln!("To sign in to {server}, approve this device in a browser:");
    eprintln!("  page: {}", code.verification_uri);
    eprintln!("  code: {}", code.user_code);
    if no_browser || !can_open_browser() {
        eprintln!("Open the page and enter the code, or go to {}", code.verification_uri_complete);
    } else {
        match open::that_detached(&code.verification_uri_complete) {
            Ok(()) => {
                eprintln!("Opened the page in your browser; check that it shows the same code.")
            }
            Err(e) => eprintln!(
                "Could not open a browser ({e}); open {} yourself.",
                code.verification_uri_complete
            ),
        }
    }

    let spinner = if std::io::stderr().is_terminal() {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message("Waiting for approval in the browser…");
        s.enable_steady_tick(Duration::from_millis(100));
        s
    } else {
        indicatif::ProgressBar::hidden()
    };
    let result = poll(ctx, anon, &code).await;
    spinner.finish_and_clear();
    result
}

async fn poll(
    ctx: &Ctx,
    anon: &sdk::Client,
    code: &sdk::DeviceCodeResponse,
) -> anyhow::Result<sdk::TokenPair> {
    let again = login_command(&ctx.profile);
    let minutes = code.expires_in.div_ceil(60);
    let expired = || {
        Failure::new(Exit::Auth, "expired_token", "the code expired before it was approved")
            .hint(format!("run `{again}` again and approve the code within {minutes} minutes"))
    };
    let deadline = Instant::now() + Duration::from_secs(code.expires_in);
    let mut interval = Duration::from_secs(code.interval.max(1));
    let req = sdk::DeviceTokenRequest {
        grant_type: sdk::DEVICE_GRANT_TYPE.to_string(),
        device_code: code.device_code.clone(),
    };
    loop {
        if Instant::now() + interval > deadline {
            return Err(expired().into());
        }
        // The protocol's own pacing: the server tells how often it may be asked.
        tokio::time::sleep(interval).await;
        let e = match anon.device_token(&req).await {
            Ok(pair) => return Ok(pair),
            Err(e) => e,
        };
        match e.oauth_error() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += SLOW_DOWN_STEP,
            Some("access_denied") => {
                return Err(Failure::new(
                    Exit::Auth,
                    "access_denied",
                    "the sign-in was denied in the browser",
                )
                .hint(format!("if that was a mistake, run `{again}` again and approve it"))
                .into());
            }
            Some("expired_token") => return Err(expired().into()),
            Some("invalid_grant") => {
                return Err(Failure::new(
                    Exit::Auth,
                    "invalid_grant",
                    "the server no longer knows this sign-in request",
                )
                .hint(format!("run `{again}` again"))
                .into());
            }
            _ => return Err(e.into()),
        }
    }
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unnamed host".into())
}

/// A browser can only open where there is a display to show it on.
fn can_open_browser() -> bool {
    if cfg!(any(target_os = "macos", windows)) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

#[derive(Serialize)]
struct LogoutOutput<'a> {
    profile: &'a str,
    signed_in: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    /// `revoked`, `already_invalid`, `unreachable`, `failed`, or `not_applicable` (API tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    server_revocation: Option<&'static str>,
    deleted_local_credentials: bool,
}

pub async fn logout(ctx: &Ctx) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let lock = store.lock().await?;
    let Some(creds) = store.load(&ctx.profile)? else {
        if ctx.text() {
            println!("Not signed in (profile {}); nothing to do.", ctx.profile);
        } else {
            output::json(&LogoutOutput {
                profile: &ctx.profile,
                signed_in: false,
                server: None,
                server_revocation: None,
                deleted_local_credentials: false,
            })?;
        }
        return Ok(());
    };
    let mut problem = None;
    let revocation = match (&creds.kind, &creds.refresh_token) {
        (CredentialKind::Device, Some(refresh_token)) => {
            let req = sdk::RefreshRequest { refresh_token: refresh_token.clone() };
            let client = sdk::Client::new(&creds.server)?;
            match tokio::time::timeout(REVOKE_TIMEOUT, client.revoke_token(&req)).await {
                Ok(Ok(())) => "revoked",
                Ok(Err(e)) if e.is_unauthenticated() => "already_invalid",
                Ok(Err(sdk::ClientError::Transport { cause, .. })) => {
                    problem = Some(cause);
                    "unreachable"
                }
                Err(_) => {
                    problem = Some(format!("no answer within {} s", REVOKE_TIMEOUT.as_secs()));
                    "unreachable"
                }
                Ok(Err(e)) => {
                    problem = Some(e.to_string());
                    "failed"
                }
            }
        }
        _ => "not_applicable",
    };
    store.save(&lock, &ctx.profile, None)?;
    drop(lock);

    let server = creds.server.clone();
    if let Some(problem) = &problem {
        eprintln!(
            "warning: could not revoke this CLI login on {server} ({problem}); the local \
             credentials are deleted anyway. The login stays valid on the server until it \
             expires; end it at {server}/account#cli."
        );
    }
    if !ctx.text() {
        return output::json(&LogoutOutput {
            profile: &ctx.profile,
            signed_in: true,
            server: Some(server),
            server_revocation: Some(revocation),
            deleted_local_credentials: true,
        });
    }
    match revocation {
        "revoked" | "already_invalid" => println!(
            "Signed out of {server} (profile {}): the CLI login is revoked and the local \
             credentials deleted.",
            ctx.profile
        ),
        "not_applicable" => println!(
            "Deleted the API token of profile {} from this computer. The token itself works \
             until it expires; revoke it at {server}/account#tokens if nothing else uses it.",
            ctx.profile
        ),
        _ => println!("Signed out (profile {}): the local credentials are deleted.", ctx.profile),
    }
    Ok(())
}

#[derive(Serialize)]
struct WhoamiOutput<'a> {
    profile: &'a str,
    server: &'a str,
    /// `device`, `api_token` or `env` (FLARE_TOKEN).
    credentials: &'a str,
    user: sdk::UserInfo,
    workspaces: Vec<sdk::WorkspaceSummary>,
    default_workspace: Option<String>,
    must_add_passkey: bool,
}

pub async fn whoami(ctx: &Ctx) -> anyhow::Result<()> {
    let mut authed = ctx.signed_in()?;
    let me = authed.call(async |c| c.me().await).await?;
    let out = WhoamiOutput {
        profile: &ctx.profile,
        server: &authed.server,
        credentials: authed.kind(),
        user: me.user,
        workspaces: me.workspaces,
        default_workspace: ctx.default_workspace(),
        must_add_passkey: me.must_add_passkey,
    };
    if !ctx.text() {
        return output::json(&out);
    }
    println!("{} <{}>", out.user.display_name, out.user.email);
    let via = match out.credentials {
        "device" => "device login",
        "api_token" => "API token",
        _ => "FLARE_TOKEN",
    };
    println!("signed in to {} (profile {}, {via})", out.server, out.profile);
    if out.must_add_passkey {
        println!("This account must add a passkey in the web UI before it can do anything else.");
    }
    println!();
    print_workspaces(&out.workspaces, out.default_workspace.as_deref());
    Ok(())
}

/// The workspace table of `whoami` and `workspace list`; `*` marks the default one.
pub fn print_workspaces(list: &[sdk::WorkspaceSummary], default: Option<&str>) {
    if list.is_empty() {
        println!("No workspaces.");
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            let mark = if Some(w.slug.as_str()) == default { "*" } else { " " };
            let name = if w.personal { format!("{} (personal)", w.name) } else { w.name.clone() };
            vec![format!("{mark} {}", w.slug), name, w.role.clone()]
        })
        .collect();
    println!("{}", output::table(&["  WORKSPACE", "NAME", "ROLE"], &rows));
}
