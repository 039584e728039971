//! `flare`'s files: where they live, `config.toml` (per-profile settings), `credentials.toml`
//! (tokens, mode 0600, refused when others can read it) and `credentials.lock`, the lock every
//! writer of the credentials holds, so two `flare` processes never refresh the same token twice.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::fail::Failure;

/// How long to wait for another `flare` process to finish with the credentials.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The configuration directory and the files in it.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    /// `flag` (the hidden `--config-dir`, which `flare ssh-config` writes into the ProxyCommand),
    /// else `$FLARE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/burstflare`, else `~/.config/burstflare`.
    pub fn resolve(flag: Option<PathBuf>) -> Option<Self> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = flag
            .filter(|d| !d.as_os_str().is_empty())
            .or_else(|| var("FLARE_CONFIG_DIR"))
            .or_else(|| {
                var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()).map(|p| p.join("burstflare"))
            })
            .or_else(|| dirs::home_dir().map(|h| h.join(".config").join("burstflare")))?;
        Some(Self { dir })
    }

    pub fn config_file(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn credentials(&self) -> CredentialStore {
        CredentialStore {
            file: self.dir.join("credentials.toml"),
            lock: self.dir.join("credentials.lock"),
        }
    }
}

/// `config.toml`: `[profiles.NAME]` tables with `server` and `workspace`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// e.g. `https://burstflare.example.com`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Default workspace slug, e.g. `acme`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Keys a newer `flare` wrote, kept as they are.
    #[serde(flatten)]
    pub other: toml::Table,
}

impl Profile {
    fn is_empty(&self) -> bool {
        self.server.is_none() && self.workspace.is_none() && self.other.is_empty()
    }
}

impl Config {
    /// A missing file is an empty configuration.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).map_err(|e| {
            Failure::error(format!("{} is not valid: {e}", path.display()))
                .hint("fix it, or delete it and set values again with `flare config set`")
                .into()
        })
    }

    pub fn save(&mut self, path: &Path) -> anyhow::Result<()> {
        self.profiles.retain(|_, p| !p.is_empty());
        let text = toml::to_string(self).context("encoding the configuration")?;
        write_atomic(path, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    pub fn profile_mut(&mut self, name: &str) -> &mut Profile {
        self.profiles.entry(name.to_string()).or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// From `flare auth login`: a short-lived access token and a rotating refresh token.
    Device,
    /// From `flare auth login --token`: an API token made in the web UI.
    ApiToken,
}

/// What `flare` keeps to call the API as someone. Debug output shows no token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The server that issued the tokens; they are never sent anywhere else.
    pub server: String,
    pub kind: CredentialKind,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Unix seconds; absent for API tokens (the server decides when they expire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("kind", &self.kind)
            .field("access_expires_at", &self.access_expires_at)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn from_pair(server: &str, pair: sdk::TokenPair) -> Self {
        Self {
            server: server.to_string(),
            kind: CredentialKind::Device,
            access_token: pair.access_token,
            refresh_token: Some(pair.refresh_token),
            access_expires_at: Some(
                now_secs().saturating_add(i64::try_from(pair.expires_in).unwrap_or(i64::MAX)),
            ),
        }
    }

    pub fn api_token(server: &str, token: String) -> Self {
        Self {
            server: server.to_string(),
            kind: CredentialKind::ApiToken,
            access_token: token,
            refresh_token: None,
            access_expires_at: None,
        }
    }

    /// The access token expires within `margin` (and so should be refreshed first).
    pub fn expires_within(&self, margin: Duration) -> bool {
        let margin = i64::try_from(margin.as_secs()).unwrap_or(i64::MAX);
        self.access_expires_at.is_some_and(|at| at.saturating_sub(now_secs()) <= margin)
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `credentials.toml`: `[profiles.NAME]` tables of [`Credentials`].
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CredentialsFile {
    #[serde(default)]
    pub profiles: BTreeMap<String, Credentials>,
}

#[derive(Debug, Clone)]
pub struct CredentialStore {
    file: PathBuf,
    lock: PathBuf,
}

/// Held while the credentials are read for a change and written; released on drop.
#[derive(Debug)]
pub struct CredentialsLock {
    _file: File,
}

impl CredentialStore {
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// All stored credentials; a missing file is none. A file that others may read is refused.
    pub fn load_all(&self) -> anyhow::Result<CredentialsFile> {
        let mut file = match File::open(&self.file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CredentialsFile::default());
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.file.display())),
        };
        check_private(&file, &self.file)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text)
            .with_context(|| format!("reading {}", self.file.display()))?;
        toml::from_str(&text).map_err(|e| {
            Failure::error(format!("{} is not valid: {e}", self.file.display()))
                .hint("delete it and sign in again with `flare auth login`")
                .into()
        })
    }

    pub fn load(&self, profile: &str) -> anyhow::Result<Option<Credentials>> {
        Ok(self.load_all()?.profiles.remove(profile))
    }

    /// Replaces (or with `None` deletes) one profile's credentials. The lock proves the caller
    /// read what it changes under the same lock.
    pub fn save(
        &self,
        _lock: &CredentialsLock,
        profile: &str,
        creds: Option<Credentials>,
    ) -> anyhow::Result<()> {
        let mut all = self.load_all()?;
        match creds {
            Some(c) => {
                all.profiles.insert(profile.to_string(), c);
            }
            None => {
                all.profiles.remove(profile);
            }
        }
        if all.profiles.is_empty() {
            return match std::fs::remove_file(&self.file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("deleting {}", self.file.display()))
                }
                _ => Ok(()),
            };
        }
        let text = toml::to_string(&all).context("encoding the credentials")?;
        write_atomic(&self.file, text.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", self.file.display()))
    }

    /// Takes the exclusive lock on `credentials.lock` (an OS file lock, `flock` on Unix: it goes
    /// away with the process, so a crash leaves no stale lock), waiting up to 30 s.
    pub async fn lock(&self) -> anyhow::Result<CredentialsLock> {
        if let Some(dir) = self.lock.parent() {
            create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let file =
            open_private(&self.lock).with_context(|| format!("opening {}", self.lock.display()))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(CredentialsLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Failure::error(format!(
                        "another flare process has held {} for {} s",
                        self.lock.display(),
                        LOCK_WAIT.as_secs()
                    ))
                    .hint("wait for it to finish (or stop it) and try again")
                    .into());
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", self.lock.display()));
                }
            }
        }
    }
}

/// Writes `path` whole or not at all: a new file with `mode` next to it, synced, then renamed
/// over it. Readers see the old or the new content, never a half-written file, and a secret is
/// never in a file with looser permissions, not even for a moment.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().context("the file has no directory")?;
    create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // Left over by a process with our pid that crashed mid-write.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = create_new_with_mode(&tmp, mode)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    // The rename itself is durable once the directory is synced; not every platform can.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn create_new_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

#[cfg(not(unix))]
fn create_new_with_mode(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(unix)]
pub(crate) fn open_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)
}

#[cfg(not(unix))]
pub(crate) fn open_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Refuses a credentials file that anyone but its owner may read or write.
#[cfg(unix)]
fn check_private(file: &File, path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Failure::error(format!(
            "{} is accessible by other users (mode {:o}), so flare will not use the tokens in it",
            path.display(),
            mode & 0o777
        ))
        .hint(format!(
            "run `chmod 600 {}`, or delete it and sign in again if someone else may have read it",
            path.display()
        ))
        .into());
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &File, _path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = Paths { dir: dir.path().join("burstflare") }.credentials();
        (dir, store)
    }

    fn creds(token: &str) -> Credentials {
        Credentials::api_token("http://127.0.0.1:8080", token.into())
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn credentials_are_written_readable_by_their_owner_only() {
        let (_dir, store) = store();
        let lock = store.lock().await.unwrap();
        store.save(&lock, "default", Some(creds("bf_one"))).unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode(store.path()), 0o600);
            assert_eq!(mode(store.path().parent().unwrap()), 0o700);
        }
        assert_eq!(store.load("default").unwrap().unwrap().access_token, "bf_one");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_credentials_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let (_dir, store) = store();
        let lock = store.lock().await.unwrap();
        store.save(&lock, "default", Some(creds("bf_one"))).unwrap();
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.load("default").unwrap_err();
        let f = err.downcast_ref::<Failure>().unwrap();
        assert!(f.message.contains("mode 644"), "{}", f.message);
        assert!(f.hint.as_deref().unwrap().contains("chmod 600"), "{:?}", f.hint);
    }

    #[tokio::test]
    async fn saving_one_profile_keeps_the_others_and_deleting_the_last_removes_the_file() {
        let (_dir, store) = store();
        let lock = store.lock().await.unwrap();
        store.save(&lock, "default", Some(creds("bf_one"))).unwrap();
        store.save(&lock, "staging", Some(creds("bf_two"))).unwrap();
        store.save(&lock, "default", None).unwrap();
        assert!(store.load("default").unwrap().is_none());
        assert_eq!(store.load("staging").unwrap().unwrap().access_token, "bf_two");
        store.save(&lock, "staging", None).unwrap();
        assert!(!store.path().exists());
    }

    #[tokio::test]
    async fn a_second_locker_waits_until_the_first_lets_go() {
        let (_dir, store) = store();
        let first = store.lock().await.unwrap();
        // A separate open file description, as another process would have.
        let other = open_private(&store.lock).unwrap();
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        drop(first);
        assert!(other.try_lock().is_ok());
    }

    #[test]
    fn debug_output_of_credentials_shows_no_token() {
        let mut c = creds("bf_secret");
        c.refresh_token = Some("bfr_secret".into());
        let s = format!("{c:?}");
        assert!(!s.contains("secret"), "{s}");
    }

    #[test]
    fn an_access_token_close_to_expiry_needs_a_refresh() {
        let mut c = creds("bf");
        assert!(!c.expires_within(Duration::from_secs(30)), "API tokens have no known expiry");
        c.access_expires_at = Some(now_secs() + 20);
        assert!(c.expires_within(Duration::from_secs(30)));
        c.access_expires_at = Some(now_secs() + 600);
        assert!(!c.expires_within(Duration::from_secs(30)));
    }

    #[test]
    fn unknown_profile_keys_survive_a_save() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[profiles.default]\nserver = \"http://x\"\ncolor = \"never\"\n")
            .unwrap();
        let mut c = Config::load(&path).unwrap();
        c.profile_mut("default").workspace = Some("acme".into());
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("color = \"never\"") && text.contains("workspace = \"acme\""),
            "{text}"
        );
    }
}
