//! `flare config`: the per-profile settings in `config.toml` (`server`, `workspace`).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::fail::Failure;
use crate::output;
use crate::session::{Ctx, normalize_server};
use crate::store::Config;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Key {
    /// The server URL, e.g. https://burstflare.example.com
    Server,
    /// The default workspace slug, e.g. acme
    Workspace,
}

impl Key {
    fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Workspace => "workspace",
        }
    }
}

#[derive(Serialize)]
struct Value<'a> {
    profile: &'a str,
    key: &'static str,
    value: Option<String>,
}

fn load(ctx: &Ctx) -> anyhow::Result<(std::path::PathBuf, Config)> {
    let path = ctx.paths()?.config_file();
    let config = Config::load(&path)?;
    Ok((path, config))
}

fn get_value(config: &Config, profile: &str, key: Key) -> Option<String> {
    let p = config.profile(profile)?;
    match key {
        Key::Server => p.server.clone(),
        Key::Workspace => p.workspace.clone(),
    }
}

/// Prints the stored value; nothing (and `null` in JSON) when it is not set.
pub fn get(ctx: &Ctx, key: Key) -> anyhow::Result<()> {
    let (_, config) = load(ctx)?;
    let value = get_value(&config, &ctx.profile, key);
    if !ctx.text() {
        return output::json(&Value { profile: &ctx.profile, key: key.as_str(), value });
    }
    if let Some(v) = value {
        println!("{v}");
    }
    Ok(())
}

pub fn set(ctx: &Ctx, key: Key, value: &str) -> anyhow::Result<()> {
    let value = match key {
        Key::Server => {
            let v = normalize_server(value);
            sdk::Client::new(&v).map_err(|e| {
                Failure::usage(e.to_string()).hint("use a URL like https://burstflare.example.com")
            })?;
            v
        }
        Key::Workspace => {
            let v = value.trim().to_string();
            check_slug(&v)?;
            v
        }
    };
    let (path, mut config) = load(ctx)?;
    let profile = config.profile_mut(&ctx.profile);
    match key {
        Key::Server => profile.server = Some(value.clone()),
        Key::Workspace => profile.workspace = Some(value.clone()),
    }
    config.save(&path)?;
    if !ctx.text() {
        return output::json(&Value {
            profile: &ctx.profile,
            key: key.as_str(),
            value: Some(value),
        });
    }
    println!("{} = {value} (profile {})", key.as_str(), ctx.profile);
    Ok(())
}

pub fn unset(ctx: &Ctx, key: Key) -> anyhow::Result<()> {
    let (path, mut config) = load(ctx)?;
    let old = get_value(&config, &ctx.profile, key);
    if old.is_some() {
        let profile = config.profile_mut(&ctx.profile);
        match key {
            Key::Server => profile.server = None,
            Key::Workspace => profile.workspace = None,
        }
        config.save(&path)?;
    }
    if !ctx.text() {
        return output::json(&Value { profile: &ctx.profile, key: key.as_str(), value: None });
    }
    match old {
        Some(_) => println!("Unset {} (profile {}).", key.as_str(), ctx.profile),
        None => println!("{} was not set (profile {}).", key.as_str(), ctx.profile),
    }
    Ok(())
}

#[derive(Serialize)]
struct ProfileValues<'a> {
    profile: &'a str,
    server: Option<String>,
    workspace: Option<String>,
}

pub fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, config) = load(ctx)?;
    let out = ProfileValues {
        profile: &ctx.profile,
        server: get_value(&config, &ctx.profile, Key::Server),
        workspace: get_value(&config, &ctx.profile, Key::Workspace),
    };
    if !ctx.text() {
        return output::json(&out);
    }
    for (key, value) in [("server", &out.server), ("workspace", &out.workspace)] {
        match value {
            Some(v) => println!("{key} = {v}"),
            None => println!("{key} (not set)"),
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ProfileInfo {
    name: String,
    active: bool,
    server: Option<String>,
    workspace: Option<String>,
    signed_in: bool,
}

/// Every profile with settings or credentials, and the active one even when it has neither.
pub fn profiles(ctx: &Ctx) -> anyhow::Result<()> {
    let (_, config) = load(ctx)?;
    let creds = ctx.store()?.load_all()?;
    let names: BTreeSet<&String> = config
        .profiles
        .keys()
        .chain(creds.profiles.keys())
        .chain(std::iter::once(&ctx.profile))
        .collect();
    let list: Vec<ProfileInfo> = names
        .into_iter()
        .map(|name| ProfileInfo {
            name: name.clone(),
            active: *name == ctx.profile,
            server: get_value(&config, name, Key::Server),
            workspace: get_value(&config, name, Key::Workspace),
            signed_in: creds.profiles.contains_key(name),
        })
        .collect();
    if !ctx.text() {
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                format!("{} {}", if p.active { "*" } else { " " }, p.name),
                p.server.clone().unwrap_or_else(|| "-".into()),
                p.workspace.clone().unwrap_or_else(|| "-".into()),
                if p.signed_in { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    println!("{}", output::table(&["  PROFILE", "SERVER", "WORKSPACE", "SIGNED IN"], &rows));
    Ok(())
}

/// The server's slug rule, checked here too so a typo fails before it is saved.
fn check_slug(s: &str) -> anyhow::Result<()> {
    let ok = !s.is_empty()
        && s.chars().count() <= 48
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "workspace {s:?} is not a workspace slug: 1 to 48 characters, lowercase a-z, 0-9 and \
             '-', not starting or ending with '-'"
        ))
        .hint("`flare workspace list` shows your workspaces' slugs")
        .into())
    }
}
