//! Who `flare` is talking to and as whom: the settings a command runs with (flags, environment,
//! profile, defaults, in that order) and [`Authed`], the signed-in client that refreshes its
//! access token before it expires and once more when the server answers 401.

use std::time::Duration;

use sdk::{Client, ClientError};

use crate::fail::{Exit, Failure, login_command};
use crate::output::Output;
use crate::store::{Config, CredentialKind, CredentialStore, Credentials, Paths};

/// Used when neither `--server`, `FLARE_SERVER` nor the profile names a server.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// Refresh the access token when it expires within this long, so it does not expire in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// A token refresh runs while holding the credentials lock; it must not hang.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything a command needs to know before it talks to a server.
#[derive(Debug)]
pub struct Ctx {
    pub output: Output,
    pub profile: String,
    server_flag: Option<String>,
    workspace_flag: Option<String>,
    paths: Option<Paths>,
    pub config: Config,
}

impl Ctx {
    pub fn new(
        output: Output,
        profile: String,
        server_flag: Option<String>,
        workspace_flag: Option<String>,
        config_dir_flag: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        let paths = Paths::resolve(config_dir_flag);
        let config = match &paths {
            Some(p) => Config::load(&p.config_file())?,
            None => Config::default(),
        };
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Ok(Self {
            output,
            profile,
            server_flag: nonempty(server_flag),
            workspace_flag: nonempty(workspace_flag),
            paths,
            config,
        })
    }

    pub fn paths(&self) -> anyhow::Result<&Paths> {
        self.paths.as_ref().ok_or_else(|| {
            Failure::error("cannot tell where flare's configuration lives: HOME is not set")
                .hint("set FLARE_CONFIG_DIR to a directory for flare's files")
                .into()
        })
    }

    pub fn store(&self) -> anyhow::Result<CredentialStore> {
        Ok(self.paths()?.credentials())
    }

    /// `--server` / `FLARE_SERVER` as given (not the profile's nor the default), normalized.
    pub fn server_flag(&self) -> Option<String> {
        self.server_flag.as_deref().map(normalize_server)
    }

    pub fn text(&self) -> bool {
        self.output == Output::Text
    }

    /// `--server` / `FLARE_SERVER`, else the profile's `server`, else [`DEFAULT_SERVER`];
    /// without a trailing slash.
    pub fn server(&self) -> String {
        let s = self
            .server_flag
            .clone()
            .or_else(|| self.config.profile(&self.profile).and_then(|p| p.server.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_string());
        normalize_server(&s)
    }

    /// The workspace to act on: `explicit` (a command's argument), else `--workspace` /
    /// `FLARE_WORKSPACE`, else the profile's `workspace`.
    pub fn workspace(&self, explicit: Option<&str>) -> anyhow::Result<String> {
        explicit
            .map(str::to_string)
            .or_else(|| self.workspace_flag.clone())
            .or_else(|| self.config.profile(&self.profile).and_then(|p| p.workspace.clone()))
            .ok_or_else(|| {
                Failure::usage("no workspace selected")
                    .hint(
                        "pass --workspace SLUG, or make one the default with `flare workspace \
                         switch SLUG` (`flare workspace list` shows yours)",
                    )
                    .into()
            })
    }

    /// The default workspace of the profile, if any (for marking it in lists).
    pub fn default_workspace(&self) -> Option<String> {
        self.workspace_flag
            .clone()
            .or_else(|| self.config.profile(&self.profile).and_then(|p| p.workspace.clone()))
    }

    /// A client without credentials.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.server())?)
    }

    /// The signed-in client: `FLARE_TOKEN` when set, else this profile's stored credentials,
    /// which must belong to the server in use (tokens are never sent to another server).
    pub fn signed_in(&self) -> anyhow::Result<Authed<'_>> {
        let server = self.server();
        let base = Client::new(&server)?;
        if let Some(token) = env_token() {
            return Ok(Authed { ctx: self, server, base, auth: Auth::Env(token), store: None });
        }
        let store = self.store()?;
        let creds = load_for(&store, self, &server)?;
        Ok(Authed { ctx: self, server, base, auth: Auth::Stored(creds), store: Some(store) })
    }
}

/// `FLARE_TOKEN`, trimmed, when set and not empty.
pub fn env_token() -> Option<String> {
    std::env::var("FLARE_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

pub fn normalize_server(s: &str) -> String {
    s.trim().trim_end_matches('/').to_string()
}

/// This profile's credentials for `server`, or a sign-in failure (exit 3) saying what to do.
fn load_for(store: &CredentialStore, ctx: &Ctx, server: &str) -> anyhow::Result<Credentials> {
    let profile = &ctx.profile;
    match store.load(profile)? {
        None => {
            Err(Failure::auth(profile, format!("not signed in to {server} (profile {profile})"))
                .into())
        }
        Some(c) if normalize_server(&c.server) != server => Err(Failure::auth(
            profile,
            format!("profile {profile} is signed in to {}, not to {server}", c.server),
        )
        .hint(format!(
            "run `{} --server {server}` to sign in there, or {} to use {}",
            login_command(profile),
            if ctx.server_flag.is_some() {
                "drop --server/FLARE_SERVER".to_string()
            } else {
                format!("`flare config set server {}`", c.server)
            },
            c.server
        ))
        .into()),
        Some(c) => Ok(c),
    }
}

#[derive(Debug)]
enum Auth {
    /// `FLARE_TOKEN`: used as it is, never stored or refreshed.
    Env(String),
    Stored(Credentials),
}

/// A signed-in client for one command. Its token is refreshed as needed, and the new pair is
/// written back under the credentials lock.
#[derive(Debug)]
pub struct Authed<'a> {
    ctx: &'a Ctx,
    pub server: String,
    base: Client,
    auth: Auth,
    store: Option<CredentialStore>,
}

impl Authed<'_> {
    /// What the credentials are, for `whoami`: `device`, `api_token` or `env`.
    pub fn kind(&self) -> &'static str {
        match &self.auth {
            Auth::Env(_) => "env",
            Auth::Stored(c) if c.kind == CredentialKind::Device => "device",
            Auth::Stored(_) => "api_token",
        }
    }

    fn client(&self) -> Client {
        let token = match &self.auth {
            Auth::Env(t) => t.clone(),
            Auth::Stored(c) => c.access_token.clone(),
        };
        self.base.clone().with_token(token)
    }

    fn refreshable(&self) -> bool {
        matches!(&self.auth, Auth::Stored(c) if c.refresh_token.is_some())
    }

    /// Runs `f` with a fresh access token; on a 401 refreshes once and runs it again.
    pub async fn call<R>(
        &mut self,
        f: impl AsyncFn(&Client) -> Result<R, ClientError>,
    ) -> anyhow::Result<R> {
        if matches!(&self.auth, Auth::Stored(c) if c.refresh_token.is_some() && c.expires_within(REFRESH_MARGIN))
        {
            self.refresh().await?;
        }
        match f(&self.client()).await {
            Err(e) if e.is_unauthenticated() && self.refreshable() => {
                self.refresh().await?;
                f(&self.client()).await.map_err(|e| self.rejected(e))
            }
            r => r.map_err(|e| self.rejected(e)),
        }
    }

    /// A 401 that refreshing could not cure says which credentials were refused.
    fn rejected(&self, e: ClientError) -> anyhow::Error {
        if !e.is_unauthenticated() {
            return e.into();
        }
        let profile = &self.ctx.profile;
        let reason = match &e {
            ClientError::Api { error, .. } => error.message.clone(),
            other => other.to_string(),
        };
        match &self.auth {
            Auth::Env(_) => Failure::new(
                Exit::Auth,
                "unauthenticated",
                format!("{} rejected the token in FLARE_TOKEN: {reason}", self.server),
            )
            .hint(format!("check the token, or create a new one at {}/account#tokens", self.server))
            .into(),
            Auth::Stored(_) => Failure::auth(
                profile,
                format!(
                    "{} no longer accepts the sign-in of profile {profile}: {reason}",
                    self.server
                ),
            )
            .into(),
        }
    }

    /// Gets a new token pair with the refresh token, unless another `flare` process already
    /// did: under the lock the file is read again, and newer tokens found there are used as they
    /// are. Presenting a refresh token twice makes the server revoke the whole login, so a
    /// refresh only ever happens under the lock.
    async fn refresh(&mut self) -> anyhow::Result<()> {
        let Auth::Stored(mine) = &self.auth else { return Ok(()) };
        let stale_access = mine.access_token.clone();
        let Some(store) = self.store.clone() else { return Ok(()) };
        let lock = store.lock().await?;
        let current = load_for(&store, self.ctx, &self.server)?;
        if current.access_token != stale_access && !current.expires_within(REFRESH_MARGIN) {
            self.auth = Auth::Stored(current);
            return Ok(());
        }
        let profile = &self.ctx.profile;
        let Some(refresh_token) = current.refresh_token.clone() else {
            return Err(Failure::auth(profile, "the sign-in has expired").into());
        };
        let req = sdk::RefreshRequest { refresh_token: refresh_token.clone() };
        let answer = tokio::time::timeout(REFRESH_TIMEOUT, self.base.refresh_token(&req))
            .await
            .map_err(|_| {
                Failure::new(
                    Exit::Unreachable,
                    "unreachable",
                    format!(
                        "{} did not answer the token refresh within {} s",
                        self.server,
                        REFRESH_TIMEOUT.as_secs()
                    ),
                )
                .hint("check that the server is running and try again")
            })?;
        match answer {
            Ok(pair) => {
                let fresh = Credentials::from_pair(&self.server, pair);
                store.save(&lock, profile, Some(fresh.clone()))?;
                self.auth = Auth::Stored(fresh);
                Ok(())
            }
            // 409: the server saw this token rotated a moment ago by another process of this
            // CLI (one that does not take the lock, or a file system without locks).
            Err(e)
                if e.is_unauthenticated()
                    || e.status() == Some(409)
                    || e.oauth_error() == Some("invalid_grant") =>
            {
                // That process may have rotated the token just before us: read once more.
                let again = load_for(&store, self.ctx, &self.server)?;
                if again.refresh_token.as_deref() != Some(refresh_token.as_str()) {
                    self.auth = Auth::Stored(again);
                    return Ok(());
                }
                let reason = match &e {
                    ClientError::Api { error, .. } => error.message.clone(),
                    other => other.to_string(),
                };
                Err(Failure::new(
                    Exit::Auth,
                    "unauthenticated",
                    format!(
                        "the sign-in of profile {profile} has expired or was revoked ({reason})"
                    ),
                )
                .hint(format!("run `{}` to sign in again", login_command(profile)))
                .into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
